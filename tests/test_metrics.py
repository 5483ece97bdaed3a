import numpy as np
import pytest
import torch

from fedleak.adversary.metrics import (
    MatchedScores,
    PriorReference,
    label_count_accuracy,
    match,
    prior_reference,
    score,
)
from fedleak.core.image_similarity import ssim


def test_matching_undoes_a_permutation():
    truth = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    order = torch.tensor([3, 0, 4, 1, 2])
    rows, cols = match(truth[order], truth)
    assert (order[rows] == torch.as_tensor(cols)).all()


def test_scores_after_matching():
    truth = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([4, 5, 6])
    noisy = (truth + 0.01).clamp(0, 1)
    scores = score(noisy.flip(0), truth, labels.flip(0), labels)
    assert scores.label_accuracy == 1.0
    assert torch.all(scores.mse < 1.01e-4)
    assert torch.all(scores.psnr > 39.9)
    assert torch.all(scores.ssim > 0.9)
    unrelated = score(torch.zeros(3, 1, 8, 8), truth, torch.tensor([0, 0, 0]), labels)
    assert unrelated.psnr.mean() < 10 and unrelated.label_accuracy == 0.0
    assert scores.summary()["ssim_success_rate"] == 1.0 and unrelated.summary()["ssim_success_rate"] == 0.0
    half = score(torch.cat([truth[:1], torch.zeros(1, 1, 8, 8)]), truth[:2])  # one of two pairs above 0.4
    assert half.summary()["ssim_success_rate"] == 0.5


def test_fewer_reconstructions_than_samples_are_matched_partially():
    truth = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    scores = score(truth[2:3], truth)
    assert scores.truth_index.tolist() == [2] and float(scores.mse[0]) == 0.0


def test_label_count_accuracy_ignores_order_and_counts_repeats():
    truth = torch.tensor([3, 3, 1, 0])
    assert label_count_accuracy(torch.tensor([0, 1, 3, 3]), truth) == 1.0
    assert label_count_accuracy(torch.tensor([3, 3, 3, 0]), truth) == 0.75
    assert label_count_accuracy(torch.tensor([5, 5, 5, 5]), truth) == 0.0


def test_the_mean_image_reference_tells_a_reconstruction_from_the_trivial_guess():
    torch.manual_seed(0)
    truth = torch.rand(4, 1, 12, 12)
    prior = truth.mean(dim=0)
    exact = score(truth.flip(0), truth, prior=prior).summary()
    assert exact["recovered_rate"] == 1.0 and exact["leakage"] > 0.5 and exact["best_psnr"] > 100
    guess = score(prior.expand(4, 1, 12, 12).contiguous(), truth, prior=prior).summary()
    assert guess["psnr"] == pytest.approx(guess["prior_psnr"], abs=1e-4)
    assert guess["leakage"] == pytest.approx(0.0, abs=1e-5) and guess["recovered_rate"] == 0.0
    noise = score(torch.rand(4, 1, 12, 12), truth, prior=prior).summary()
    assert noise["recovered_rate"] == 0.0 and noise["leakage"] < guess["leakage"]


def test_leakage_takes_each_images_best_match_among_all_reconstructions():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 1, 12, 12, generator=generator)
    recon = torch.stack([torch.rand(1, 12, 12, generator=generator), truth[0]])  # the second shows image 0
    reference = prior_reference(recon, truth, truth.mean(dim=0))
    assert reference.best_ssim[0] == pytest.approx(1.0, abs=1e-5) and reference.best_ssim[1] < 0.9
    pairwise = torch.stack([torch.stack([ssim(r[None], t[None])[0] for r in recon]).max() for t in truth])
    torch.testing.assert_close(reference.best_ssim, pairwise)  # the best over all reconstructions, pair by pair


def test_a_high_ssim_counts_as_recovered_only_above_the_mean_images():
    matched = MatchedScores(np.arange(3), np.arange(3), mse=torch.tensor([1e-4, 0.01, 0.01]),
                            psnr=torch.zeros(3), ssim=torch.tensor([0.1, 0.5, 0.5]), label_accuracy=None,
                            label_count_accuracy=None)
    reference = PriorReference(psnr=torch.zeros(3), ssim=torch.tensor([0.9, 0.6, 0.3]), best_ssim=torch.zeros(3))
    assert reference.recovered(matched).tolist() == [True, False, True]  # DLG's MSE; below; above the guess
