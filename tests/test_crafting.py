"""Craftings: what a malicious server sends instead of the global model, a registered component kind."""

import pytest
import torch

from fedleak.core.errors import FedleakError
from fedleak.crafting import CRAFTINGS, Crafting
from fedleak.data import load_dataset
from fedleak.federation import simulate
from fedleak.results.store import ResultStore, new_run_dir

from conftest import tiny_scenario


def _offset(node_id: int) -> float:
    return 0.01 * (node_id % 97 + 1)


@CRAFTINGS.register("test-per-client")
class PerClientShift(Crafting):
    """A third party's crafting: each client gets the global model shifted by its own constant."""

    per_client = True

    def craft(self, model, global_weights, request):
        return {k: v + _offset(request.node_id) if v.is_floating_point() else v for k, v in global_weights.items()}


def test_a_users_crafting_is_found_by_name_and_a_duplicate_name_is_refused():
    assert CRAFTINGS.get("test-per-client") is PerClientShift and "random-query" in CRAFTINGS.names()
    with pytest.raises(Exception, match="random-query"):
        CRAFTINGS.register("random-query")(PerClientShift)
    with pytest.raises(FedleakError, match="unknown crafting 'nope'; allowed: .*random-query"):
        CRAFTINGS.get("nope")


def test_a_crafting_is_sent_in_its_rounds_only_and_needs_a_malicious_server():
    with pytest.raises(FedleakError, match='crafting: sending crafted weights needs threat.server = "malicious"'):
        tiny_scenario(crafting={"name": "random-query", "rounds": [1]})
    with pytest.raises(FedleakError, match="crafting.rounds: 4 is beyond the last one"):
        tiny_scenario(threat={"server": "malicious"}, crafting={"name": "random-query", "rounds": [4]})
    with pytest.raises(FedleakError, match="crafting.rounds"):
        tiny_scenario(threat={"server": "malicious"}, crafting={"name": "random-query", "rounds": []})
    crafting = CRAFTINGS.get("random-query")(CRAFTINGS.get("random-query").Config(rounds=[2]))
    assert [crafting.crafts(r) for r in (1, 2, 3)] == [False, True, False]


def test_a_per_client_crafting_sends_each_client_its_own_weights_and_keeps_the_global_model(tmp_path, captured):
    scenario = tiny_scenario(partition={"num_clients": 2}, federation={"rounds": 2, "test_samples": 50},
                             threat={"server": "malicious"}, crafting={"name": "test-per-client", "rounds": [1]})
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario.name))
    initial = scenario.model_spec(load_dataset(scenario.dataset)).build(seed=scenario.seed).state_dict()
    first = [u for u in captured if u.server_round == 1]
    assert len(first) == 2 and all(u.crafted == "test-per-client" for u in first)
    for update in first:  # what the server says it sent each client is what that client trained from
        shift = _offset(update.node_id)
        assert all(torch.allclose(update.global_weights[k], initial[k] + shift) for k in initial
                   if initial[k].is_floating_point())
        step = torch.cat([d.flatten() for d in update.delta.values()]).mean()
        assert abs(step) < shift / 4  # a step from the crafted weights, not from the global model
    second = [u for u in captured if u.server_round == 2]
    assert all(u.crafted is None and torch.equal(u.global_weights["features.0.weight"], second[0].global_weights[
        "features.0.weight"]) for u in second)
    store = ResultStore.open_existing(run_dir)
    loss = {r["round"]: r["test_loss"] for r in store.rounds()}
    assert loss[1] == loss[0] != loss[2]  # the malicious round's aggregate was not applied
    assert [r["crafted"] for r in store.query("SELECT crafted FROM updates ORDER BY round")] == \
        ["test-per-client"] * 2 + [None] * 2

    seen = store.crafted_weights()  # what each client could notice, per tensor
    floating = [k for k in initial if initial[k].is_floating_point()]
    assert [r["layer"] for r in seen] == floating * 2 and {r["round"] for r in seen} == {1}
    for update in first:
        rows = {r["layer"]: r for r in seen if r["node_id"] == str(update.node_id)}
        weight = initial["features.0.weight"].double()
        shift = _offset(update.node_id)
        expected = shift * weight.numel() ** 0.5 / weight.norm().item()  # ‖shift·1‖ / ‖w_previous‖
        assert rows["features.0.weight"]["relative_change"] == pytest.approx(expected, rel=1e-5)
        assert rows["features.0.weight"]["std_over_init"] == pytest.approx(1.0)  # a shift keeps the spread
        assert rows["features.0.weight"]["max_abs"] == pytest.approx((weight + shift).abs().max().item(), rel=1e-6)


def test_visibility_of_a_random_query_differs_from_the_global_model_it_replaces():
    from fedleak.crafting.random_query import random_query_weights
    from fedleak.crafting.visibility import layer_visibility

    scenario = tiny_scenario(model={"name": "mlp", "widths": [64]})
    spec = scenario.model_spec(load_dataset(scenario.dataset))
    initial = spec.build(seed=0).state_dict()
    honest = {layer.layer: layer for layer in layer_visibility(initial, initial, initial)}
    assert all(layer.relative_change == 0 for layer in honest.values())
    assert all(layer.std_over_init == pytest.approx(1.0) for layer in honest.values() if layer.std_over_init)
    crafted = {layer.layer: layer for layer in layer_visibility(random_query_weights(spec, seed=5), initial, initial)}
    first, output = "layers.1.weight", "layers.3.weight"
    assert crafted[first].relative_change > 1  # fresh weights: as far from the previous model as they are large
    assert crafted[output].std_over_init < 0.5  # the rank-one output layer of scale 0.1 is narrower than its init
