"""The adversarial strategy: any Flower strategy, with every training reply captured.

It wraps (rather than subclasses) the inner strategy, so FedAvg — or FedAvg inside a
Flower DP wrapper — aggregates exactly as it would without the adversary. It is the
outermost layer because it models what reaches the server: a quantized reply is
decoded first, and a server-side DP wrapper clips and noises only after the capture.

In a malicious server's random-query round (:meth:`Adversary.weights_to_send`) it sends
crafted weights instead of the global model and, after capturing the replies, keeps the
global model unchanged: the round's aggregate would be an update of the crafted weights.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.adversary import Adversary
from fedleak.federation import records
from fedleak.updates import ClientUpdate, Weights


class AdversarialStrategy(Strategy):
    """Remembers the weights it sends; hands each reply to the adversary before aggregating."""

    def __init__(self, inner: Strategy, adversary: Adversary, run_id: str, num_rounds: int) -> None:
        self.inner = inner
        self.adversary = adversary
        self.run_id = run_id
        self.num_rounds = num_rounds
        self._global: ArrayRecord | None = None
        self._sent: Weights = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._global = arrays
        self._sent = self.adversary.weights_to_send(server_round, dict(arrays.to_torch_state_dict()))
        return self.inner.configure_train(server_round, ArrayRecord(self._sent), config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        updates = [self.capture(server_round, reply) for reply in replies if not reply.has_error()]
        self.adversary.observe_round(updates, self.num_rounds)
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if self.adversary.is_random_query(server_round):
            return self._global, metrics
        return arrays, metrics

    def capture(self, server_round: int, reply: Message) -> ClientUpdate:
        """Decode the reply in place (the inner strategy aggregates weights) and capture it."""
        received = records.received_weights(reply.content, self._sent)
        reply.content["arrays"] = ArrayRecord(received)
        reply.content.pop(records.WIRE, None)
        return records.client_update(self.run_id, server_round, reply.metadata.src_node_id,
                                     reply.content["metrics"], self.adversary.scenario.training.algorithm,
                                     self._sent, received)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()
