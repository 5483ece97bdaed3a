"""Models named by where they live: torchvision's classifiers and a user's own ``nn.Module``.

:data:`~fedleak.models.base.MODELS` resolves a name with a colon that is not registered:

* ``torchvision:NAME`` — any classification builder of ``torchvision.models``
  (``list_models(module=torchvision.models)``), built with ``weights=None`` (nothing is
  ever downloaded) and ``num_classes`` = the dataset's classes. The config keys are the
  architecture class's constructor arguments (``ResNet.__init__``'s ``zero_init_residual``,
  ``groups``, …; a ViT's ``image_size``); each defaults to ``None``: the builder's own
  choice, which for some keys is not the class default (``wide_resnet50_2`` fixes its
  width), so only keys the scenario sets are passed. The first convolution reads the
  dataset's channels (a new one where they differ). ResNets have one option more,
  ``small_input`` (below).
* ``MODULE:CLASS`` — an ``nn.Module`` subclass imported from ``MODULE``. Its constructor's
  keyword arguments are the config: a pydantic model built from the signature (the
  annotations as types, the defaults as defaults; a default that is not plain data —
  a class, a function — becomes ``None``, "the constructor's default"). Arguments named
  ``num_classes``, ``image_shape`` (C, H, W) and ``in_channels`` are filled from the
  dataset unless the scenario sets them. A class with its own ``Config`` (a subclass of
  :class:`~fedleak.models.ModelConfig`, or at least of fedleak's ``Strict`` pydantic base,
  as every component's config) is a fedleak-style model instead: that ``Config`` is
  validated and the constructor is called as ``(config, image_shape, num_classes)``, like
  the registered models'.

Either way unknown keys are errors, and a name that does not resolve (no module, no such
attribute, not an ``nn.Module`` class, no such torchvision model) is one
:class:`~fedleak.core.errors.FedleakError` line. torchvision is imported only here, and
only for a ``torchvision:`` name.

**The small-input stem.** torchvision's ResNets open with a 7×7 stride-2 convolution and a
3×3 stride-2 max-pool, made for 224-pixel ImageNet images: on 32×32 CIFAR images layer 4
would see 1×1 maps. Geiping et al.'s CIFAR ResNets (Inverting Gradients, NeurIPS 2020;
``inversefed/nn/models.py`` of their reference code) open with a 3×3 stride-1 padding-1
convolution and no max-pool, the usual CIFAR ResNet stem (He et al. 2016, §4.2).
``small_input = true`` gives that stem (same width, no bias, Kaiming-normal fan-out
initialisation as torchvision's ResNet); the default ``None`` chooses it for images of at
most 64 pixels a side (CIFAR's 32, Tiny-ImageNet's 64, the 8×8 digits), the ImageNet stem
above that.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from torch import nn

from fedleak.core.config import Strict
from fedleak.core.errors import FedleakError, first_line
from fedleak.models.base import MODELS, ModelConfig, ModelFactory

TORCHVISION = "torchvision"
DATASET_ARGUMENTS = ("num_classes", "image_shape", "in_channels")
"""Constructor arguments of a user's model that the dataset fills when the scenario does not."""
SMALL_INPUT_MAX_SIDE = 64
"""``small_input = None``: the small-input ResNet stem for images at most this many pixels a side."""
_PLAIN = (bool, int, float, str, list, tuple, dict)


class SignatureConfig(ModelConfig):
    """A config built from a constructor's signature (subclassed per model at run time).

    Such classes exist only in the process that resolved the model's name, so a config is
    pickled by that name and its values (a Ray worker resolves the name again).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: ClassVar[str]
    """The model's name in the scenario (``torchvision:resnet18``)."""
    arguments: ClassVar[tuple[str, ...]]
    """The fields that are constructor arguments (the others are fedleak's own options)."""

    def keyword_arguments(self, filled: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments: every argument field that is set, ``None``
        ones taken from ``filled`` when there, else left to the constructor's default."""
        values = {name: getattr(self, name) for name in self.arguments}
        values = {name: filled.get(name) if value is None else value for name, value in values.items()}
        return {name: value for name, value in values.items() if value is not None}

    def __reduce__(self) -> tuple[Callable[[str, dict[str, Any]], BaseModel], tuple[str, dict[str, Any]]]:
        return _rebuilt_config, (self.model_name, self.model_dump())


class TorchvisionResNetConfig(SignatureConfig):
    """A torchvision ResNet's config: its constructor's arguments and the stem."""

    small_input: bool | None = None
    """The CIFAR stem (3×3 stride-1 convolution, no max-pool) instead of ImageNet's; ``None``:
    for images of at most 64 pixels a side (module docstring)."""


def _rebuilt_config(name: str, values: dict[str, Any]) -> BaseModel:
    return MODELS.get(name).Config.model_validate(values)


@MODELS.resolver
def resolve(name: str) -> ModelFactory:
    """The model factory for ``torchvision:NAME`` or ``MODULE:CLASS``.

    Raises:
        FedleakError: one line naming ``name`` and why it does not resolve.
    """
    module, _, attribute = name.partition(":")
    if not module or not attribute or ":" in attribute:
        raise FedleakError(f"'{name}': expected MODULE:CLASS (e.g. my_pkg.models:Net) or torchvision:NAME")
    if module == TORCHVISION:
        return TorchvisionModel(name, attribute)
    network = _imported_class(name, module, attribute)
    if hasattr(network, "Config"):
        if not (isinstance(network.Config, type) and issubclass(network.Config, Strict)):
            raise FedleakError(f"'{name}': its Config must subclass fedleak.models.ModelConfig "
                               "(or fedleak.core.config.Strict), as every component's config does")
        return network  # type: ignore[return-value]  # a fedleak-style model: (config, image_shape, num_classes)
    return UserModel(name, network)


def _imported_class(name: str, module: str, attribute: str) -> type[nn.Module]:
    try:
        found: Any = importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 - the user's module: any failure is one line
        hint = (" (is the folder holding it on PYTHONPATH? `python -m fedleak` adds the working directory)"
                if isinstance(error, ModuleNotFoundError) and module.split(".")[0] == (error.name or "").split(".")[0]
                else "")
        raise FedleakError(f"'{name}': cannot import {module}: {type(error).__name__}: {first_line(error)}{hint}"
                           ) from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise FedleakError(f"'{name}': {module} has no attribute '{attribute}'")
        found = getattr(found, part)
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise FedleakError(f"'{name}': {module}.{attribute} is a {type(found).__name__}, not an nn.Module subclass")
    return found


class UserModel:
    """A user's ``nn.Module`` class whose constructor's keyword arguments are its config."""

    def __init__(self, name: str, network: type[nn.Module]) -> None:
        self.network = network
        self.Config: type[BaseModel] = signature_config(name, network, keep_defaults=True)

    def __call__(self, config: SignatureConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        filled = {"num_classes": num_classes, "image_shape": image_shape, "in_channels": image_shape[0]}
        return self.network(**config.keyword_arguments(filled))


class TorchvisionModel:
    """A torchvision classification model, untrained, sized for the dataset."""

    def __init__(self, name: str, architecture: str) -> None:
        import torchvision.models  # torchvision only for a torchvision model

        available = torchvision.models.list_models(module=torchvision.models)
        if architecture not in available:
            close = difflib.get_close_matches(architecture, available, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise FedleakError(f"'{name}': torchvision has no classification model '{architecture}'{hint}; "
                               f"see torchvision.models.list_models()")
        self.builder: Callable[..., nn.Module] = torchvision.models.get_model_builder(architecture)
        self.network: type[nn.Module] = typing.get_type_hints(self.builder)["return"]
        self.resnet = issubclass(self.network, torchvision.models.ResNet)
        base = TorchvisionResNetConfig if self.resnet else SignatureConfig
        self.Config: type[BaseModel] = signature_config(name, self.network, keep_defaults=False, base=base,
                                                        skip=("num_classes",))

    def __call__(self, config: SignatureConfig, image_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        model = self.builder(weights=None, num_classes=num_classes, **config.keyword_arguments({}))
        if isinstance(config, TorchvisionResNetConfig):
            small = config.small_input
            resnet_stem(model, image_shape, max(image_shape[1:]) <= SMALL_INPUT_MAX_SIDE if small is None else small)
        else:
            read_channels(model, image_shape[0])
        return model


def resnet_stem(model: nn.Module, image_shape: tuple[int, int, int], small: bool) -> None:
    """Give a torchvision ResNet the small-input stem (``small``) and the dataset's channels.

    The small stem is Geiping et al.'s CIFAR stem: conv1 a 3×3 convolution of stride 1 and
    padding 1 (no bias), no max-pool. A replaced conv1 is initialised as torchvision's
    ResNet initialises its convolutions (Kaiming normal, fan-out, ReLU gain).
    """
    conv1: nn.Conv2d = model.conv1  # type: ignore[assignment]
    if not small and conv1.in_channels == image_shape[0]:
        return
    kernel, stride, padding = (3, 1, 1) if small else (7, 2, 3)  # torchvision's ImageNet stem: 7×7, stride 2
    model.conv1 = nn.Conv2d(image_shape[0], conv1.out_channels, kernel, stride, padding, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if small:
        model.maxpool = nn.Identity()


def read_channels(model: nn.Module, channels: int) -> None:
    """Replace the first convolution by one that reads ``channels`` input channels (PyTorch's
    default initialisation), where it reads another number."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None))
    if conv is None or conv.in_channels == channels:
        return
    same = {key: getattr(conv, key) for key in ("kernel_size", "stride", "padding", "dilation", "groups",
                                                 "padding_mode")}
    model.set_submodule(name, nn.Conv2d(channels, conv.out_channels, bias=conv.bias is not None, **same))


def signature_config(name: str, network: type[nn.Module], *, keep_defaults: bool,
                     base: type[SignatureConfig] = SignatureConfig, skip: Iterable[str] = ()) -> type[BaseModel]:
    """A pydantic config with one field per keyword argument of ``network``'s constructor.

    Each field has the argument's annotation as its type (``Any`` where there is none or
    pydantic cannot validate it) and, with ``keep_defaults``, its default when that is plain
    data; otherwise (and for the dataset's arguments) the default is ``None``: not passed.

    Raises:
        FedleakError: an argument that is positional-only or required and unnamed, or whose
        name is one of fedleak's own options.
    """
    parameters = _keyword_parameters(name, network, skip)
    try:
        hints = typing.get_type_hints(network.__init__)
    except Exception:  # noqa: BLE001 - an annotation that does not evaluate: validate nothing
        hints = {}
    taken = set(base.model_fields) | set(dir(BaseModel))
    clash = next((p.name for p in parameters if p.name in taken), None)
    if clash is not None:
        raise FedleakError(f"'{name}': constructor argument '{clash}' clashes with a fedleak model option")
    fields: dict[str, Any] = {p.name: _field(p, _validated(hints.get(p.name, Any)), keep_defaults)
                              for p in parameters}
    config = typing.cast(type[SignatureConfig], create_model(f"{network.__name__}Config", __base__=base,
                                                             __module__=__name__, **fields))
    config.model_name = name
    config.arguments = tuple(fields)
    return config


def _keyword_parameters(name: str, network: type[nn.Module], skip: Iterable[str]) -> list[inspect.Parameter]:
    parameters = list(inspect.signature(network.__init__).parameters.values())[1:]  # without self
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for p in parameters:
        if p.kind is inspect.Parameter.POSITIONAL_ONLY and p.default is inspect.Parameter.empty:
            raise FedleakError(f"'{name}': constructor argument '{p.name}' is positional-only; "
                               "fedleak passes keyword arguments")
    return [p for p in parameters if p.kind in keyword and p.name not in skip]


def _validated(annotation: Any) -> Any:
    """``annotation`` if pydantic can validate it (arbitrary classes by isinstance), else ``Any``."""
    try:
        TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - whatever pydantic cannot build a schema for
        return Any
    return annotation


def _field(parameter: inspect.Parameter, annotation: Any, keep_defaults: bool) -> tuple[Any, Any]:
    default = parameter.default
    if parameter.name in DATASET_ARGUMENTS or not keep_defaults or not _plain(default):
        return Optional[annotation], None  # noqa: UP045 - the annotation is a runtime object here
    if default is inspect.Parameter.empty:
        return annotation, ...
    return annotation, default


def _plain(value: Any) -> bool:
    """Whether ``value`` is data a scenario could state (TOML values), or no default at all."""
    if value is inspect.Parameter.empty:
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)
