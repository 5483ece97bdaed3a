"""fedleak's PSNR and SSIM against torchmetrics' on the same pairs: the scores stored before and after
fedleak stopped importing torchmetrics are the same numbers."""

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from fedleak.core.image_similarity import psnr, ssim


def _pairs(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator)
    noisy = (target + 0.1 * torch.randn(shape, generator=generator)).clamp(0, 1)
    return noisy, target


@pytest.mark.parametrize("shape", [(5, 1, 8, 8), (3, 3, 32, 32), (2, 1, 28, 28), (4, 3, 6, 9)])
def test_ssim_and_psnr_equal_torchmetrics(shape):
    images, target = _pairs(shape)
    expected_ssim = structural_similarity_index_measure(images, target, data_range=1.0, reduction="none")
    expected_psnr = peak_signal_noise_ratio(images, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(ssim(images, target), expected_ssim, rtol=0, atol=0)
    torch.testing.assert_close(psnr(images, target), expected_psnr, rtol=0, atol=0)


def test_identical_images_score_one_and_infinity_and_unrelated_ones_near_zero():
    images, target = _pairs((3, 1, 32, 32))
    assert torch.allclose(ssim(target, target), torch.ones(3))
    assert torch.isinf(psnr(target, target)).all()
    # Seeded: unseeded noise made this depend on what ran before (16×16 noise reached 0.25 once).
    unrelated = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert ssim(unrelated, target).abs().max() < 0.2


def test_images_too_small_for_the_window_are_refused_in_one_line():
    with pytest.raises(ValueError, match="more than 5 pixels a side"):
        ssim(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5))
