"""The adversarial strategy: any Flower strategy, with every training reply captured.

It wraps (rather than subclasses) the inner strategy, so FedAvg — or FedAvg inside a
Flower DP wrapper — aggregates exactly as it would without the adversary. It is the
outermost layer because it models what reaches the server: a quantized reply is
decoded first, and a server-side DP wrapper clips and noises only after the capture.

Each reply passes the server boundary first — a
:class:`~fedleak.federation.replies.ReplyReader` (:mod:`fedleak.federation.replies`): fedleak's
own clients' replies are checked against the data plan, a stock client's or an attached app's
read against what its server sent. One
that fails its checks, or reports a client error, is stored as rejected and left out of
the aggregate; in fedleak's own run a round in which no reply is accepted ends the run as
failed.

In a malicious round (:meth:`Adversary.weights_to_send`, :mod:`fedleak.crafting`) it sends
crafted weights instead of the global model — each client its own, for a per-client crafting
— and, after capturing the replies, keeps the global model unchanged: the round's aggregate
would be an update of the crafted weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedleak.adversary.adversary import Adversary
from fedleak.core import wire
from fedleak.core.errors import RunFailed, first_line
from fedleak.core.stopping import STOP
from fedleak.core.updates import ClientUpdate, Weights
from fedleak.federation.replies import ReplyReader
from fedleak.results.rows import RejectedReply, ReplyStatus


class DelegatingStrategy(Strategy):
    """A strategy that hands every step to ``inner``; wrappers override the steps they change."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()


class AdversarialStrategy(DelegatingStrategy):
    """Remembers the weights it sends; hands each reply to the adversary before aggregating."""

    def __init__(self, inner: Strategy, adversary: Adversary, reader: ReplyReader, run_id: str, num_rounds: int,
                 round_offset: int = 0, numpy_seed: int | None = None) -> None:
        super().__init__(inner)
        self.adversary = adversary
        self.reader = reader
        self.run_id = run_id
        self.num_rounds = num_rounds
        self.round_offset = round_offset
        """Rounds completed before Flower's round 1 (a resumed run): Flower's round r is our r + offset."""
        self.numpy_seed = numpy_seed
        """Seeds NumPy's global generator for each round's aggregation (see :func:`seeded_global_numpy`);
        ``None``: the inner strategy draws nothing from it, and it is left alone."""
        self._global: ArrayRecord | None = None
        self._sent: Weights = {}
        self._sent_to: dict[int, Weights] = {}
        """A per-client crafting's weights, by the node they went to (others got :attr:`_sent`)."""

    def configure_train(self, flower_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        STOP.check()  # a stop requested: no new round
        server_round = flower_round + self.round_offset
        self._global = arrays
        global_weights = dict(arrays.to_torch_state_dict())
        per_client = self.adversary.crafts_per_client(server_round)
        self._sent = global_weights if per_client else self._send(server_round, global_weights)
        messages = self.inner.configure_train(server_round, ArrayRecord(self._sent), config, grid)
        self._sent_to = {}
        if not per_client:
            return messages
        messages = list(messages)
        for message in messages:  # the inner strategy chose the clients; each gets its own weights
            node_id = message.metadata.dst_node_id
            self._sent_to[node_id] = self._send(server_round, global_weights, node_id)
            content = RecordDict(dict(message.content))  # Flower's strategies share one content between messages
            content[self.reader.keys.arrays] = ArrayRecord(self._sent_to[node_id])
            message.content = content
        return messages

    def _send(self, server_round: int, global_weights: Weights, node_id: int | None = None) -> Weights:
        """What goes to ``node_id`` (every node: ``None``); crafted weights are recorded as a client sees them."""
        sent = self.adversary.weights_to_send(server_round, global_weights, node_id)
        self.adversary.record_crafted(self.run_id, server_round, node_id, global_weights, sent)
        return sent

    def aggregate_train(self, flower_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        STOP.check()  # replies after a stop: the round is not completed (a resume runs it again)
        server_round = flower_round + self.round_offset
        replies = list(replies)
        captured = self.capture_round(server_round, replies)
        rejected = [capture for _, capture in captured if isinstance(capture, RejectedReply)]  # as they came
        # Replies arrive in completion order; FedAvg's float sums (and the store) get the
        # accepted ones by partition, so the same seed gives the same global model, resumed or not.
        accepted_pairs = sorted(((reply, capture) for reply, capture in captured if isinstance(capture, ClientUpdate)),
                                key=lambda pair: (pair[1].partition_id, pair[1].node_id))
        accepted = [reply for reply, _ in accepted_pairs]
        updates = [capture for _, capture in accepted_pairs]
        self.adversary.observe_round(updates, self.num_rounds, rejected)
        self.before_aggregate(server_round, len(updates), rejected, len(replies))
        with seeded_global_numpy(self.numpy_seed, server_round):
            arrays, metrics = self.inner.aggregate_train(server_round, accepted)
        if self.adversary.crafted_in(server_round) is not None:  # a malicious round: its aggregate is not applied
            return self._global, metrics
        return _in_dtypes_of(self._sent, arrays), metrics

    def capture_round(self, server_round: int, replies: list[Message]
                      ) -> list[tuple[Message, ClientUpdate | RejectedReply]]:
        """Each reply with what it was read as."""
        return [(reply, self.capture(server_round, reply)) for reply in replies]

    def before_aggregate(self, server_round: int, accepted: int, rejected: list[RejectedReply],
                         replies: int) -> None:
        """fedleak's own run: a round without an accepted reply fails the run (:class:`RunFailed`)."""
        if not accepted:
            first = f"; the first: {rejected[0].reason}" if rejected else ""
            raise RunFailed(f"round {server_round}: no reply was accepted ({len(rejected)} of {replies} "
                            f"rejected or failed{first})")

    def capture(self, server_round: int, reply: Message) -> ClientUpdate | RejectedReply:
        """Read the reply; decode an accepted one's quantizer encoding in place (the inner strategy
        aggregates weights; 0.4 ms per LeNet reply saved where they already are)."""
        node_id = reply.metadata.src_node_id
        if reply.has_error():
            return RejectedReply(self.run_id, server_round, node_id, None, ReplyStatus.FAILED,
                                 f"client error: {first_line(reply.error.reason or 'no reason given')}")
        content = reply.content
        outcome = self.reader.read(server_round, node_id, content, self._sent_to.get(node_id, self._sent))
        if isinstance(outcome, ClientUpdate) and wire.WIRE in content:  # plain weights are aggregated as they came
            content[self.reader.keys.arrays] = ArrayRecord(outcome.client_weights)
            del content[wire.WIRE]
        return outcome


@contextmanager
def seeded_global_numpy(seed: int | None, server_round: int) -> Iterator[None]:
    """NumPy's global generator seeded from ``seed`` and the round while the block runs, its state put
    back after (``None``: untouched). Flower's central-DP wrappers draw their noise from it, so the
    noise is the scenario's; the process's other users of it (inline attacks run here) see no reseed."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed((seed * 1_000_003 + server_round) % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def _in_dtypes_of(sent: Weights, arrays: ArrayRecord | None) -> ArrayRecord | None:
    """The aggregate in the model's dtypes: FedAvg's NumPy average turns an integer buffer
    (BatchNorm's step counter) into float64; it is rounded back."""
    if arrays is None:
        return None
    average = arrays.to_torch_state_dict()
    return ArrayRecord({k: (v if sent[k].is_floating_point() else v.round()).to(sent[k].dtype)
                        for k, v in average.items()})
