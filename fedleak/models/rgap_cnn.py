"""R-GAP's CNN6 (Zhu & Blaschko 2021, §5): bias-free convolutions with LeakyReLU(0.2), one FC layer.

The reference model (github.com/JunyiZhu-AI/R-GAP, ``models/CNN6.py``; breaching's ``cnn6``)
has six convolutions — 12, 36, 36, 36, 64, 128 channels; kernel 4 then 3; strides
2, 2, 1, 1, 2, 1; padding kernel // 2 — and one fully-connected output layer: bias-free with
one logistic output in R-GAP, with bias and one output per class in breaching. Here the
head has one output per class and ``head_bias`` chooses between the two. Every layer's
width and stride is configurable, so a variant whose layer-wise systems are rank
deficient is one config change away (e.g. ``channels = [1, 36, 36, 36, 64, 128]``:
the first layer then has fewer constraints than input pixels).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from fedleak.core.config import Width
from fedleak.models.base import ACTIVATIONS, MODELS, Activation, ModelConfig, flat_features


class RGAPCNNConfig(ModelConfig):
    channels: list[Width] = Field(default_factory=lambda: [12, 36, 36, 36, 64, 128], min_length=1)
    strides: list[int] = Field(default_factory=lambda: [2, 2, 1, 1, 2, 1], min_length=1)
    kernel_sizes: list[int] = Field(default_factory=lambda: [4, 3, 3, 3, 3, 3], min_length=1)
    activation: Activation = "leaky_relu"
    head_bias: bool = False
    """Bias on the output layer (breaching's variant); R-GAP's is bias-free."""

    @model_validator(mode="after")
    def _one_entry_per_layer(self) -> RGAPCNNConfig:
        if not len(self.channels) == len(self.strides) == len(self.kernel_sizes):
            raise ValueError("channels, strides and kernel_sizes need one entry per convolution")
        if min(self.strides + self.kernel_sizes) < 1:
            raise ValueError("strides and kernel_sizes must be positive")
        return self


@MODELS.register("rgap_cnn")
class RGAPCNN(nn.Module):
    Config = RGAPCNNConfig

    def __init__(self, config: RGAPCNNConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        sizes = [image_shape[0], *config.channels]
        layers: list[nn.Module] = []
        for fan_in, fan_out, stride, kernel in zip(sizes, sizes[1:], config.strides, config.kernel_sizes):
            layers += [nn.Conv2d(fan_in, fan_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                       ACTIVATIONS[config.activation]()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(flat_features(self.features, image_shape), num_classes, bias=config.head_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits
