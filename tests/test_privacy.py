"""ε from the ledger: monotone in rounds, equal to Opacus' own accountant, right per view;
and DP-SGD really is Opacus' per-sample clipping + noise."""

import math

import pytest
import torch
from opacus.accountants import RDPAccountant

from fedleak.adversary.privacy import PrivacyLedger
from fedleak.client.training import train_locally
from fedleak.data import build_plan, load_dataset
from fedleak.defenses import LocalRound

from conftest import tiny_scenario


def _ledger(defenses, delta=1e-5):
    return PrivacyLedger(tiny_scenario(defenses=defenses).defense_pipeline(), delta)


def test_dp_sgd_epsilon_matches_opacus_and_grows_every_round():
    ledger = _ledger([{"name": "dp-sgd", "noise_multiplier": 1.1, "max_grad_norm": 1.0}])
    local_round = LocalRound(shard_size=250, batch_size=25, local_steps=10)
    reference = RDPAccountant()
    previous = 0.0
    for _ in range(5):
        epsilon = ledger.record(3, local_round).update
        for _ in range(10):
            reference.step(noise_multiplier=1.1, sample_rate=0.1)
        assert epsilon == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12)
        assert epsilon > previous
        previous = epsilon
    assert ledger.of(4).update is None  # a client that never took part has spent nothing


def test_local_gaussian_epsilon_is_the_gaussian_mechanisms():
    # One release with noise multiplier z and no sampling: RDP(α) = α / (2 z²) (Mironov 2017).
    ledger = _ledger([{"name": "local-dp", "clip_norm": 2.0, "std": 3.0}])
    epsilon = ledger.record(0, LocalRound(100, 1, 1))
    rdp = [alpha / (2 * 1.5**2) for alpha in RDPAccountant.DEFAULT_ALPHAS]
    # Opacus' conversion (Balle et al. 2020), written out independently.
    by_hand = min(r + math.log1p(-1 / a) - (math.log(1e-5) + math.log(a)) / (a - 1)
                  for r, a in zip(rdp, RDPAccountant.DEFAULT_ALPHAS))
    assert epsilon.update == pytest.approx(by_hand, rel=1e-9)
    assert epsilon.model == epsilon.update


def test_central_dp_protects_only_the_model_and_the_tightest_mechanism_counts():
    central = _ledger([{"name": "central-dp", "noise_multiplier": 1.0}]).record(0, LocalRound(100, 1, 1))
    assert central.update is None and central.model > 0
    both = _ledger([{"name": "local-dp", "clip_norm": 1.0, "noise_multiplier": 4.0},
                    {"name": "central-dp", "noise_multiplier": 1.0}]).record(0, LocalRound(100, 1, 1))
    local_only = _ledger([{"name": "local-dp", "clip_norm": 1.0, "noise_multiplier": 4.0}]).record(0, LocalRound(100, 1, 1))
    assert both.update == local_only.update and both.model == pytest.approx(local_only.update)  # z=4 is tighter


def test_laplace_noise_and_no_defense_report_no_epsilon():
    assert _ledger([{"name": "local-dp", "mechanism": "laplace", "clip_norm": 1.0, "std": 1.0}]).record(
        0, LocalRound(10, 1, 1)).update is None
    assert _ledger([]).worst().update is None


def _train(defenses, generator_seed=0):
    scenario = tiny_scenario(defenses=defenses, training={"batch_size": 4})
    splits = load_dataset(scenario.dataset)
    model = scenario.model_spec(splits).build(seed=0)
    batches = build_plan(0, scenario.dataset, scenario.partition).batches(0, 1, scenario.training)
    wrapper = scenario.defense_pipeline().private_training(4, torch.Generator().manual_seed(generator_seed))
    train_locally(model, splits.train, batches, 0.1, wrapper)
    return model.state_dict()


def test_dp_sgd_without_noise_or_clipping_is_plain_sgd_and_with_noise_is_seeded():
    plain = _train([])
    loose = _train([{"name": "dp-sgd", "noise_multiplier": 0.0, "max_grad_norm": 1e6}])
    assert all(torch.allclose(plain[k], loose[k], atol=1e-6) for k in plain)
    noisy = _train([{"name": "dp-sgd", "noise_multiplier": 1.0, "max_grad_norm": 0.1}])
    assert torch.equal(noisy["classifier.weight"], _train([{"name": "dp-sgd", "noise_multiplier": 1.0,
                                                        "max_grad_norm": 0.1}])["classifier.weight"])
    assert not torch.allclose(plain["classifier.weight"], noisy["classifier.weight"], atol=1e-3)


def test_dp_sgd_clips_each_sample():
    # With zero noise, one step moves the weights by at most lr · C (the mean of clipped gradients).
    sent = _train([{"name": "dp-sgd", "noise_multiplier": 0.0, "max_grad_norm": 1e-9}])
    scenario = tiny_scenario()
    initial = scenario.model_spec(load_dataset(scenario.dataset)).build(seed=0).state_dict()
    moved = math.sqrt(sum(float(((sent[k] - initial[k]) ** 2).sum()) for k in sent))
    assert moved <= 0.1 * 1e-9 * 1.0001
