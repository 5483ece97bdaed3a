"""The model registry and the wrapper every model runs inside.

Images are in [0, 1] everywhere outside a model; :class:`ImageClassifier` normalises
them with the dataset's channel statistics before the registered network (its
``body``) sees them. The statistics are non-persistent buffers of the wrapper, and the
wrapper's ``state_dict`` is the body's own: its keys are the network's (``conv1.weight``,
``bn1.running_mean``, ``fc.bias``), whatever registered it. That dictionary — what
Flower sends and what attacks differentiate — holds the trainable parameters and the
body's persistent buffers (BatchNorm's running statistics).

Names are always the body's: anything that maps a state-dict key to a module or a
parameter goes through ``model.body`` (:func:`linear_layers`, :func:`first_weighted_layer`,
:meth:`ImageClassifier.parameters_by_name`), and :meth:`ImageClassifier.functional_logits` runs
the body on such a dictionary.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.func import functional_call, replace_all_batch_norm_modules_

from fedleak.core.config import Strict
from fedleak.core.registry import Registry


class ModelFactory(Protocol):
    """What :data:`MODELS` holds: a ``Config`` (pydantic) and a constructor from it.

    fedleak's own models are ``nn.Module`` classes with this constructor; models named
    ``MODULE:CLASS`` or ``torchvision:NAME`` are built by :mod:`fedleak.models.external`.
    """

    Config: type[BaseModel]

    def __call__(self, config: Any, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module: ...


MODELS: Registry[ModelFactory] = Registry("model")
"""Models by name; a name with a colon that is not registered is a torchvision model
(``torchvision:resnet18``) or a user's ``nn.Module`` class (``my_pkg.models:Net``)."""

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

    mean: torch.Tensor
    std: torch.Tensor

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
        logits: torch.Tensor = self.body(self.normalize(images))
        return logits

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs * self.std + self.mean

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The body's state dict: the network's own keys, no ``body.`` prefix."""
        return self.body.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """Load a state dict with the body's keys (what :meth:`state_dict` returns)."""
        return self.body.load_state_dict(state_dict, strict=strict, assign=assign)

    def parameters_by_name(self) -> dict[str, torch.Tensor]:
        """The trainable parameters by state-dict name, in ``parameters()`` order."""
        return dict(self.body.named_parameters())

    def functional_logits(self, weights: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """The logits at ``weights`` (state-dict names; missing ones are the model's own),
        written with ``torch.func`` so that it composes with ``grad`` and ``vmap``."""
        logits: torch.Tensor = functional_call(self.body, dict(weights), (self.normalize(images),))
        return logits

    def training_simulation(self) -> ImageClassifier:
        """A copy that computes what a training client's forward pass computes, as a pure
        function of the weights passed to :meth:`functional_logits`.

        A client trains in train mode: BatchNorm normalises with the batch's own statistics
        (and updates running buffers the server never needs to simulate). In the copy,
        BatchNorm has no running buffers (``torch.func.replace_all_batch_norm_modules_``), so
        it always uses batch statistics, writes nothing, and works under ``vmap``. Everything
        else runs in eval mode: a client's dropout masks cannot be known, and random
        operations cannot be ``vmap``-ed. The model itself is left as it was.
        """
        simulation = copy.deepcopy(self).eval()
        replace_all_batch_norm_modules_(simulation.body)
        return simulation


def has_batch_norm(model: nn.Module) -> bool:
    """Whether ``model`` has a BatchNorm layer (statistics over the batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild an architecture: what the server knows of the model."""

    name: str
    config: BaseModel
    """The model's ``Config``: a :class:`ModelConfig` for fedleak's models and signature-built
    ones, or a user model's own pydantic class."""
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
            if isinstance(self.config, ModelConfig) and self.config.init == "uniform":
                for parameter in body.parameters():
                    nn.init.uniform_(parameter, -self.config.init_bound, self.config.init_bound)
        return ImageClassifier(body, self.image_shape, self.num_classes, self.mean, self.std)

    def parameter_count(self, seed: int = 0) -> int:
        """How many parameters the model has, counted on PyTorch's ``meta`` device (shapes, no memory):
        a model too large to build is measured without being built."""
        with torch.device("meta"):
            return sum(p.numel() for p in self.build(seed=seed).parameters())

    def with_weights(self, weights: Mapping[str, torch.Tensor]) -> ImageClassifier:
        """The model carrying ``weights`` (a ``state_dict``)."""
        model = self.build()
        model.load_state_dict(weights)
        return model


def flat_features(layers: nn.Module, image_shape: tuple[int, int, int]) -> int:
    """Number of features ``layers`` produce for one image (sizes the first FC layer)."""
    with torch.no_grad():
        return int(layers(torch.zeros(1, *image_shape)).flatten(1).shape[1])


def linear_layers(model: ImageClassifier) -> list[tuple[str, nn.Linear]]:
    """The model's fully-connected layers with their state-dict names, in registration order."""
    return [(name, m) for name, m in model.body.named_modules() if isinstance(m, nn.Linear)]


def first_weighted_layer(model: ImageClassifier) -> tuple[str, nn.Linear | nn.Conv2d]:
    """The first Linear or Conv layer registered (what touches the input first in a plain
    network), with its state-dict name."""
    for name, module in model.body.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return name, module
    raise ValueError("model has no Linear or Conv2d layer")
