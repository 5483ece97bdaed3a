"""A multi-layer perceptron on flattened images (widths, activation, bias configurable)."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from fedleak.core.config import Width
from fedleak.models.base import ACTIVATIONS, MODELS, Activation, ModelConfig


class MLPConfig(ModelConfig):
    widths: list[Width] = Field(default_factory=lambda: [64])
    activation: Activation = "relu"
    bias: bool = True


@MODELS.register("mlp")
class MLP(nn.Module):
    Config = MLPConfig

    def __init__(self, config: MLPConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        sizes = [math.prod(image_shape), *config.widths]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out, bias=config.bias), ACTIVATIONS[config.activation]()]
        layers.append(nn.Linear(sizes[-1], num_classes, bias=config.bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(x)
        return logits
