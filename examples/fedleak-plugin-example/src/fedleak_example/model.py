"""``tiny-cnn``: one convolution and a linear head, registered in fedleak's model registry."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from fedleak.models import MODELS, ModelConfig


class TinyCNNConfig(ModelConfig):
    channels: int = Field(8, ge=1, le=256)


@MODELS.register("tiny-cnn")
class TinyCNN(nn.Module):
    """A registered model: a ``Config`` and the constructor ``(config, image_shape, num_classes)``."""

    Config = TinyCNNConfig

    def __init__(self, config: TinyCNNConfig, image_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels, height, width = image_shape
        self.features = nn.Sequential(nn.Conv2d(channels, config.channels, 3, padding=1), nn.Sigmoid())
        self.head = nn.Linear(config.channels * height * width, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images).flatten(1))
