"""The server's reply boundary: every training reply read as the update it stands for, or rejected.

Three readers, one per kind of client, each a :class:`ReplyReader`:

* :class:`ReplyChecker` — fedleak's own clients. A reply is accepted only when its declared
  metadata agrees with what the server configured and with what the data plan says the client
  did (partition, local steps, examples), and its weights match the model sent: the same keys
  and shapes, the same dtype, finite values. Anything else — a client error, a truncated
  tensor, a lying partition id, NaN, float64 — becomes a
  :class:`~fedleak.core.updates.RejectedReply`: stored with its reason, kept out of aggregation
  and attacks, and the round goes on.
* :class:`AppReplies` — a stock Flower client's reply (an attached app's, or a stock client in
  fedleak's own run): its training read from what it declares, else from the train config the
  server sent, else assumed with a warning; replies the strategy could not aggregate rejected.
* :class:`ServerReplies` — fedleak's own run: its clients through the checker, stock clients
  through :class:`AppReplies`.

Where a message keeps its arrays, config and metrics, and the metric replies are weighted by,
are parameters (:class:`~fedleak.federation.records.RecordKeys`), as they are of Flower's strategies.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedleak.core import wire
from fedleak.core.config import AppConfig, TrainingConfig
from fedleak.core.errors import first_line
from fedleak.core.updates import ClientUpdate, ReportedSamples, UpdateMetadata, Weights
from fedleak.data import DataPlan
from fedleak.federation import records
from fedleak.federation.records import KEYS, RecordKeys
from fedleak.models import ModelSpec
from fedleak.results.rows import RejectedReply, ReplyStatus
from fedleak.scenario import Scenario


class ReplyReader(Protocol):
    """The server boundary: one reply's content, read as the update it stands for or rejected."""

    keys: RecordKeys
    """Where the replies keep their records (the strategy writes decoded weights back under ``keys.arrays``)."""

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply: ...


class InvalidReply(Exception):
    """Why a reply is not accepted (the message is stored as the rejection's reason)."""


@dataclass(frozen=True)
class ReplyChecker:
    """Checks one run's replies against what its server configured and sent."""

    run_id: str
    training: TrainingConfig
    plan: DataPlan
    keys: RecordKeys = field(default=KEYS)

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply:
        """A Message API reply's metrics and weights, checked (:meth:`check`)."""
        record = content.get(self.keys.metrics)
        metrics = record if isinstance(record, MetricRecord) else None
        return self.check(server_round, node_id, metrics,
                          lambda: records.received_weights(content, sent, self.keys.arrays), sent)

    def check(self, server_round: int, node_id: int, metrics: Mapping[str, Any] | None,
              received: Callable[[], Weights], sent: Weights) -> ClientUpdate | RejectedReply:
        """The captured update, or the rejection with its reason.

        ``received`` decodes the reply's weights; it runs only after the metadata passed,
        and whatever it raises (a truncated or undecodable array) rejects the reply.
        """
        partition_id = None
        try:
            if metrics is None:
                raise InvalidReply("no metrics record")
            partition_id = self.partition_id(metrics)
            metadata = self.metadata(metrics, partition_id, server_round)
            try:
                weights = received()
            except Exception as error:  # noqa: BLE001 - whatever a malformed reply makes the decoder raise
                raise InvalidReply(f"cannot decode its arrays: {type(error).__name__}: {first_line(error)}") from None
            check_weights(weights, sent)
        except InvalidReply as problem:
            return RejectedReply(self.run_id, server_round, node_id, partition_id, ReplyStatus.REJECTED, str(problem))
        return ClientUpdate(self.run_id, server_round, node_id, partition_id, sent, weights, metadata)

    def partition_id(self, metrics: Mapping[str, Any]) -> int:
        partition_id = _integer(metrics, wire.PARTITION_ID)
        if not 0 <= partition_id < self.plan.num_clients:
            raise InvalidReply(f"{wire.PARTITION_ID} {partition_id} is not a partition "
                               f"(0..{self.plan.num_clients - 1})")
        return partition_id

    def metadata(self, metrics: Mapping[str, Any], partition_id: int, server_round: int) -> UpdateMetadata:
        """The declared training, each value equal to what the server configured and the
        data plan gives for this partition and round."""
        training = self.training
        expected = {
            wire.BATCH_SIZE: training.batch_size,
            wire.LOCAL_STEPS: self.plan.local_steps(partition_id, training),
            wire.NUM_EXAMPLES: len(self.plan.samples(partition_id, server_round, training)),
        }
        declared = {key: _integer(metrics, key) for key in expected}
        for key, value in expected.items():
            if declared[key] != value:
                raise InvalidReply(f"{key} {declared[key]}, but the server configured {value}")
        lr = _number(metrics, wire.LR)
        if not math.isclose(lr, training.lr, rel_tol=1e-9):
            raise InvalidReply(f"{wire.LR} {lr:g}, but the server configured {training.lr:g}")
        _number(metrics, wire.TRAIN_LOSS)
        return UpdateMetadata(training.algorithm, lr, declared[wire.LOCAL_STEPS],
                              declared[wire.BATCH_SIZE], declared[wire.NUM_EXAMPLES])


def check_weights(received: Weights, sent: Weights) -> None:
    """The reply's weights have the sent model's keys, shapes and dtypes, and are finite."""
    missing, extra = sorted(set(sent) - set(received)), sorted(set(received) - set(sent))
    if missing or extra:
        raise InvalidReply(f"arrays {'missing ' + missing[0] if missing else 'unexpected ' + extra[0]} "
                           f"(the model sent has {len(sent)} tensors)")
    for key, weight in sent.items():
        value = received[key]
        if tuple(value.shape) != tuple(weight.shape):
            raise InvalidReply(f"{key} has shape {tuple(value.shape)}, the model sent {tuple(weight.shape)}")
        if value.dtype != weight.dtype:
            raise InvalidReply(f"{key} is {value.dtype}, the model sent {weight.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise InvalidReply(f"{key} holds non-finite values")


def _integer(metrics: Mapping[str, Any], key: str) -> int:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidReply(f"{key} must be an integer, got {_shown(value)}")
    return value


def _number(metrics: Mapping[str, Any], key: str) -> float:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidReply(f"{key} must be a finite number, got {_shown(value)}")
    return float(value)


def _shown(value: Any) -> str:
    return "nothing" if value is None else f"{value!r}"[:40]


METADATA_KEYS: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning-rate", "learning_rate"),
    "batch_size": ("batch-size", "batch_size"),
    "local_steps": ("local-steps", "local_steps"),
    "local_epochs": ("local-epochs", "local_epochs", "epochs"),
    "num_examples": ("num-examples", "num_examples"),
}
"""The keys each training value is read under, in a reply's metrics and in the train config sent."""


class AppReplies:
    """Reads an attached app's replies (the :class:`~fedleak.federation.replies.ReplyReader` for it)."""

    def __init__(self, run_id: str, app: AppConfig, first_client: int = 0,
                 config: Mapping[str, Any] | None = None, keys: RecordKeys = KEYS) -> None:
        self.run_id = run_id
        self.app = app
        self.keys = keys
        self.first_client = first_client
        """The number of the first client seen (fedleak's own run numbers stock clients after its partitions)."""
        self.config: Mapping[str, Any] = config or {}
        """The train config sent to a node :meth:`sent_to` did not name (one config for every node)."""
        self._clients: dict[int, int] = {}
        self._configs: dict[int, Mapping[str, Any]] = {}

    def sent_config(self, content: RecordDict) -> Mapping[str, Any]:
        """The train config a message to a client carries: the record under ``keys.config``, else its only one."""
        configs = content.config_records
        if self.keys.config in configs:
            return configs[self.keys.config]
        return next(iter(configs.values())) if len(configs) == 1 else ConfigRecord()

    def sent_to(self, configs: dict[int, Mapping[str, Any]]) -> None:
        """The train config each node was sent this round; new nodes are numbered in node-id order."""
        self._configs = configs
        for node_id in sorted(configs):
            self.client(node_id)

    def client(self, node_id: int) -> int:
        """The node's client number (the next free one, the first time it is seen)."""
        return self._clients.setdefault(node_id, self.first_client + len(self._clients))

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply:
        """The update a reply stands for (the lab samples taken out of it), or why it is rejected."""
        reported, warnings = _reported_samples(content, self.app)
        client = self.client(node_id)
        try:
            weights = _weights(content, sent)
            metrics = _metrics(content)
            metadata = self.metadata(node_id, metrics, reported, warnings)
        except InvalidReply as problem:
            return RejectedReply(self.run_id, server_round, node_id, client, ReplyStatus.REJECTED, str(problem))
        return ClientUpdate(self.run_id, server_round, node_id, client, sent, weights, metadata,
                            warnings=tuple(warnings), reported=reported)

    def metadata(self, node_id: int, metrics: Mapping[str, Any], reported: ReportedSamples | None,
                 warnings: list[str]) -> UpdateMetadata:
        """The client's training as far as it can be known (module docstring); ``warnings`` gets what is assumed."""
        own = self.app.model_dump(include={"lr", "batch_size", "local_epochs", "local_steps"}, exclude_none=True)
        sources = [("fedleak.attach", {METADATA_KEYS[k][0]: v for k, v in own.items()}), ("the reply", metrics),
                   ("the train config sent", self._configs.get(node_id, self.config))]
        found = {name: _declared(name, sources, warnings) for name in METADATA_KEYS}
        examples = found["num_examples"] or (len(reported.labels) if reported is not None else None)
        if examples is None:
            examples = 1
            warnings.append("num-examples unknown: taken as 1")
        lr = found["lr"]
        if lr is None:
            lr = 1.0
            warnings.append("lr unknown (not given to fedleak.attach, in the reply or in the train config sent): "
                            "taken as 1, so gradients are known only up to scale")
        batch = found["batch_size"]
        if batch is None:
            batch = examples
            warnings.append(f"batch size unknown: taken as the {examples} examples trained on (one batch)")
        steps = found["local_steps"]
        if steps is None:
            epochs = found["local_epochs"]
            if epochs is None:
                epochs = 1
                warnings.append("local epochs unknown: taken as 1")
            steps = int(epochs) * math.ceil(examples / batch)
        algorithm = "fedsgd" if steps == 1 and batch >= examples else "fedavg"
        return UpdateMetadata(algorithm, float(lr), int(steps), int(batch), int(examples))

    def consistent(self, captured: list[tuple[Message, ClientUpdate | RejectedReply]]
                   ) -> list[tuple[Message, ClientUpdate | RejectedReply]]:
        """Reject accepted replies the inner strategy could not aggregate with the others: no
        usable weighting metric (``keys.weighted_by``), or other metric keys than most of the round's replies."""
        metrics = {id(reply): _metrics(reply.content) for reply, outcome in captured
                   if isinstance(outcome, ClientUpdate)}
        keys = {reply: frozenset(record) for reply, record in metrics.items()}
        common = Counter(keys.values()).most_common(1)[0][0] if keys else frozenset()
        checked: list[tuple[Message, ClientUpdate | RejectedReply]] = []
        for reply, outcome in captured:
            if isinstance(outcome, ClientUpdate):
                problem = _unaggregatable(metrics[id(reply)], keys[id(reply)], common, self.keys.weighted_by)
                if problem:
                    outcome = RejectedReply(self.run_id, outcome.server_round, outcome.node_id, outcome.partition_id,
                                            ReplyStatus.REJECTED, problem)
            checked.append((reply, outcome))
        return checked


def _unaggregatable(metrics: Mapping[str, Any], keys: frozenset[str], common: frozenset[str],
                    weighting_key: str | None) -> str | None:
    """Why the strategy could not aggregate this reply with the round's others; ``None``: it can."""
    if weighting_key is not None:
        value = metrics.get(weighting_key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            return f"no usable '{weighting_key}' in its metrics (the strategy weights replies by it)"
    if keys != common:
        differ = sorted(keys ^ common)
        return (f"its metrics differ from the round's other replies in {', '.join(differ[:3])} "
                "(the strategy aggregates only replies with the same metrics)")
    return None


def _weights(content: RecordDict, sent: Weights) -> Weights:
    """The reply's one ArrayRecord as the model's weights: its keys, shapes and dtypes, finite."""
    if len(content.array_records) != 1:
        raise InvalidReply(f"expected one ArrayRecord of weights, got {len(content.array_records)}")
    record = next(iter(content.array_records.values()))
    try:
        weights = {k: torch.from_numpy(np.array(a.numpy())) for k, a in record.items()}
    except Exception as error:  # noqa: BLE001 - whatever a malformed array makes the decoder raise
        raise InvalidReply(f"cannot decode its arrays: {type(error).__name__}: {first_line(error)}") from None
    check_weights(weights, sent)
    return weights


def _metrics(content: RecordDict) -> Mapping[str, Any]:
    """The reply's one MetricRecord (none: empty; more than one: rejected, as FedAvg would fail on it)."""
    records = list(content.metric_records.values())
    if len(records) > 1:
        raise InvalidReply(f"expected one MetricRecord, got {len(records)}")
    return records[0] if records else {}


def _declared(name: str, sources: list[tuple[str, Mapping[str, Any]]], warnings: list[str]) -> float | None:
    """The first valid value of ``name`` in ``sources``; an invalid one is a warning and skipped."""
    integer = name != "lr"
    for where, record in sources:
        for key in METADATA_KEYS[name]:
            if key not in record:
                continue
            value = record[key]
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and math.isfinite(value) and value > 0 and (not integer or float(value).is_integer()):
                return value  # type: ignore[no-any-return]
            warnings.append(f"{key} {str(value)[:20]!r} in {where} is not a positive "
                            f"{'whole number' if integer else 'number'}: ignored")
    return None


def _reported_samples(content: RecordDict, app: AppConfig) -> tuple[ReportedSamples | None, list[str]]:
    """Take the lab side channel out of ``content`` (the inner strategy never sees it); its
    samples, or why they are ignored (a warning: the update itself stays valid)."""
    if wire.TRUTH not in content:
        return None, []
    record = content[wire.TRUTH]
    del content[wire.TRUTH]
    try:
        if not isinstance(record, ArrayRecord):
            raise ValueError(f"a {type(record).__name__}, not an ArrayRecord")
        images = torch.from_numpy(np.array(record[wire.TRUTH_IMAGES].numpy())).float()
        labels = torch.from_numpy(np.array(record[wire.TRUTH_LABELS].numpy())).long()
    except Exception as error:  # noqa: BLE001 - a malformed side channel is a warning, not a crash
        return None, [f"{wire.TRUTH} ignored: {type(error).__name__}: {first_line(error)}"]
    problem = _samples_problem(images, labels, app)
    if problem:
        return None, [f"{wire.TRUTH} ignored: {problem}"]
    return ReportedSamples(images, labels), []


def _samples_problem(images: torch.Tensor, labels: torch.Tensor, app: AppConfig) -> str | None:
    if images.ndim != 4 or tuple(images.shape[1:]) != app.image_shape:
        return f"images of shape {tuple(images.shape)}, the model reads (N, {', '.join(map(str, app.image_shape))})"
    if labels.shape != (len(images),):
        return f"{len(labels)} labels for {len(images)} images"
    if not bool(torch.isfinite(images).all()) or images.min() < -1e-4 or images.max() > 1 + 1e-4:
        return "images outside [0, 1] (were they reported before normalisation, with its mean and std?)"
    if len(labels) and (labels.min() < 0 or labels.max() >= app.num_classes):
        return f"labels outside 0..{app.num_classes - 1}"
    return None


STOCK_CLIENT = f"a stock client (no {wire.PARTITION_ID} in its metrics): not in the data plan, attacked unscored"
"""The warning every accepted stock reply is stored with in fedleak's own run."""


class ServerReplies:
    """The boundary of fedleak's own run (a :class:`~fedleak.federation.replies.ReplyReader`).

    fedleak's clients' replies are checked against the data plan (:class:`ReplyChecker`). A
    stock Flower client's — no ``partition-id`` among its metrics — is read as an attached
    app's (:class:`AppReplies`): its training taken from what it
    declares, else from the train config the server sent, with warnings; numbered after the
    plan's partitions; attacked and stored ``unscored``, since the plan knows nothing of its
    data. Its metrics are rewritten to fedleak's keys, so FedAvg aggregates it with the rest
    (Flower's FedAvg skips a round whose replies' metric keys differ).
    """

    def __init__(self, run_id: str, scenario: Scenario, spec: ModelSpec, plan: DataPlan) -> None:
        self.keys = KEYS
        self.checker = ReplyChecker(run_id, scenario.training, plan)
        app = AppConfig(image_shape=spec.image_shape, num_classes=spec.num_classes, mean=spec.mean, std=spec.std)
        sent = {k: v for k, v in records.training_record(scenario.training).items() if v != 0}  # 0 steps: from epochs
        self.stock = AppReplies(run_id, app, first_client=plan.num_clients, config=sent)

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply:
        metrics = list(content.metric_records.values())
        if any(wire.PARTITION_ID in m for m in metrics):
            return self.checker.read(server_round, node_id, content, sent)
        outcome = self.stock.read(server_round, node_id, content, sent)
        if isinstance(outcome, ClientUpdate):
            examples = metrics[0].get(wire.NUM_EXAMPLES) if metrics else None
            if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
                return RejectedReply(outcome.run_id, server_round, node_id, outcome.partition_id, ReplyStatus.REJECTED,
                                     f"a stock client's reply without a positive integer {wire.NUM_EXAMPLES} "
                                     "(FedAvg weights replies by it)")
            _as_fedleaks_metrics(content, outcome, metrics[0])
            outcome = dataclasses.replace(outcome, warnings=(STOCK_CLIENT, *outcome.warnings))
        return outcome


def _as_fedleaks_metrics(content: RecordDict, update: ClientUpdate, declared: MetricRecord) -> None:
    """Replace a stock reply's metrics by fedleak's keys (its loss kept where it gave one)."""
    loss = next((declared[k] for k in ("train_loss", wire.TRAIN_LOSS, "loss") if k in declared), math.nan)
    loss = float(loss) if isinstance(loss, int | float) and not isinstance(loss, bool) else math.nan
    for name in list(content.metric_records):
        del content[name]
    meta = update.metadata
    content[KEYS.metrics] = MetricRecord({
        wire.NUM_EXAMPLES: meta.num_examples, wire.PARTITION_ID: update.partition_id,
        wire.LOCAL_STEPS: meta.local_steps, wire.LR: meta.lr, wire.BATCH_SIZE: meta.batch_size,
        wire.TRAIN_LOSS: loss})
