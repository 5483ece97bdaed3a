"""The small pieces that make start-up fast and visible: the simulation's CPU split, the phase clock."""

import threading
import time

import pytest

from fedleak.core.timing import PhaseClock
from fedleak.federation.simulation import actor_cpus, simulation_cpus

from conftest import tiny_scenario


@pytest.mark.parametrize("clients, fraction, client_cpus, cpus, expected", [
    (4, 1.0, 1.0, 2, 1),     # the 2-core machine: one actor, a core left to the server
    (4, 1.0, 1.0, 16, 4),    # no actor beyond a round's 4 clients
    (100, 1.0, 1.0, 16, 15),  # one CPU kept for the server
    (100, 0.1, 1.0, 16, 10),  # partial participation: the round's 10 clients
    (4, 1.0, 0.5, 16, 2),    # two clients per CPU
    (4, 1.0, 4.0, 2, 2),     # a client asking for more than the machine: all of it, one actor
    (4, 1.0, 1.0, 1, 1),     # one CPU: shared
])
def test_the_simulations_ray_gets_a_rounds_clients_and_leaves_the_server_a_cpu(clients, fraction, client_cpus,
                                                                               cpus, expected):
    scenario = tiny_scenario(partition={"num_clients": clients},
                             federation={"fraction_train": fraction, "client_cpus": client_cpus})
    assert simulation_cpus(scenario, cpus) == expected


@pytest.mark.parametrize("clients, client_cpus, ray_cpus, actors", [
    (4, 1.0, 1, 1), (4, 0.1, 1, 4), (4, 0.5, 2, 4), (100, 1.0, 15, 15), (4, 4.0, 2, 1)])
def test_no_more_client_actors_start_than_a_round_has_clients(clients, client_cpus, ray_cpus, actors):
    scenario = tiny_scenario(partition={"num_clients": clients}, federation={"client_cpus": client_cpus})
    assert int(ray_cpus / actor_cpus(scenario, ray_cpus)) == actors  # how Flower sizes its actor pool


def test_phases_sum_their_spans_across_threads_in_the_order_they_first_occurred():
    clock = PhaseClock()
    with clock.measure("first"):
        time.sleep(0.01)
    threads = [threading.Thread(target=clock.add, args=("second", 0.5)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.since("never marked", "third")  # a span without its start is not counted
    clock.mark("start")
    clock.since("start", "third")
    phases = clock.phases()
    assert [p.name for p in phases] == ["first", "second", "third"]
    assert phases[0].seconds >= 0.01 and phases[0].count == 1
    assert (phases[1].seconds, phases[1].count) == (2.0, 4)
    assert phases[2].count == 1


def test_a_phase_that_raises_is_still_counted():
    clock = PhaseClock()
    with pytest.raises(RuntimeError), clock.measure("failing"):
        raise RuntimeError("boom")
    assert [p.name for p in clock.phases()] == ["failing"]
