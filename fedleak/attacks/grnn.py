"""GRNN: Generative Regression Neural Network (Ren, Deng & Xie, ACM TIST 2022).

Instead of optimising dummy pixels, GRNN trains a generator whose output batch
induces the observed gradient. One fixed noise vector per sample feeds two branches:

* images: a transposed convolution to 4×4, then blocks of (nearest upsampling ×2,
  3×3 convolution, batch norm, gated linear unit), a sigmoid into [0, 1];
* labels: a linear layer and a softmax over the classes.

The generator is trained with RMSprop (lr 1e-4, momentum 0.99, as in the reference
code) on  ‖∇θ' − ∇θ‖² + W(∇θ', ∇θ) + α_TV · TV₂(x')  (§3.3): the squared gradient
distance, a Wasserstein distance between the two gradients' value distributions,
and a squared total variation. Images whose side is not a power of two (28×28
MNIST) are generated at the next power of two and their centre is kept (the
reference code instead resizes the data to 32×32; resizing our output would blur it).

The default ``extra_distance = "norm"`` uses ‖∇θ' − ∇θ‖ for W: that is what the
reference implementation computes under the name ``wasserstein_distance``, and it
worked far better here (batch 4 of the digits LeNet, 500 steps: ≈40 dB against ≈10 dB
for the paper's W₂ between sorted gradient entries, ``extra_distance = "wasserstein"``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedleak.attacks.base import ATTACKS
from fedleak.attacks.gradients import batch_gradient
from fedleak.attacks.objectives import flatten, squared_distance, total_variation, wasserstein_distance
from fedleak.attacks.optimization import (
    Attempt,
    InversionProblem,
    LabelSource,
    OptimizationAttack,
    OptimizationConfig,
)
from fedleak.models import ImageClassifier


class GRNNConfig(OptimizationConfig):
    iterations: int = Field(1000, ge=1)
    labels: LabelSource = "optimize"
    """``optimize``: the generator's label branch learns them (the paper); ``infer``: fixed."""
    lr: float = Field(1e-4, gt=0)
    momentum: float = Field(0.99, ge=0, lt=1)
    noise_dim: int = Field(128, ge=1)
    width: int = Field(32, ge=2)
    """Channels of the last upsampling block; each block nearer the noise has twice as many."""
    tv_weight: float = Field(1e-3, ge=0)
    """1e-3 for LeNet in the reference code (1e-6 for ResNet-18)."""
    extra_distance: Literal["norm", "wasserstein", "none"] = "norm"


class _GatedBlock(nn.Sequential):
    """Upsample ×2, 3×3 conv to twice the channels, batch norm, GLU (halves them back)."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(fan_in, 2 * fan_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * fan_out),
            nn.GLU(dim=1),
        )


class Generator(nn.Module):
    """Noise ``(B, noise_dim)`` → images ``(B, C, H, W)`` in [0, 1] and label distributions ``(B, K)``."""

    def __init__(self, config: GRNNConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.image_shape = image_shape
        side = 2 ** max(3, math.ceil(math.log2(max(height, width))))
        blocks = int(math.log2(side)) - 3  # 4×4 → side/2 in `blocks` doublings, then one more
        widths = [config.width * 2**i for i in reversed(range(blocks + 1))]
        self.seed_block = nn.Sequential(nn.ConvTranspose2d(config.noise_dim, 2 * widths[0], 4), nn.GLU(dim=1))
        self.upsampling = nn.Sequential(
            *(_GatedBlock(a, b) for a, b in zip(widths, widths[1:])),
            _GatedBlock(widths[-1], channels),
        )
        self.label_head = nn.Linear(config.noise_dim, num_classes)

    def forward(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.sigmoid(self.upsampling(self.seed_block(noise[:, :, None, None])))
        return _center_crop(images, self.image_shape[1:]), self.label_head(noise).softmax(dim=1)


def _center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    top, left = (images.shape[-2] - size[0]) // 2, (images.shape[-1] - size[1]) // 2
    return images[..., top : top + size[0], left : left + size[1]]


@ATTACKS.register("grnn")
class GRNN(OptimizationAttack):
    Config = GRNNConfig
    config: GRNNConfig

    def _objective(
        self, model: ImageClassifier, target: list[torch.Tensor], images: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        gradient = batch_gradient(model, images, targets)
        loss = squared_distance(gradient, target) + self.config.tv_weight * total_variation(images, power=2)
        if self.config.extra_distance == "wasserstein":
            loss = loss + wasserstein_distance(gradient, target)
        elif self.config.extra_distance == "norm":
            loss = loss + (flatten(gradient) - flatten(target)).norm()
        return loss

    def attempt(self, problem: InversionProblem, generator: torch.Generator) -> Attempt:
        model = problem.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31, (), generator=generator)))
            network = Generator(self.config, model.image_shape, model.num_classes).to(problem.device)
        noise = torch.randn(problem.size, self.config.noise_dim, generator=generator).to(problem.device)
        optimizer = torch.optim.RMSprop(network.parameters(), lr=self.config.lr, momentum=self.config.momentum)
        loss, done = math.inf, 0
        while done < self.config.iterations and not problem.deadline.expired():
            optimizer.zero_grad()
            images, soft_labels = network(noise)
            targets = soft_labels if problem.labels is None else problem.labels
            objective = self._objective(model, problem.target, images, targets)
            loss = objective.item()
            if not math.isfinite(loss):
                break
            objective.backward()
            optimizer.step()
            done += 1
        with torch.no_grad():
            images, soft_labels = network(noise)
        labels = soft_labels.argmax(dim=1) if problem.labels is None else problem.labels
        return Attempt(images, labels, loss, done)
