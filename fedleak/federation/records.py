"""Conversions at the Flower message boundary (plain records in, typed config out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from pydantic import ValidationError

from fedleak.core import wire
from fedleak.core.config import TrainingConfig
from fedleak.core.errors import FedleakError
from fedleak.core.fingerprint import code_fingerprint, code_mismatch
from fedleak.core.updates import ClientUpdate, UpdateMetadata, Weights
from fedleak.data import load_dataset
from fedleak.defenses import DEFENSES
from fedleak.scenario import Scenario


def training_record(training: TrainingConfig) -> ConfigRecord:
    """What the server configures for local training (sent every round), with its fedleak code's fingerprint."""
    return ConfigRecord({**{key.replace("_", "-"): value for key, value in training.model_dump().items()},
                         wire.FEDLEAK_CODE: code_fingerprint()})


def training_from_record(record: Mapping[str, Any], defaults: TrainingConfig) -> TrainingConfig:
    """The training config a server sent (a Message API ConfigRecord, or a legacy FitIns config).

    A key the server did not send keeps the client's own scenario value (``defaults``), so a
    stock Flower server, which sends only ``server-round`` and whatever its ``train_config``
    holds (say ``lr``), can drive fedleak's clients.

    Raises:
        FedleakError: keys the server sent are invalid (one line naming every one), or the server
            runs other fedleak code than this client (:mod:`fedleak.core.fingerprint`).
    """
    mismatch = code_mismatch(record[wire.FEDLEAK_CODE], "this client") if wire.FEDLEAK_CODE in record else None
    if mismatch:
        raise FedleakError(mismatch)
    sent = {name: record[name.replace("_", "-")] for name in TrainingConfig.model_fields
            if name.replace("_", "-") in record}
    try:
        return TrainingConfig.model_validate({**defaults.model_dump(), **sent})
    except ValidationError as error:
        problems = "; ".join(f"'{'.'.join(map(str, e['loc'])).replace('_', '-')}': {e['msg']}" for e in error.errors())
        raise FedleakError(f"the server's train config: {problems}") from None


def scalar(record: Mapping[str, Any], key: str) -> float:
    """A number in a record (Flower's records may also hold lists, strings or bytes).

    Raises:
        TypeError: the value is not a number.
    """
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"'{key}' is {type(value).__name__}, not a number")
    return float(value)


@dataclass(frozen=True)
class RecordKeys:
    """Where a message keeps what fedleak reads: the names of its records, and the metric replies
    are weighted by (``None``: the strategy weights by none that fedleak knows, and none is checked).
    The defaults are Flower's FedAvg's (its ``arrayrecord_key``, ``configrecord_key`` and
    ``weighted_by_key``), which fedleak's own clients and server use."""

    arrays: str = "arrays"
    config: str = "config"
    metrics: str = "metrics"
    weighted_by: str | None = "num-examples"

    @classmethod
    def of(cls, strategy: object, config: str | None = None, weighted_by: str | None = None) -> RecordKeys:
        """The keys ``strategy`` uses: each one given, else the strategy's own attribute (FedAvg and its
        subclasses have them), else that of the strategy it wraps (``.strategy``, where Flower's DP
        wrappers keep it); record names not found are Flower's defaults, a weighting metric not
        found is ``None``. (A stock reply's weights are its one ArrayRecord, whatever its name.)"""
        def found(given: str | None, attribute: str) -> str | None:
            for holder in (strategy, getattr(strategy, "strategy", None)):
                value = getattr(holder, attribute, None)
                if given is None and isinstance(value, str):
                    return value
            return given

        default = cls()
        return cls(found(None, "arrayrecord_key") or default.arrays,
                   found(config, "configrecord_key") or default.config, default.metrics,
                   found(weighted_by, "weighted_by_key"))


KEYS = RecordKeys()
"""The keys of fedleak's own messages, both ways."""


def parameter_names(scenario: Scenario) -> list[str]:
    """The model's parameter names, in the order the legacy path sends them."""
    return list(scenario.model_spec(load_dataset(scenario.dataset)).build(seed=0).state_dict())


def reply_content(arrays: dict[str, np.ndarray], encoding: str | None,
                  metrics: dict[str, int | float]) -> RecordDict:
    """A training reply: the wire arrays, their encoding (if any) and the metadata."""
    content = RecordDict({
        # np.require keeps a 0-d array 0-d (BatchNorm's num_batches_tracked); ascontiguousarray makes it 1-d
        KEYS.arrays: ArrayRecord(array_dict={k: Array(np.require(a, requirements="C")) for k, a in arrays.items()}),
        KEYS.metrics: MetricRecord({**metrics}),
    })
    if encoding is not None:
        content[wire.WIRE] = ConfigRecord({wire.ENCODING: encoding})
    return content


def received_weights(content: RecordDict, sent: Weights, key: str = KEYS.arrays) -> Weights:
    """The weights a reply stands for (its ArrayRecord ``key``): decoded by the quantizer it names, if
    any (then in the sent model's dtypes: the encoding carries Δ, an integer buffer's too, as floats)."""
    arrays = {k: a.numpy() for k, a in content.array_records[key].items()}
    if wire.WIRE not in content:
        return {k: torch.from_numpy(np.array(a)) for k, a in arrays.items()}
    delta = DEFENSES.get(str(content[wire.WIRE][wire.ENCODING])).decode(arrays)
    return {k: (w + delta[k]).to(w.dtype) for k, w in sent.items()}


def client_update(run_id: str, server_round: int, node_id: int, metrics: Mapping[str, Any], algorithm: str,
                  sent: Weights, received: Weights) -> ClientUpdate:
    """What the server captured from one reply: the weights it stands for plus its metadata."""
    metadata = UpdateMetadata(
        algorithm=algorithm, lr=float(metrics[wire.LR]), local_steps=int(metrics[wire.LOCAL_STEPS]),
        batch_size=int(metrics[wire.BATCH_SIZE]), num_examples=int(metrics[wire.NUM_EXAMPLES]),
    )
    return ClientUpdate(run_id, server_round, node_id, int(metrics[wire.PARTITION_ID]), sent, received, metadata)
