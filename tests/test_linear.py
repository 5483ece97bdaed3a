"""The `linear` attack (R-GAP + corrections) and the leakage audit, on tiny nets over 8×8 digits."""

import dataclasses
import json
import sys

import pytest
import torch

from fedleak import cli
from fedleak.adversary.audit import audit_model
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS, AttackNotApplicable, Budget
from fedleak.data import build_plan, load_dataset

from conftest import fedsgd_update, tiny_scenario

# Two bias-free convolutions (kernel 4 then 3, stride 2) and a bias-free head: every layer's
# system has more independent constraints than unknowns on 8×8 inputs.
FULL_RANK = {"name": "rgap_cnn", "channels": [4, 8], "strides": [2, 2], "kernel_sizes": [4, 3]}
# One change: a single first-layer channel gives 16 gradient + 25 forward rows for 64 pixels.
DEFICIENT = {**FULL_RANK, "channels": [1, 8]}


def _attack_and_truth(model, partition_id=0, **config):
    scenario = tiny_scenario(model=model)
    update, spec = fedsgd_update(scenario, partition_id=partition_id)
    attack = ATTACKS.get("linear")(ATTACKS.get("linear").Config(**config))
    recon = attack.run(update, spec.with_weights(update.global_weights), Budget())
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    truth = PlanTruth(load_dataset(scenario.dataset).train, plan, scenario.training).ground_truth(
        update.partitions, update.server_round)
    return recon, truth, spec


@pytest.mark.parametrize("model", [FULL_RANK, {**FULL_RANK, "head_bias": True},
                                   {"name": "mlp", "widths": [32], "activation": "relu"},
                                   {"name": "lenet", "activation": "leaky_relu"}],
                         ids=["rank-one-head", "bias-head", "relu-mlp", "leaky-lenet"])
def test_linear_recovers_the_input_and_label_exactly_on_full_rank_nets(model):
    for partition in (0, 1):
        recon, truth, _ = _attack_and_truth(model, partition, correction_iterations=0)
        assert ((recon.images - truth.images) ** 2).mean() < 1e-8
        assert recon.labels.tolist() == truth.labels.tolist()
        assert all(layer["rank"] == layer["unknowns"] for layer in recon.extras["layers"])


def test_output_layer_is_solved_in_closed_form_with_a_bias_and_by_a_scale_fit_without():
    with_bias, truth, _ = _attack_and_truth({**FULL_RANK, "head_bias": True})
    without, _, _ = _attack_and_truth(FULL_RANK)
    assert with_bias.extras["label_from"] == "bias" and with_bias.extras["output_scale_residual"] is None
    assert without.extras["label_from"] == "rank_one" and without.extras["output_scale_residual"] < 1e-4
    # The output layer's input (the flattened features) is recovered: its system has a tiny residual.
    assert with_bias.extras["layers"][-1]["residual"] < 1e-6 and without.extras["layers"][-1]["residual"] < 1e-6


def test_audit_index_is_zero_on_the_full_rank_net_and_positive_on_the_deficient_variant():
    splits = load_dataset(tiny_scenario().dataset)
    full = _spec(FULL_RANK, splits)
    deficient = _spec(DEFICIENT, splits)
    full_audit, deficient_audit = audit_model(full.build(seed=0)), audit_model(deficient.build(seed=0))
    assert full_audit.risk_index == 0 and all(layer.deficiency == 0 for layer in full_audit.layers)
    assert deficient_audit.risk_index > 0.1
    first = deficient_audit.layers[0]
    assert first.unknowns == 64 and first.constraints == 16 + 25 and first.deficiency >= 64 - 41
    assert first.condition is None and deficient_audit.layers[-1].deficiency == 0
    json.dumps(dataclasses.asdict(deficient_audit), allow_nan=False)  # plain, JSON-able data


def test_the_audit_predicts_the_attack_and_corrections_help_where_it_is_deficient():
    gains = []
    for partition in (0, 1, 2):
        pure, truth, _ = _attack_and_truth(DEFICIENT, partition, correction_iterations=0)
        corrected, _, _ = _attack_and_truth(DEFICIENT, partition)
        assert pure.extras["layers"][0]["rank"] < 64 and corrected.extras["layers"][0]["correction_steps"] == 400
        pure_psnr = float(score(pure.images, truth.images).psnr[0])
        assert pure_psnr < 25  # an undetermined subspace of the image: no exact recovery
        gains.append(float(score(corrected.images, truth.images).psnr[0]) - pure_psnr)
    assert sum(gains) / len(gains) > 1.0, gains


def test_time_budget_cuts_corrections_short_but_returns_an_image():
    scenario = tiny_scenario(model=DEFICIENT)
    update, spec = fedsgd_update(scenario)
    attack = ATTACKS.get("linear")(ATTACKS.get("linear").Config(correction_iterations=10**6))
    recon = attack.run(update, spec.with_weights(update.global_weights), Budget(seconds=0.5))
    assert recon.extras["stopped_by_budget"] and 0 < recon.extras["iterations"] < recon.extras["iterations_planned"]
    assert recon.images.shape == (1, *spec.image_shape)


def test_linear_refuses_batches_and_unsupported_layers():
    update, spec = fedsgd_update(tiny_scenario(model=FULL_RANK, training={"batch_size": 2}))
    with pytest.raises(AttackNotApplicable, match="single training image"):
        ATTACKS.get("linear")(ATTACKS.get("linear").Config()).run(update, spec.with_weights(update.global_weights),
                                                                 Budget())
    update, spec = fedsgd_update(tiny_scenario(model={"name": "convnet", "channels": [4, 4]}))
    with pytest.raises(AttackNotApplicable, match="max_unknowns"):
        ATTACKS.get("linear")(ATTACKS.get("linear").Config(max_unknowns=32)).run(
            update, spec.with_weights(update.global_weights), Budget())


def test_cli_audit_prints_the_table_and_the_index(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fedleak", "audit", "rgap_cnn", "--input-shape", "1,8,8",
                                      "--set", "channels=[1,8]", "--set", "strides=[2,2]", "--set", "kernel_sizes=[4,3]"])
    cli.main()  # returns normally: exit code 0
    out = capsys.readouterr().out
    assert "features.0" in out and "classifier" in out and "deficiency" in out
    assert float(out.split("risk index:")[1].split()[0]) > 0.1


@pytest.mark.parametrize(("argv", "expected"), [
    (["audit", "vgg"], "unknown model 'vgg'"),
    (["audit", "lenet", "--input-shape", "1,28"], "--input-shape: expected three positive integers"),
    (["audit", "rgap_cnn", "--set", "depth=3"], "--set depth: Extra inputs are not permitted"),
])
def test_cli_audit_user_errors(monkeypatch, capsys, argv, expected):
    monkeypatch.setattr(sys, "argv", ["fedleak", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert expected in err


def _spec(model, splits):
    return tiny_scenario(model=model).model_spec(splits)


def test_audit_is_reproducible_and_leaves_the_model_alone():
    splits = load_dataset(tiny_scenario().dataset)
    model = _spec(DEFICIENT, splits).build(seed=0)
    first, again = audit_model(model, probe_seed=3), audit_model(model, probe_seed=3)
    assert first == again
    weight = model.body.features[0].weight
    assert weight.dtype == torch.float32 and weight.grad is None
    assert torch.equal(weight, _spec(DEFICIENT, splits).build(seed=0).body.features[0].weight)
