"""Each attack must recover on a tiny case, not merely run."""

import pytest
import torch

from fedleak.attacks import ATTACKS, AttackNotApplicable, Budget
from fedleak.data import build_plan, load_dataset
from fedleak.evaluation import Evaluator
from fedleak.metrics import score

from conftest import fedsgd_update, tiny_scenario


def _attack(name, update, spec, **config):
    attack = ATTACKS.get(name)(ATTACKS.get(name).Config(**config))
    return attack.run(update, spec.with_weights(update.global_weights), Budget())


def _truth(scenario, update):
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    return Evaluator(splits.train, plan, scenario.training).ground_truth(update.partitions, update.server_round)


@pytest.mark.parametrize("name", ["idlg", "dlg"])
def test_gradient_inversion_recovers_a_digit_and_its_label(name):
    scenario = tiny_scenario()
    update, spec = fedsgd_update(scenario, partition_id=1)
    recon = _attack(name, update, spec, iterations=60)
    truth = _truth(scenario, update)
    scores = score(recon.images, truth.images, recon.labels, truth.labels)
    assert scores.psnr.min() > 30
    assert scores.label_accuracy == 1.0


def test_idlg_reads_the_label_from_the_output_layer_gradient():
    scenario = tiny_scenario()
    for partition in range(4):
        update, spec = fedsgd_update(scenario, partition_id=partition)
        recon = _attack("idlg", update, spec, iterations=1)
        assert recon.labels.tolist() == _truth(scenario, update).labels.tolist()


def test_analytic_recovers_a_single_input_exactly_from_a_first_fc_layer():
    scenario = tiny_scenario(model={"name": "mlp", "widths": [32]})
    update, spec = fedsgd_update(scenario)
    recon = _attack("analytic", update, spec)
    mse = ((recon.images - _truth(scenario, update).images) ** 2).mean()
    assert mse < 1e-8


def test_analytic_isolates_samples_of_a_batch():
    # Wide ReLU layer: many units fire for exactly one of the 4 samples.
    scenario = tiny_scenario(model={"name": "mlp", "widths": [512]}, training={"batch_size": 4})
    update, spec = fedsgd_update(scenario)
    recon = _attack("analytic", update, spec)
    scores = score(recon.images, _truth(scenario, update).images)
    assert int((scores.mse < 1e-6).sum()) >= 2


def test_attacks_refuse_models_and_batches_they_do_not_fit():
    update, spec = fedsgd_update(tiny_scenario())
    with pytest.raises(AttackNotApplicable, match="first fully-connected layer"):
        _attack("analytic", update, spec)
    batch, spec = fedsgd_update(tiny_scenario(training={"batch_size": 2}))
    with pytest.raises(AttackNotApplicable, match="batch of 1"):
        _attack("idlg", batch, spec)


def test_time_budget_stops_an_attack_and_says_so():
    update, spec = fedsgd_update(tiny_scenario(training={"batch_size": 2}))
    recon = ATTACKS.get("dlg")(ATTACKS.get("dlg").Config(iterations=10_000)).run(
        update, spec.with_weights(update.global_weights), Budget(seconds=0.5))
    assert recon.extras["stopped_by_budget"] and recon.extras["iterations"] < 10_000


def test_pseudo_gradient_of_a_fedsgd_update_is_the_gradient():
    scenario = tiny_scenario()
    update, spec = fedsgd_update(scenario)
    truth = _truth(scenario, update)
    model = spec.with_weights(update.global_weights)
    loss = torch.nn.functional.cross_entropy(model(truth.images), truth.labels)
    loss.backward()
    gradient = update.pseudo_gradient()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(gradient[name], parameter.grad, atol=2e-5, rtol=1e-3)
