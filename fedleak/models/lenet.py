"""DLG's LeNet (Zhu et al. 2019): three 5×5 sigmoid convolutions and one FC layer.

Strides 2, 2, 1 with padding 2, 12 channels, as in the DLG reference model; the FC
layer's width follows the input size (768 for 32×32, 588 for 28×28, 48 for 8×8).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from fedleak.models.base import ACTIVATIONS, MODELS, Activation, ModelConfig, flat_features


class LeNetConfig(ModelConfig):
    channels: int = Field(12, ge=1, le=65_536)
    activation: Activation = "sigmoid"


@MODELS.register("lenet")
class LeNet(nn.Module):
    Config = LeNetConfig

    def __init__(self, config: LeNetConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        act, width = ACTIVATIONS[config.activation], config.channels
        self.features = nn.Sequential(
            nn.Conv2d(image_shape[0], width, 5, padding=2, stride=2), act(),
            nn.Conv2d(width, width, 5, padding=2, stride=2), act(),
            nn.Conv2d(width, width, 5, padding=2, stride=1), act(),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(flat_features(self.features, image_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits
