"""Captured updates and the checkpoint on disk: exact round trips, the store policy, private files."""

import os

import pytest
import torch

from fedleak.core.updates import ClientUpdate, UpdateMetadata
from fedleak.results.captures import CaptureStore
from fedleak.results.checkpoint import checkpoint_round, read_checkpoint, write_checkpoint

from conftest import tiny_scenario


def _update(partition_id: int, sent: dict, server_round: int = 2, **flags) -> ClientUpdate:
    returned = {key: tensor + partition_id + 1 for key, tensor in sent.items()}
    return ClientUpdate("run", server_round, 2**63 + partition_id, partition_id, sent, returned,
                        UpdateMetadata("fedavg", 0.05, 3, 2, 6), **flags)


def _same(a: ClientUpdate, b: ClientUpdate) -> bool:
    tensors = all(torch.equal(x[k], y[k]) and x[k].dtype == y[k].dtype
                  for x, y in ((a.global_weights, b.global_weights), (a.client_weights, b.client_weights)) for k in x)
    return tensors and (a.run_id, a.server_round, a.node_id, a.partition_id, a.metadata, a.aggregate_of,
                        a.crafted) == (b.run_id, b.server_round, b.node_id, b.partition_id, b.metadata,
                                            b.aggregate_of, b.crafted)


def test_a_rounds_updates_come_back_exactly_with_the_sent_weights_stored_once(tmp_path):
    sent = {"w": torch.randn(3, 4), "steps": torch.tensor([7], dtype=torch.int64), "h": torch.randn(5).half()}
    updates = [_update(0, sent), _update(1, sent, crafted="random-query")]
    captures = CaptureStore(tmp_path)
    size = captures.write(2, updates)
    aggregate = ClientUpdate("run", 2, 0, -1, sent, sent, UpdateMetadata("fedavg", 0.05, 3, 2, 12),
                             aggregate_of=(0, 1))
    captures.write(2, [aggregate], kind="aggregate")

    back = captures.read(2)
    assert len(back) == 2 and all(_same(a, b) for a, b in zip(updates, back, strict=True))
    assert _same(captures.read(2, "aggregate")[0], aggregate)
    assert back[0].global_weights["w"] is back[1].global_weights["w"]  # one stored copy of what was sent
    assert size == captures.path(2).stat().st_size < 3 * sum(t.nbytes for t in sent.values()) + 4096
    assert captures.read(3) == [] and captures.size_bytes()[0] == 2


def test_files_of_later_rounds_are_discarded_for_a_resume(tmp_path):
    captures = CaptureStore(tmp_path)
    sent = {"w": torch.zeros(2)}
    for server_round in (1, 2, 3):
        captures.write(server_round, [_update(0, sent, server_round)])
    captures.discard_after(1)
    assert sorted(p.name for p in captures.directory.iterdir()) == ["round-1.safetensors"]


@pytest.mark.parametrize(("store", "attacked", "kept"), [("attacked", True, True), ("attacked", False, False),
                                                         ("all", False, True), ("none", True, False)])
def test_the_scenario_says_which_updates_are_kept(store, attacked, kept):
    assert tiny_scenario(capture={"store": store}).capture.keeps(attacked) is kept


def test_the_checkpoint_names_its_round_and_holds_the_weights_exactly(tmp_path):
    assert read_checkpoint(tmp_path) is None and checkpoint_round(tmp_path) is None
    weights = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4).double()}
    write_checkpoint(tmp_path, 3, weights)
    write_checkpoint(tmp_path, 4, weights)  # replaced whole
    last, back = read_checkpoint(tmp_path)
    assert last == checkpoint_round(tmp_path) == 4
    assert all(torch.equal(back[k], weights[k]) and back[k].dtype == weights[k].dtype for k in weights)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.safetensors"]  # no partial file left


def test_captures_and_checkpoints_are_private_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        CaptureStore(tmp_path).write(1, [_update(0, {"w": torch.zeros(2)}, 1)])
        write_checkpoint(tmp_path, 1, {"w": torch.zeros(2)})
    finally:
        os.umask(previous)
    assert (tmp_path / "captures").stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in [*tmp_path.glob("captures/*"), tmp_path / "checkpoint.safetensors"]} \
        == {0o600}
