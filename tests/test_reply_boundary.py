"""The server boundary: each bad reply is stored as rejected (or failed), kept out of the
aggregate and the attacks, and the round goes on; a round with no accepted reply fails the run.

The replies are Flower messages made by hand and handed to the strategy as Flower's
grid would, so every fault is exact and no Ray is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, Error, Message, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.attacks import ATTACKS, Attack, Reconstruction
from fedleak.client.local_round import LocalReply, local_round
from fedleak.core.errors import RunFailed
from fedleak.data import build_plan, load_dataset
from fedleak.federation import records
from fedleak.federation.replies import ReplyChecker
from fedleak.federation.server import mean_train_loss
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.results.store import ResultStore
from fedleak.runners import InlineRunner
from fedleak.scenario import Scenario

from conftest import tiny_scenario


@contextlib.contextmanager
def _task_identity() -> Iterator[None]:
    """Flower stamps every message with the running task's identity; outside a run there is none."""
    saved = TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id
    TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = 1, 1, 0
    try:
        yield
    finally:
        TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved


class _Grid:
    """What FedAvg's ``configure_train`` asks of a grid: the connected nodes."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> list[int]:
        return self.nodes


class Federation:
    """fedleak's adversarial strategy around FedAvg, with a store, fed hand-made replies."""

    def __init__(self, directory: Path, scenario: Scenario) -> None:
        self.scenario = scenario
        splits = load_dataset(scenario.dataset)
        plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
        spec = scenario.model_spec(splits)
        self.store = ResultStore(directory)
        self.store.start_run("boundary", scenario.name, scenario.to_toml())
        adversary = Adversary(scenario, spec, PlanTruth(splits.train, plan, scenario.training), self.store,
                              InlineRunner())
        inner = FedAvg(min_train_nodes=1, min_available_nodes=scenario.partition.num_clients,
                       train_metrics_aggr_fn=mean_train_loss)
        checker = ReplyChecker("boundary", scenario.training, plan)
        self.strategy = AdversarialStrategy(inner, adversary, checker, "boundary", scenario.federation.rounds)
        self.sent = spec.build(seed=scenario.seed).state_dict()
        self._honest: dict[int, LocalReply] = {}

    @staticmethod
    def node(index: int) -> int:
        return 1000 + index

    def honest(self, partition_id: int) -> LocalReply:
        if partition_id not in self._honest:
            self._honest[partition_id] = local_round(self.scenario, partition_id, 1, self.scenario.training,
                                                     self.sent)
        return self._honest[partition_id]

    def honest_arrays(self, partition_id: int) -> dict[str, np.ndarray]:
        return {k: a.copy() for k, a in self.honest(partition_id).arrays.items()}

    def honest_metrics(self, partition_id: int) -> dict[str, int | float]:
        return dict(self.honest(partition_id).metrics)

    def honest_content(self, partition_id: int) -> RecordDict:
        return records.reply_content(self.honest_arrays(partition_id), None, self.honest_metrics(partition_id))

    def round(self, replies: list[RecordDict | Error], server_round: int = 1) -> dict[str, torch.Tensor]:
        """One round: configure (the strategy remembers what it sends) for every client, then
        aggregate the ``replies`` of nodes 1000, 1001, … (a client may stay silent); the new
        global weights."""
        grid = _Grid([self.node(i) for i in range(self.scenario.partition.num_clients)])
        with _task_identity():
            instructions = {m.metadata.dst_node_id: m for m in self.strategy.configure_train(
                server_round, records.ArrayRecord(self.sent), records.training_record(self.scenario.training),
                grid)}  # type: ignore[arg-type]
            messages = [Message(reply, reply_to=instructions[self.node(i)]) for i, reply in enumerate(replies)]
        arrays, _ = self.strategy.aggregate_train(server_round, messages)
        return arrays.to_torch_state_dict()

    def rows(self) -> list[dict]:
        return self.store.query("SELECT * FROM updates ORDER BY rowid")


@ATTACKS.register("test-instant")
class _Instant(Attack):
    """Grey images at once: shows which updates were attacked, at no cost."""

    def run(self, update, model, budget):
        return Reconstruction(torch.full((1, *model.image_shape), 0.5), None, 0.0)


@pytest.fixture
def federation(tmp_path):
    return Federation(tmp_path, tiny_scenario(partition={"num_clients": 2}, attacks=[{"name": "test-instant"}]))


def _with_arrays(federation, change):
    arrays = federation.honest_arrays(1)
    name = sorted(arrays)[0]
    arrays[name] = change(arrays[name])
    return records.reply_content(arrays, None, federation.honest_metrics(1))


def _with_metrics(federation, **changes):
    metrics = {**federation.honest_metrics(1), **{k.replace("_", "-"): v for k, v in changes.items()}}
    return records.reply_content(federation.honest_arrays(1), None, metrics)


def _truncated(federation):
    content = federation.honest_content(1)
    name = sorted(content["arrays"])[0]
    array = content["arrays"][name]
    content["arrays"][name] = Array(dtype=array.dtype, shape=array.shape, stype=array.stype, data=array.data[:-4])
    return content


FAULTS = {
    "a client that raises": (lambda f: Error(code=0, reason="RuntimeError: no data\nTraceback …"),
                             "failed", "client error: RuntimeError: no data"),
    "NaN": (lambda f: _with_arrays(f, lambda a: np.full_like(a, np.nan)), "rejected", "holds non-finite values"),
    "a truncated tensor": (_truncated, "rejected", "cannot decode its arrays: ValueError"),
    "a (1,)-shaped tensor": (lambda f: _with_arrays(f, lambda a: a.reshape(-1)[:1].copy()), "rejected",
                             "has shape (1,), the model sent"),
    "float64": (lambda f: _with_arrays(f, lambda a: a.astype(np.float64)), "rejected",
                "is torch.float64, the model sent torch.float32"),
    "partition id 99": (lambda f: _with_metrics(f, partition_id=99), "rejected", "partition-id 99 is not a partition (0..1)"),
    "partition id -1": (lambda f: _with_metrics(f, partition_id=-1), "rejected", "partition-id -1 is not a partition"),
    "a partition id that is no integer": (lambda f: _with_metrics(f, partition_id=1.0), "rejected",
                                          "partition-id must be an integer, got 1.0"),
    "another lr": (lambda f: _with_metrics(f, lr=0.5), "rejected", "lr 0.5, but the server configured 0.1"),
    "more local steps": (lambda f: _with_metrics(f, local_steps=3), "rejected",
                         "local-steps 3, but the server configured 1"),
    "more examples": (lambda f: _with_metrics(f, num_examples=5), "rejected", "num-examples 5, but the server"),
    "a NaN loss": (lambda f: _with_metrics(f, train_loss=float("nan")), "rejected", "train-loss must be a finite"),
    "a missing tensor": (lambda f: records.reply_content(
        {k: v for k, v in list(f.honest_arrays(1).items())[1:]}, None, f.honest_metrics(1)), "rejected",
        "arrays missing"),
    "an unknown wire encoding": (lambda f: records.reply_content(f.honest_arrays(1), "zip", f.honest_metrics(1)),
                                 "rejected", "cannot decode its arrays: FedleakError: unknown defense 'zip'"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_reply_is_stored_left_out_and_the_round_goes_on(federation, fault):
    make, status, reason = FAULTS[fault]
    honest_alone = Federation(federation.store.directory / "alone", federation.scenario)
    expected = honest_alone.round([honest_alone.honest_content(0)])
    aggregate = federation.round([federation.honest_content(0), make(federation)])
    assert all(torch.equal(aggregate[k], expected[k]) for k in expected)  # the bad reply is not averaged in
    first, second = sorted(federation.rows(), key=lambda row: row["node_id"])
    assert (first["status"], first["partition_id"]) == ("accepted", 0)
    assert second["status"] == status and second["node_id"] == str(Federation.node(1))
    assert reason in second["reason"] and "\n" not in second["reason"]
    attacked = federation.store.query("SELECT partition_id, status FROM attack_results")
    assert attacked == [{"partition_id": 0, "status": "ok"}]  # only the accepted reply is attacked


def test_a_round_without_an_accepted_reply_fails_the_run(federation):
    with pytest.raises(RunFailed, match=r"round 1: no reply was accepted \(2 of 2 rejected or failed; the first: "
                                        r"client error: boom\)"):
        federation.round([Error(code=0, reason="boom"), _with_metrics(federation, lr=1.0)])
    assert sorted(r["status"] for r in federation.rows()) == ["failed", "rejected"]


def test_record_keys_are_the_strategys_own_unless_given():
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

    from fedleak.federation.records import RecordKeys

    own = FedAvg(weighted_by_key="n", arrayrecord_key="w", configrecord_key="c")
    assert RecordKeys.of(own) == RecordKeys(arrays="w", config="c", weighted_by="n")
    wrapped = DifferentialPrivacyServerSideFixedClipping(own, noise_multiplier=1.0, clipping_norm=1.0,
                                                         num_sampled_clients=2)
    assert RecordKeys.of(wrapped) == RecordKeys(arrays="w", config="c", weighted_by="n")  # as Flower's wrapper reads it
    assert RecordKeys.of(wrapped, weighted_by="m").weighted_by == "m"
    assert RecordKeys.of(object()) == RecordKeys(weighted_by=None)  # a strategy that says nothing: nothing checked
