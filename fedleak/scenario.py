"""The scenario: one TOML file that fully determines a run.

``load_scenario`` reads a file, applies ``--set key=value`` overrides, validates
everything (component names against their registries, each component's own
parameters against its config class) and turns any problem into a one-line
:class:`~fedleak.errors.FedleakError` naming the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from fedleak.attacks import ATTACKS
from fedleak.config import (
    AccountingConfig,
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
from fedleak.data import DATASETS, DatasetSplits
from fedleak.defenses import DEFENSES, DefensePipeline
from fedleak.errors import FedleakError
from fedleak.models import MODELS, ModelSpec
from fedleak.registry import Registry


class Component(Strict):
    """A registered component chosen by name, with its own validated config."""

    name: str
    config: BaseModel

    def as_table(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json", exclude_none=True)}


def _component(registry: Registry[Any]) -> tuple[BeforeValidator, PlainSerializer]:
    """Validator/serializer pair turning ``{name = "...", **params}`` into a Component."""

    def validate(value: Any) -> Component:
        if isinstance(value, Component):
            return value
        if not isinstance(value, dict) or "name" not in value:
            raise ValueError(f"expected a table with a 'name' key (a {registry.kind})")
        params = dict(value)
        name = params.pop("name")
        if not isinstance(name, str):
            raise ValueError(f"name: expected the {registry.kind}'s name as a string, got {type(name).__name__}")
        if name not in registry:
            raise ValueError(
                f"name: unknown {registry.kind} '{name}'; allowed: {', '.join(registry.names())}"
            )
        try:
            config = registry.get(name).Config.model_validate(params)
        except ValidationError as error:
            raise ValueError(first_error(error)) from None
        return Component(name=name, config=config)

    return BeforeValidator(validate), PlainSerializer(Component.as_table)


ModelComponent = Annotated[Component, *_component(MODELS)]
AttackComponent = Annotated[Component, *_component(ATTACKS)]
DefenseComponent = Annotated[Component, *_component(DEFENSES)]


class Scenario(Strict):
    """Everything a run needs; ``Scenario.model_validate`` checks it all."""

    name: str = Field("scenario", pattern=r"^[A-Za-z0-9_.-]+$")
    seed: Seed = 0
    dataset: DatasetConfig = DatasetConfig()
    partition: PartitionConfig = PartitionConfig()
    model: ModelComponent = Field(default_factory=lambda: {"name": "lenet"}, validate_default=True)
    training: TrainingConfig = TrainingConfig()
    federation: FederationConfig = FederationConfig()
    capture: CaptureConfig = CaptureConfig()
    threat: ThreatModel = ThreatModel()
    attacks: list[AttackComponent] = Field(default_factory=list)
    defenses: list[DefenseComponent] = Field(default_factory=list)
    accounting: AccountingConfig = AccountingConfig()
    runner: RunnerConfig = RunnerConfig()
    save_images: bool = True

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, dataset: DatasetConfig) -> DatasetConfig:
        if dataset.name not in DATASETS:
            raise ValueError(
                f"name: unknown dataset '{dataset.name}'; allowed: {', '.join(DATASETS.names())}"
            )
        return dataset

    @model_validator(mode="after")
    def _defenses_compose(self) -> Scenario:
        try:
            self.defense_pipeline()
        except ValueError as error:
            raise ValueError(f"defenses: {error}") from None
        return self

    @model_validator(mode="after")
    def _rounds_and_clients_exist(self) -> Scenario:
        rounds, clients = self.federation.rounds, self.partition.num_clients
        for key, values, bound in (("capture.rounds", self.capture.rounds, rounds),
                                   ("threat.random_query.rounds", self.threat.random_query.rounds, rounds),
                                   ("capture.clients", self.capture.clients, clients - 1)):
            beyond = [value for value in values if value > bound]
            if beyond:
                raise ValueError(f"{key}: {beyond[0]} is beyond the last one ({bound})")
        return self

    @model_validator(mode="after")
    def _random_query_on_message_path(self) -> Scenario:
        # The legacy (SecAgg+) server sends the global model through Flower's own workflow.
        if self.threat.random_query.rounds and self.defense_pipeline().legacy_path:
            raise ValueError("threat.random_query: not supported with secure aggregation (the legacy path)")
        return self

    def model_spec(self, splits: DatasetSplits) -> ModelSpec:
        """The architecture for this scenario's model on this dataset."""
        mean, std = splits.channel_stats
        if self.dataset.normalization == "pixel":
            mean = splits.pixel_mean
        return ModelSpec(self.model.name, self.model.config, splits.image_shape,  # type: ignore[arg-type]
                         splits.num_classes, mean, std)

    def defense_pipeline(self) -> DefensePipeline:
        """The client-side defenses, in the order listed."""
        return DefensePipeline.from_components([(d.name, d.config) for d in self.defenses])

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Read, override and validate a scenario file.

    Raises:
        FedleakError: one line naming the file, the key and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise FedleakError(f"scenario file not found: {path}")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FedleakError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise FedleakError(f"{path}: not UTF-8 text (byte {error.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise FedleakError(f"{path}: invalid TOML: {error}") from None
    for override in overrides:
        apply_override(table, override)
    return parse_scenario(table, source=str(path))


def parse_scenario(table: dict[str, Any], source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(table)
    except ValidationError as error:
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise FedleakError(f"{source}: {first_error(error)}{more}") from None


def apply_override(table: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override; the value is read as a TOML literal
    (``3``, ``true``, ``[1, 2]``) and otherwise taken as a plain string."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FedleakError(f"--set expects key=value, got '{override}'")
    *parents, leaf = key.split(".")
    if "" in (*parents, leaf):
        raise FedleakError(f"--set {key}: empty part in the key (write a.b.c)")
    node: Any = table
    for depth, part in enumerate(parents):
        node = _child(node, part, key, ".".join(parents[: depth + 1]))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if isinstance(node, list):
        node[_index(node, leaf, key)] = value
    else:
        node[leaf] = value


def _child(node: Any, part: str, key: str, path: str) -> Any:
    """The table or list at ``part`` of ``node`` (a new table if absent): what ``path`` names."""
    child = node[_index(node, part, key)] if isinstance(node, list) else node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise FedleakError(f"--set {key}: '{path}' is a value ({type(child).__name__}), not a table or list")
    return child


def _index(node: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise FedleakError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
    return int(part)


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

