"""The server boundary: every training reply is checked before capture and aggregation.

A reply is accepted only when its declared metadata agrees with what the server
configured and with what the data plan says the client did (partition, local steps,
examples), and its weights match the model sent: the same keys and shapes, the same
dtype, finite values. Anything else — a client error, a truncated tensor, a lying
partition id, NaN, float64 — becomes a :class:`~fedleak.core.updates.RejectedReply`: stored
with its reason, kept out of aggregation and attacks, and the round goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from flwr.app import MetricRecord, RecordDict

from fedleak.core import wire
from fedleak.core.config import TrainingConfig
from fedleak.core.errors import first_line
from fedleak.core.updates import ClientUpdate, RejectedReply, UpdateMetadata, Weights
from fedleak.data import DataPlan
from fedleak.federation import records


class InvalidReply(Exception):
    """Why a reply is not accepted (the message is stored as the rejection's reason)."""


@dataclass(frozen=True)
class ReplyChecker:
    """Checks one run's replies against what its server configured and sent."""

    run_id: str
    training: TrainingConfig
    plan: DataPlan

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply:
        """A Message API reply's metrics and weights, checked (:meth:`check`)."""
        metrics = content.get("metrics") if isinstance(content.get("metrics"), MetricRecord) else None
        return self.check(server_round, node_id, metrics, lambda: records.received_weights(content, sent), sent)

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
            return RejectedReply(self.run_id, server_round, node_id, partition_id, "rejected", str(problem))
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
