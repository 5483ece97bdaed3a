"""The model registry and the wrapper every model runs inside.

Images are in [0, 1] everywhere outside a model; :class:`ImageClassifier` normalises
them with the dataset's channel statistics before the registered network (its
``body``) sees them. The statistics are non-persistent buffers, so a model's
``state_dict`` — what Flower sends and what attacks differentiate — holds only the
trainable parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from fedleak.core.config import Strict
from fedleak.core.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")
"""Each entry is an ``nn.Module`` class with a ``Config`` attribute and the constructor
``(config, image_shape, num_classes)``."""

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": partial(nn.LeakyReLU, 0.2),  # R-GAP's invertible activation (Zhu & Blaschko 2021)
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
Activation = Literal["relu", "leaky_relu", "sigmoid", "tanh"]


class ModelConfig(Strict):
    """Options every model has."""

    init: Literal["default", "uniform"] = "default"
    """``uniform``: every parameter ~ U(−init_bound, init_bound), as in DLG's experiments."""
    init_bound: float = Field(0.5, gt=0)


class ImageClassifier(nn.Module):
    """Normalises [0, 1] images of ``image_shape``, then runs ``body``; outputs logits.

    ``mean`` is per channel (C values) or per pixel (C·H·W values, row-major); ``std`` per channel.
    """

    def __init__(
        self,
        body: nn.Module,
        image_shape: tuple[int, int, int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.body = body
        self.image_shape = image_shape
        self.num_classes = num_classes
        shape = (1, *image_shape) if len(mean) > image_shape[0] else (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(images))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.std + self.mean


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild an architecture: what the server knows of the model."""

    name: str
    config: ModelConfig
    image_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    """Per channel, or per pixel (``dataset.normalization``): see :class:`ImageClassifier`."""
    std: tuple[float, ...]

    def build(self, seed: int = 0) -> ImageClassifier:
        """Instantiate the model with seeded initial weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            body = MODELS.get(self.name)(self.config, self.image_shape, self.num_classes)
            if self.config.init == "uniform":
                for parameter in body.parameters():
                    nn.init.uniform_(parameter, -self.config.init_bound, self.config.init_bound)
        return ImageClassifier(body, self.image_shape, self.num_classes, self.mean, self.std)

    def with_weights(self, weights: Mapping[str, torch.Tensor]) -> ImageClassifier:
        """The model carrying ``weights`` (a ``state_dict``)."""
        model = self.build()
        model.load_state_dict(weights)
        return model


def flat_features(layers: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Number of features ``layers`` produce for one image (sizes the first FC layer)."""
    with torch.no_grad():
        return layers(torch.zeros(1, *image_shape)).flatten(1).shape[1]


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The model's fully-connected layers with their qualified names, input to output."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def first_weighted_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The first Linear or Conv layer (what touches the input first)."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return name, module
    raise ValueError("model has no Linear or Conv2d layer")
