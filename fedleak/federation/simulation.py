"""Launch a scenario as a Flower simulation (Ray backend) in this process."""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from fedleak.adversary.progress import Progress
from fedleak.core.timing import PHASES
from fedleak.federation.client_app import build_client_app
from fedleak.federation.run import num_sampled_clients
from fedleak.federation.server import build_server_app
from fedleak.runners.ray_config import join_ray, start_local_ray
from fedleak.scenario import Scenario
from fedleak.scenario.preflight import check_runnable


def simulate(scenario: Scenario, run_dir: Path, progress: Progress | None = None,
             verbose: bool = False, cpus: int | None = None, resume: bool = False,
             ray_address: str | None = None) -> Path:
    """Run ``scenario`` with one simulated SuperNode per client; returns ``run_dir``.

    ``cpus``: the CPUs Ray may use (default: all of this machine's); a sweep running arms
    side by side gives each its share. ``resume``: continue the stopped run in ``run_dir``
    after its last completed round (:meth:`~fedleak.federation.run.ServerRun.open`).
    ``ray_address``: run the client actors on that running Ray cluster (its CPUs, not ``cpus``)
    instead of a new local Ray.

    Raises:
        FedleakError: the scenario cannot run on its data (:func:`~fedleak.scenario.preflight.check_runnable`),
            or the cluster cannot be joined; raised before the federation starts.
    """
    check_runnable(scenario)
    run_simulated(build_server_app(lambda _: (scenario, run_dir), progress or Progress(), resume), scenario,
                  verbose, cpus=cpus, ray_address=ray_address)
    return run_dir


def run_simulated(server_app: ServerApp, scenario: Scenario, verbose: bool = False,
                  client_app: ClientApp | None = None, cpus: int | None = None,
                  ray_address: str | None = None) -> None:
    """Run ``server_app`` against ``scenario``'s clients (fedleak's honest ClientApp unless
    ``client_app`` is given), one simulated SuperNode each.

    Uses ``flwr.simulation.run_simulation`` (deprecated in favour of ``flwr run`` but
    the only in-process entry point in flwr 1.41): it lets the CLI hand the already
    validated scenario to both apps without a SuperLink. Benchmarks pass their own
    server app (e.g. plain FedAvg) to compare against the same clients; tests pass
    misbehaving clients.
    """
    from flwr.simulation import run_simulation

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    client_cpus, server_cpus = scenario.federation.client_cpus, None
    # Started (or joined) here, not by Flower's backend: on 127.0.0.1 only, its session folder
    # private, and the process's SIGTERM handler kept (fedleak.runners.ray_config). Actors' output
    # (SecAgg+ logs each stage at DEBUG) only when asked for. Flower's backend then uses this Ray.
    ray_options = {"log_to_driver": verbose, **({} if verbose else {"logging_level": logging.WARNING})}
    with PHASES.measure("Ray start"), _quiet(verbose):
        if ray_address is None:
            total = cpus or os.cpu_count() or 1
            ray_cpus = simulation_cpus(scenario, total)
            client_cpus = actor_cpus(scenario, ray_cpus)
            server_cpus = max(1, total - ray_cpus)
            start_local_ray(num_cpus=ray_cpus, **ray_options)
        else:
            join_ray(ray_address, **ray_options)
    with _torch_threads(server_cpus), _quiet(verbose):
        run_simulation(
            server_app=server_app,
            client_app=client_app or build_client_app(lambda _: scenario),
            num_supernodes=scenario.partition.num_clients,
            backend_config={"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0}},
            verbose_logging=verbose,
        )
    PHASES.since("server finished", "shutdown (Flower's simulation, Ray)")


def actor_cpus(scenario: Scenario, ray_cpus: int) -> float:
    """The CPUs each client actor reserves on a Ray of ``ray_cpus``: ``client_cpus``, within Ray's, and
    raised where it is fractional so that Flower, which starts ``ray_cpus / this`` actors, starts no
    more than a round's clients."""
    return max(min(scenario.federation.client_cpus, ray_cpus), ray_cpus / num_sampled_clients(scenario))


@contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Without ``verbose``, the console shows fedleak's lines only while the block runs: Flower's
    logger at ERROR (its ``run_simulation`` deprecation banner and strategy notes are WARNINGs)
    and Ray's FutureWarning about ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO`` ignored — filtered, not
    set: the variable would change which GPUs Ray's CPU-only actors see. Both are restored after."""
    if verbose:
        yield
        return
    flower = logging.getLogger("flwr")
    level = flower.level
    flower.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", category=FutureWarning)
            yield
    finally:
        flower.setLevel(level)


@contextmanager
def _torch_threads(cpus: int | None) -> Iterator[None]:
    """torch's intra-op threads in this process (the server's) at most ``cpus`` while the block runs.

    The CPUs left to the server once the client actors have theirs (:func:`simulation_cpus`): a
    thread more spins in OpenMP against the actors and Flower's threads. Measured on 2 cores, the
    quickstart's attacks on the inline runner took 2.29 s with torch's default 2 threads, 1.29 s
    with 1. ``None`` (a joined cluster, whose actors run elsewhere): left as it is.
    """
    import torch

    previous = torch.get_num_threads()
    if cpus is not None and cpus < previous:
        torch.set_num_threads(cpus)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def simulation_cpus(scenario: Scenario, cpus: int) -> int:
    """The CPUs the simulation's Ray gets out of ``cpus``: one client actor per client a round trains,
    at most, and one CPU left to the server process when there are several. (With a fractional
    ``client_cpus`` the actors' share is raised so that no more actors than a round's clients start.)

    Flower's backend starts (Ray's CPUs / ``client_cpus``) actors, and each imports fedleak's client
    path (2.7 s of a core on the 2-core machine) before its first client trains: an actor beyond a
    round's clients only costs. The server process — Flower's in-memory SuperLink, the strategy, the
    scoring and the attacks of the inline runner — works while the actors do; given every CPU to
    actors, it competes with them for its share.
    """
    federation = scenario.federation
    wanted = math.ceil(num_sampled_clients(scenario) * federation.client_cpus)
    spare = cpus - 1 if cpus > 1 else 1
    return min(cpus, max(math.ceil(federation.client_cpus), min(wanted, spare)))
