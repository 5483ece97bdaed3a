"""Each attack must recover on a tiny case, not merely run."""

import pytest
import torch

from fedleak.adversary.ground_truth import PlanTruth
from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS, AttackNotApplicable, Budget
from fedleak.attacks.labels import infer_label_counts
from fedleak.attacks.stacked import StackedInversion
from fedleak.client.training import offline_update
from fedleak.data import build_plan, load_dataset

from conftest import fedsgd_update, tiny_scenario


def _attack(name, update, spec, **config):
    attack = ATTACKS.get(name)(ATTACKS.get(name).Config(**config))
    return attack.run(update, spec.with_weights(update.global_weights), Budget())


def _truth(scenario, update):
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    return PlanTruth(splits.train, plan, scenario.training).ground_truth(update.partitions, update.server_round)


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


@pytest.mark.parametrize(("name", "table", "refusal"), [
    ("analytic", {}, "first fully-connected layer"),  # the default LeNet starts with a convolution
    ("linear", {"model": {"name": "mlp", "widths": [16]}, "training": {"batch_size": 2}}, "a single training image"),
    ("kkt", {"model": {"name": "torchvision:resnet18", "small_input": True}, "training": {"batch_size": 2}},
     "BatchNorm trains on batch statistics"),
])
def test_attacks_refuse_models_and_batches_they_do_not_fit(name, table, refusal):
    update, spec = fedsgd_update(tiny_scenario(**table))
    with pytest.raises(AttackNotApplicable, match=refusal):
        _attack(name, update, spec)


@pytest.mark.parametrize("name", ["dlg", "inverting", "grnn"])
def test_time_budget_stops_an_attack_and_says_how_far_it_got(name):
    update, spec = fedsgd_update(tiny_scenario(training={"batch_size": 2}))
    config = ATTACKS.get(name).Config(iterations=100_000, restarts=3)
    recon = ATTACKS.get(name)(config).run(update, spec.with_weights(update.global_weights), Budget(seconds=0.5))
    extras = recon.extras
    assert extras["stopped_by_budget"] and 0 < extras["iterations"] < extras["iterations_planned"] == 100_000
    # Stacked attacks run their restarts side by side; GRNN runs them in turn, so the budget cut the later ones.
    assert extras["restarts"] == (3 if issubclass(ATTACKS.get(name), StackedInversion) else 1)
    assert extras["restarts_planned"] == 3
    assert recon.images.shape == (2, *spec.image_shape)


def test_restarts_keep_the_lowest_objective_and_a_seed_fixes_the_attack():
    update, spec = fedsgd_update(tiny_scenario(training={"batch_size": 2}))
    first = _attack("dlg", update, spec, iterations=3, restarts=3, seed=5)
    assert first.extras["restarts"] == 3
    assert first.extras["final_loss"] == min(first.extras["restart_losses"])
    assert len(set(first.extras["restart_losses"])) == 3  # each restart starts elsewhere
    again = _attack("dlg", update, spec, iterations=3, restarts=3, seed=5)
    other = _attack("dlg", update, spec, iterations=3, restarts=3, seed=6)
    assert torch.equal(first.images, again.images) and not torch.equal(first.images, other.images)


def test_inverting_recovers_a_digit_from_a_tiny_convnet():
    # PSNR 30 dB on [0, 1] images is MSE 1e-3, DLG's criterion for a recovered image.
    scenario = tiny_scenario(model={"name": "convnet", "channels": [8, 8]})
    update, spec = fedsgd_update(scenario)
    recon = _attack("inverting", update, spec, iterations=200)
    truth = _truth(scenario, update)
    scores = score(recon.images, truth.images, recon.labels, truth.labels)
    assert scores.psnr.min() > 30 and scores.label_accuracy == 1.0


def test_unrolled_fedavg_beats_the_pseudo_gradient_on_a_two_step_update():
    # A client holding one digit trains two local epochs (two SGD steps on it).
    scenario = tiny_scenario(model={"name": "convnet", "channels": [8, 8]})
    splits = load_dataset(scenario.dataset)
    spec = scenario.model_spec(splits)
    sent = spec.build(seed=0).state_dict()
    psnr = {"unroll": [], "pseudo-gradient": []}
    for sample in (0, 1):
        update = offline_update(spec, sent, splits.train, [torch.tensor([sample])] * 2, lr=0.1)
        assert update.metadata.local_steps == 2
        for mode, results in psnr.items():
            recon = _attack("inverting", update, spec, iterations=200, fedavg=mode)
            results.append(float(score(recon.images, splits.train.images[[sample]]).psnr[0]))
    assert min(psnr["unroll"]) > 30
    assert min(u - p for u, p in zip(psnr["unroll"], psnr["pseudo-gradient"])) > 6, psnr


def test_grnn_recovers_a_batch_of_four_digits_and_their_labels():
    scenario = tiny_scenario(training={"batch_size": 4})
    update, spec = fedsgd_update(scenario)
    recon = _attack("grnn", update, spec, iterations=500)
    truth = _truth(scenario, update)
    scores = score(recon.images, truth.images, recon.labels, truth.labels)
    assert scores.psnr.min() > 30 and scores.label_accuracy == 1.0


@pytest.mark.parametrize("model", [{"name": "lenet"}, {"name": "convnet"}, {"name": "lenet", "activation": "relu"}])
def test_label_counts_are_exact_on_batches_with_repeated_labels(model):
    scenario = tiny_scenario(model=model)
    splits = load_dataset(scenario.dataset)
    spec = scenario.model_spec(splits)
    labels = splits.train.labels
    for seed, counts in enumerate([{3: 3, 1: 2, 7: 1, 0: 2}, {5: 8}, {c: 2 for c in range(10)}, {2: 1, 9: 15}]):
        index = torch.cat([torch.nonzero(labels == c).flatten()[:n] for c, n in counts.items()])
        sent = spec.build(seed=seed).state_dict()
        update = offline_update(spec, sent, splits.train, [index], lr=0.1)
        inferred = infer_label_counts(update, spec.with_weights(sent))
        assert inferred.tolist() == torch.bincount(labels[index], minlength=10).tolist()


def test_inferred_labels_are_scored_as_counts():
    scenario = tiny_scenario(training={"batch_size": 8})
    update, spec = fedsgd_update(scenario)
    recon = _attack("dlg", update, spec, iterations=1, labels="infer")
    truth = _truth(scenario, update)
    assert score(recon.images, truth.images, recon.labels, truth.labels).label_count_accuracy == 1.0


def test_pseudo_gradient_of_a_fedsgd_update_is_the_gradient():
    scenario = tiny_scenario()
    update, spec = fedsgd_update(scenario)
    truth = _truth(scenario, update)
    model = spec.with_weights(update.global_weights)
    loss = torch.nn.functional.cross_entropy(model(truth.images), truth.labels)
    loss.backward()
    gradient = update.pseudo_gradient()
    for name, parameter in model.parameters_by_name().items():
        torch.testing.assert_close(gradient[name], parameter.grad, atol=2e-5, rtol=1e-3)


def test_grnn_generates_a_batch_of_256():
    scenario = tiny_scenario(training={"batch_size": 256})
    update, spec = fedsgd_update(scenario)
    recon = _attack("grnn", update, spec, iterations=2)
    assert recon.images.shape == (256, *spec.image_shape) and recon.labels.shape == (256,)
    assert recon.extras["iterations"] == 2 and 0 <= float(recon.images.min()) <= float(recon.images.max()) <= 1
