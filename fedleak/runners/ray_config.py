"""The ``ray`` runner's options (read by the scenario without importing Ray)."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from fedleak.core.config import RunnerConfig
from fedleak.core.errors import FedleakError, first_line


class RayRunnerConfig(RunnerConfig):
    """The Ray pool's options (beside every runner's ``wait`` and ``max_batch``)."""

    workers: int = Field(2, ge=1, le=1024)
    """Worker actors; each runs one attack at a time."""
    num_cpus: float = Field(0.0, ge=0)
    """CPUs each worker reserves. 0 by default: in a simulation Flower's client actors reserve
    every CPU, and a worker waiting for one would never start."""
    num_gpus: float | None = Field(None, ge=0)
    """GPUs each worker reserves; ``None``: the cluster's GPUs split over the workers (at most
    one each), 0 without a GPU (the attacks then run on CPU)."""
    address: str | None = None
    """An existing Ray cluster (a deployment): ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``;
    ``None``: the simulation's Ray, or a new local one. If it cannot be joined, the run goes
    on and its attacks are stored failed with the reason."""

    @field_validator("address")
    @classmethod
    def _cluster_address(cls, address: str | None) -> str | None:
        return None if address is None else cluster_address(address)

    max_pending: int = Field(64, ge=1)
    """Attacks waiting for a worker; beyond this the ``backpressure`` policy applies."""
    backpressure: Literal["block", "reject"] = "block"
    """``block``: the round waits for room in the queue; ``reject``: the attack is stored as failed."""
    grace_s: float = Field(30.0, gt=0)
    """A worker still busy this long after its attack's ``time_budget_s`` is killed and replaced,
    and the attack stored as failed (attacks without a budget are never killed)."""


def cluster_address(address: str) -> str:
    """``address`` if it names a Ray cluster: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``.

    Raises:
        ValueError: it does not (one line).
    """
    if not re.fullmatch(r"auto|(ray://)?[\w.\-\[\]:]+:\d{1,5}", address) or (
            address != "auto" and not 0 < int(address.rpartition(":")[2]) < 65536):
        raise ValueError(f"expected 'auto', HOST:PORT or ray://HOST:PORT (a port 1-65535), got {address!r}")
    return address


def check_reachable(address: str, timeout_s: float = 2.0) -> None:
    """Fail fast where a ``HOST:PORT`` cluster address has nothing listening (``ray.init`` would wait
    for it for a minute); ``auto`` and ``ray://`` addresses are left to Ray.

    Raises:
        FedleakError: nothing accepts a connection there (one line).
    """
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise FedleakError(f"no Ray cluster at {address}: {error.strerror or error}") from None


def local_ray_options() -> dict[str, Any]:
    """``ray.init`` options for a Ray that fedleak starts itself (not one it joins at ``address``):
    every Ray server on 127.0.0.1 and the session folder private to the user.

    Ray's servers listen on all interfaces, without authentication, unless Ray takes the node
    for a single-machine one: with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` its node address is
    the loopback address and the GCS, raylets, drivers and workers bind to it. The variable is
    read when Ray is imported and passed on to every process Ray starts, so it is set in the
    environment and, if Ray is already imported, in its constants.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]
    return {"_node_ip_address": "127.0.0.1", "_temp_dir": str(private_ray_dir()), "include_dashboard": False}


def start_local_ray(**options: Any) -> None:
    """Start a local Ray (:func:`local_ray_options` plus ``options``) unless this process is in one.

    ``ray.init`` in the main thread replaces the SIGTERM handler with ``sys.exit``, which ends
    the main thread wherever it is (in a simulation: Flower's engine loop, leaving its server
    thread blocked on replies that never come, the process hung). The handler the process had
    (fedleak's interrupts) is put back. Actors get the driver's ``sys.path`` as Flower's Ray
    backend gives them, so apps and clients defined outside installed packages import there too:
    through ``PYTHONPATH`` in this process's environment, which the Ray it starts inherits, not a
    job ``runtime_env``, with which no worker Ray starts ahead could be used (each actor waited for
    a fresh one: 1.0 s for the first two actors instead of 0.2 s on 2 cores).
    """
    import ray

    if ray.is_initialized():
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [*sys.path, before]))
    try:
        _init_keeping_sigterm(**local_ray_options(), **options)
    finally:  # Ray's processes have their copy; this process's later children get the old one
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def join_ray(address: str, **options: Any) -> None:
    """Connect this process to the running Ray cluster at ``address`` (``ray.init`` ``options`` beside),
    its SIGTERM handler kept as :func:`start_local_ray` keeps it. Ray's nodes run what this process
    sends them with their own environment: fedleak and the scenario's plugins must be installed there.

    Raises:
        FedleakError: nothing listens at ``address``, or Ray cannot join it (one line).
    """
    check_reachable(address)
    try:
        _init_keeping_sigterm(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise FedleakError(f"cannot join the Ray cluster at {address}: {first_line(error)}") from None


def _init_keeping_sigterm(**options: Any) -> None:
    import ray

    in_main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if in_main else None
    try:
        ray.init(**options)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, sigterm)


def private_ray_dir() -> Path:
    """``<tmp>/fedleak-ray-<uid>/r``: Ray makes the folder it is given world-writable (0777,
    ``try_make_directory_shared``), so it gets one inside a 0700 folder of this user's that
    nobody else may enter. Short, as it holds Unix sockets."""
    private = Path(tempfile.gettempdir()) / f"fedleak-ray-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    info = private.lstat()
    if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
        raise FedleakError(f"{private}: not a folder of this user's; remove it or set TMPDIR")
    private.chmod(0o700)
    return private / "r"
