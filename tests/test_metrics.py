import torch

from fedleak.adversary.metrics import label_count_accuracy, match, score


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
