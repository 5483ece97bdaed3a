"""The scenario schema: every component by name, each with its own validated config.

Component names are checked against their registries and each component's parameters
against its ``Config``; :func:`first_error` turns pydantic's report into one line naming
the key.

Validation runs cheapest first (:func:`validate_scenario`): the scenario's own sections and
keys, then the components. The registries are imported only for the second pass: their
modules import torch (1.5–1.9 s on 2 cores), so a mistyped key or an out-of-range value is
reported before it is loaded.
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Annotated, Any

import tomli_w
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from fedleak.core.config import (
    AccountingConfig,
    AppConfig,
    CaptureConfig,
    DatasetConfig,
    FederationConfig,
    PartitionConfig,
    RunnerConfig,
    Seed,
    Strict,
    ThreatModel,
    TrainingConfig,
)
from fedleak.core.errors import FedleakError
from fedleak.core.plugins import import_modules
from fedleak.core.registry import Registry

if TYPE_CHECKING:
    from fedleak.data import DatasetSplits
    from fedleak.defenses import DefensePipeline
    from fedleak.models import ModelSpec

_REGISTRIES = {"model": ("fedleak.models", "MODELS"), "attack": ("fedleak.attacks", "ATTACKS"),
               "defense": ("fedleak.defenses", "DEFENSES"), "dataset": ("fedleak.data", "DATASETS"),
               "partitioner": ("fedleak.data", "PARTITIONERS"), "runner": ("fedleak.runners", "RUNNERS"),
               "crafting": ("fedleak.crafting", "CRAFTINGS")}
"""Where each kind's registry lives: imported when a component of that kind is first validated."""
_PLAIN = "plain"
"""The validation context of the first pass: components are kept as given, not looked up."""


def _registry(kind: str) -> Registry[Any]:
    module, name = _REGISTRIES[kind]
    registry: Registry[Any] = getattr(importlib.import_module(module), name)
    return registry


def _plain_pass(info: ValidationInfo) -> bool:
    return info.context == _PLAIN


class Component(Strict):
    """A registered component chosen by name, with its own validated config."""

    name: str
    config: Strict

    def as_table(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json", exclude_none=True)}


def _component(kind: str) -> tuple[BeforeValidator, PlainSerializer]:
    """Validator/serializer pair turning ``{name = "...", **params}`` into a Component."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, Component):
            return value
        if not isinstance(value, dict) or "name" not in value:
            raise ValueError(f"expected a table with a 'name' key (a {kind})")
        params = dict(value)
        name = params.pop("name")
        if _plain_pass(info):
            return Component(name=_name(kind, name), config=Strict())
        return Component(name=name, config=_validated(kind, name, params))

    return BeforeValidator(validate), PlainSerializer(Component.as_table)


def _validated(kind: str, name: Any, options: dict[str, Any]) -> Strict:
    """``options`` validated by the ``Config`` of the component ``name`` (errors as one-line ValueErrors)."""
    try:
        config_class: type[Strict] = _registry(kind).get(_name(kind, name)).Config
    except FedleakError as error:
        raise ValueError(f"name: {error}") from None
    try:
        return config_class.model_validate(options)
    except ValidationError as error:
        raise ValueError(first_error(error)) from None


def _name(kind: str, name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError(f"name: expected the {kind}'s name as a string, got {type(name).__name__}")
    return name


def _named(kind: str, base: type[Strict]) -> BeforeValidator:
    """Validator reading ``{name = "...", **options}`` as the named component's own ``Config``
    (a subclass of ``base`` that keeps the name: datasets, partitioners, runners). In the plain
    pass, ``base`` checks the options every component of the kind has, and lets the others by."""
    default = base.model_fields["name"].default

    def validate(value: Any, info: ValidationInfo) -> Strict:
        if isinstance(value, base):
            value = value.model_dump(exclude_unset=True)
        if not isinstance(value, dict):
            raise ValueError(f"expected a table (a {kind})")
        name = value.get("name", default)
        if _plain_pass(info):
            return _shared_options(base, {**value, "name": _name(kind, name)})
        return _validated(kind, name, {**value, "name": name})

    return BeforeValidator(validate)


def _shared_options(base: type[Strict], options: dict[str, Any]) -> Strict:
    """``options`` checked by ``base`` alone: the named component's own options are not known yet."""
    try:
        return base.model_validate({key: value for key, value in options.items() if key in base.model_fields})
    except ValidationError as error:
        raise ValueError(first_error(error)) from None


ModelComponent = Annotated[Component, *_component("model")]
AttackComponent = Annotated[Component, *_component("attack")]
DefenseComponent = Annotated[Component, *_component("defense")]
CraftingComponent = Annotated[Component, *_component("crafting")]
# SerializeAsAny: dump the component's own Config, not only the base class's fields.
NamedDataset = Annotated[SerializeAsAny[DatasetConfig], _named("dataset", DatasetConfig)]
NamedPartition = Annotated[SerializeAsAny[PartitionConfig], _named("partitioner", PartitionConfig)]
NamedRunner = Annotated[SerializeAsAny[RunnerConfig], _named("runner", RunnerConfig)]


class Scenario(Strict):
    """Everything a run needs; ``Scenario.model_validate`` checks it all."""

    name: str = Field("scenario", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: Seed = 0
    imports: tuple[str, ...] = Field((), alias="import")
    """Modules imported before the components are looked up: a user's plugins
    (:mod:`fedleak.core.plugins`)."""
    dataset: NamedDataset = Field(default_factory=lambda: {"name": "digits"}, validate_default=True)
    partition: NamedPartition = Field(default_factory=lambda: {"name": "iid"}, validate_default=True)
    model: ModelComponent = Field(default_factory=lambda: {"name": "lenet"}, validate_default=True)
    training: TrainingConfig = TrainingConfig()
    federation: FederationConfig = FederationConfig()
    capture: CaptureConfig = CaptureConfig()
    threat: ThreatModel = ThreatModel()
    attacks: list[AttackComponent] = Field(default_factory=list)
    crafting: CraftingComponent | None = None
    """What a malicious server sends in its malicious rounds instead of the global model
    (:mod:`fedleak.crafting`); ``None``: the global model in every round."""
    defenses: list[DefenseComponent] = Field(default_factory=list)
    accounting: AccountingConfig = AccountingConfig()
    runner: NamedRunner = Field(default_factory=lambda: {"name": "inline"}, validate_default=True)
    save_images: bool = True
    app: AppConfig | None = None
    """Set for a user's own Flower app attached with :func:`fedleak.attach`: its clients are
    the user's, so there is no dataset, data plan, training or defense of fedleak's (those
    sections are not stored) and ``capture.clients`` counts clients in the order the server
    first sent to them."""

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, table: Any, info: ValidationInfo) -> Any:
        """Import the ``import`` list first: the components it registers are validated next."""
        modules = table.get("import", ()) if isinstance(table, dict) and not _plain_pass(info) else ()
        if isinstance(modules, list | tuple) and all(isinstance(module, str) for module in modules):
            try:
                import_modules(modules)
            except FedleakError as error:
                raise ValueError(str(error)) from None
        return table  # a malformed list is reported by the field's own validation

    @model_validator(mode="after")
    def _defenses_compose(self, info: ValidationInfo) -> Scenario:
        if _plain_pass(info):
            return self
        try:
            self.defense_pipeline()
        except ValueError as error:
            raise ValueError(f"defenses: {error}") from None
        return self

    @model_validator(mode="after")
    def _app_clients_are_its_own(self) -> Scenario:
        if self.app is not None and self.defenses:
            raise ValueError("defenses: an attached app's clients apply their own; fedleak neither applies "
                             "nor accounts them")
        return self

    @model_validator(mode="after")
    def _rounds_and_clients_exist(self) -> Scenario:
        if self.app is not None:  # the app's rounds and clients are known only as it runs
            return self
        rounds, clients = self.federation.rounds, self.partition.num_clients
        # getattr: the first (plain) pass keeps a component's config unchecked, without its rounds
        crafted = getattr(self.crafting.config, "rounds", []) if self.crafting else []
        for key, values, bound in (("capture.rounds", self.capture.rounds, rounds),
                                   ("crafting.rounds", crafted, rounds),
                                   ("capture.clients", self.capture.clients, clients - 1)):
            beyond = [value for value in values if value > bound]
            if beyond:
                raise ValueError(f"{key}: {beyond[0]} is beyond the last one ({bound})")
        return self

    @model_validator(mode="after")
    def _crafting_by_a_malicious_server(self, info: ValidationInfo) -> Scenario:
        if self.crafting is None:
            return self
        if self.threat.server != "malicious":
            raise ValueError('crafting: sending crafted weights needs threat.server = "malicious"')
        # The legacy (SecAgg+) server sends the global model through Flower's own workflow.
        if not _plain_pass(info) and self.defense_pipeline().legacy_path:
            raise ValueError("crafting: not supported with secure aggregation (the legacy path)")
        return self

    def app_model_spec(self) -> ModelSpec:
        """The attached app's model (``app`` set), on the images its clients send."""
        if self.app is None:
            raise ValueError("not an attached app's scenario (no [app] section)")
        from fedleak.models import ModelSpec

        mean, std = self.app.channel_stats()
        return ModelSpec(self.model.name, self.model.config, self.app.image_shape, self.app.num_classes, mean, std)

    def model_spec(self, splits: DatasetSplits) -> ModelSpec:
        """The architecture for this scenario's model on this dataset."""
        from fedleak.models import ModelSpec

        mean, std = splits.channel_stats
        if self.dataset.normalization == "pixel":
            mean = splits.pixel_mean
        return ModelSpec(self.model.name, self.model.config, splits.image_shape,
                         splits.num_classes, mean, std)

    def defense_pipeline(self) -> DefensePipeline:
        """The client-side defenses, in the order listed."""
        from fedleak.defenses import DefensePipeline

        return DefensePipeline.from_components([(d.name, d.config) for d in self.defenses])

    def to_toml(self) -> str:
        fedleaks_own = {"dataset", "partition", "training", "federation"} if self.app is not None else set()
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True, by_alias=True, exclude=fedleaks_own))


def validate_scenario(table: Any) -> Scenario:
    """``table`` as a :class:`Scenario`: its own sections first, without the registries, then whole.

    Raises:
        ValidationError: the first pass's errors when it has any (the components unchecked),
            else the second's.
    """
    Scenario.model_validate(table, context=_PLAIN)
    return Scenario.model_validate(table)


_KEYED_MESSAGE = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


def first_error(error: ValidationError) -> str:
    """One line for the first error: ``attacks[0].iterations: Input should be > 0``."""
    first = error.errors()[0]
    location = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    message = first["msg"].removeprefix("Value error, ")
    if location and _KEYED_MESSAGE.match(message):
        return f"{location}.{message}"
    return f"{location}: {message}" if location else message

