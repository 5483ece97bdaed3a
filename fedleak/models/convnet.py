"""A small ReLU CNN: 3×3 convolutions (the later ones stride 2), then one FC layer."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from fedleak.core.config import Width
from fedleak.models.base import ACTIVATIONS, MODELS, Activation, ModelConfig, flat_features


class ConvNetConfig(ModelConfig):
    channels: list[Width] = Field(default_factory=lambda: [16, 32])
    activation: Activation = "relu"


@MODELS.register("convnet")
class ConvNet(nn.Module):
    Config = ConvNetConfig

    def __init__(self, config: ConvNetConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        sizes = [image_shape[0], *config.channels]
        layers: list[nn.Module] = []
        for depth, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            stride = 1 if depth == 0 else 2
            layers += [nn.Conv2d(fan_in, fan_out, 3, padding=1, stride=stride), ACTIVATIONS[config.activation]()]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(flat_features(self.features, image_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits
