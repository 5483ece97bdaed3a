"""The server's tap on Flower's SecAgg+ workflow (:mod:`fedleak.defenses.secagg`).

:class:`CapturingSecAggPlus` is Flower's workflow plus a tap on the masked-vector
stage: the adversary gets every vector exactly as received, read back into weight
space the way the server would read its own aggregate (they must leak nothing), and
the unmasked aggregate through the legacy strategy (attacked as one multi-client batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server import Grid, LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD

from fedleak.defenses.secagg import SecAggPlusConfig
from fedleak.federation.records import scalar


@dataclass(frozen=True)
class MaskedVector:
    """One client's masked reply, as the server received it."""

    node_id: int
    server_round: int
    num_examples: int
    metrics: dict[str, Any]
    masked: list[np.ndarray]
    """The integer vectors mod ``modulus_range``; the first holds the client's weight."""
    seen: list[np.ndarray]
    """``masked`` read back into weight space as the server reads its sum."""


MaskedVectorObserver = Callable[[list[MaskedVector]], None]


class _GridTap:
    """A Grid that shows the replies of one exchange to ``observe`` (delegates the rest)."""

    def __init__(self, grid: Grid, observe: Callable[[list[Any]], None]) -> None:
        self._grid, self._observe = grid, observe

    def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> list[Any]:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self._observe(replies)
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


class CapturingSecAggPlus(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow that also hands each masked vector to ``observer``."""

    def __init__(self, observer: MaskedVectorObserver, **parameters: Any) -> None:
        super().__init__(**parameters)
        self.observer = observer

    def collect_masked_vectors_stage(self, grid: Grid, context: LegacyContext, state: Any) -> bool:
        server_round = int(scalar(context.state.config_records[MAIN_CONFIGS_RECORD], "current_round"))

        def observe(replies: list[Any]) -> None:
            self.observer([self.masked_vector(reply, server_round) for reply in replies if not reply.has_error()])

        # The tap forwards every Grid call; it is a Grid by behaviour, not by class.
        return super().collect_masked_vectors_stage(cast(Grid, _GridTap(grid, observe)), context, state)

    def masked_vector(self, reply: Any, server_round: int) -> MaskedVector:
        """One reply of the masked-vector stage: the client's fit reply with its arrays
        replaced by the masked vector; its metrics and example count travel in the clear."""
        content = reply.content
        masked = [bytes_to_ndarray(b) for b in content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]]
        num_examples = int(content.metric_records["fitres.num_examples"]["num_examples"])
        return MaskedVector(
            node_id=reply.metadata.src_node_id, server_round=server_round, num_examples=num_examples,
            metrics=dict(content.config_records["fitres.metrics"]), masked=masked,
            seen=self.read_as_weights(masked[1:], num_examples),
        )

    def read_as_weights(self, vectors: list[np.ndarray], num_examples: int) -> list[np.ndarray]:
        """Integer vectors read into weight space as the server reads its sum: undo the
        quantization (x = q·2c/Q − c) and the client's weighting n/max_weight."""
        c, q_range = self.clipping_range, self.quantization_range
        weight = round(num_examples / self.max_weight * q_range) / q_range
        return [(v.astype(np.float64) * 2 * c / q_range - c) / weight for v in vectors]


def capturing_workflow(config: SecAggPlusConfig, observer: MaskedVectorObserver, max_weight: float
                       ) -> CapturingSecAggPlus:
    """The SecAgg+ workflow of ``config``, tapped for ``observer``."""
    return CapturingSecAggPlus(observer, **config.workflow_parameters(max_weight))
