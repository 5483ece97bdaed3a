"""The adversarial strategy: any Flower strategy, with every training reply captured.

It wraps (rather than subclasses) the inner strategy, so FedAvg — or FedAvg inside a
Flower DP wrapper — aggregates exactly as it would without the adversary.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.adversary import Adversary
from fedleak.federation import records
from fedleak.updates import ClientUpdate, UpdateMetadata, Weights


class AdversarialStrategy(Strategy):
    """Remembers the weights it sends; hands each reply to the adversary before aggregating."""

    def __init__(self, inner: Strategy, adversary: Adversary, run_id: str, num_rounds: int) -> None:
        self.inner = inner
        self.adversary = adversary
        self.run_id = run_id
        self.num_rounds = num_rounds
        self._sent: Weights = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._sent = dict(arrays.to_torch_state_dict())
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        updates = [self.capture(server_round, reply) for reply in replies if not reply.has_error()]
        self.adversary.observe_round(updates, self.num_rounds)
        return self.inner.aggregate_train(server_round, replies)

    def capture(self, server_round: int, reply: Message) -> ClientUpdate:
        metrics = reply.content["metrics"]
        metadata = UpdateMetadata(
            algorithm=self.adversary.scenario.training.algorithm, lr=float(metrics[records.LR]),
            local_steps=int(metrics[records.LOCAL_STEPS]), batch_size=int(metrics[records.BATCH_SIZE]),
            num_examples=int(metrics[records.NUM_EXAMPLES]),
        )
        return ClientUpdate(
            run_id=self.run_id, server_round=server_round, node_id=reply.metadata.src_node_id,
            partition_id=int(metrics[records.PARTITION_ID]), global_weights=self._sent,
            client_weights=dict(reply.content["arrays"].to_torch_state_dict()), metadata=metadata,
        )

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()
