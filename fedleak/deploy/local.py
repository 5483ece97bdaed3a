"""docker-compose.yml's topology as processes on 127.0.0.1: for tests, benchmarks and a first look.

:class:`LocalDeployment` starts what the compose file runs — a TLS SuperLink with SuperNode
authentication (``--isolation process``), the SuperExec of fedleak's ServerApp, N SuperNodes
with their ``partition-id`` and keys and a SuperExec each for their ClientApp, and optionally a
Ray head for the attacks — every one bound to 127.0.0.1, its output in ``directory/logs``, and
stops each process it started, by PID (never ``ray stop``, which stops every Ray on the machine).
Without the Flower part (``flower=False``) it is a running Ray cluster of one node, which
``fedleak run --ray-address`` joins. (No second node joins it: Ray accepts other nodes only when its
servers listen on every interface, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` unset.)

The ``flwr`` CLI finds the deployment as the federation :data:`FEDERATION` in
``directory/flwr-home/config.toml`` (``FLWR_HOME`` in :meth:`LocalDeployment.env`).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from fedleak.core.errors import FedleakError
from fedleak.deploy.certs import DeploymentCertificates, write_certificates

FEDERATION = "fedleak-local"
"""The federation name the local deployment is registered under in its ``config.toml``."""

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalDeployment:
    """The deployment's processes under ``directory`` (module docstring); a context manager."""

    directory: Path
    supernodes: int = 2
    registered: int | None = None
    """How many of the SuperNodes' keys are registered (``None``: all): the others are refused."""
    ray_head: bool = True
    ray_cpus: int = 1
    flower: bool = True
    """Start the Flower topology (``False``: the Ray cluster alone)."""
    env_extra: dict[str, str] = field(default_factory=dict)
    superlink_port: int = field(default_factory=free_port)
    ray_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    certificates: DeploymentCertificates | None = None
    ray_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.superlink_port}"

    @property
    def ray_address(self) -> str:
        return f"{HOST}:{self.ray_port}"

    def env(self) -> dict[str, str]:
        """The environment of every process and of the ``flwr`` CLI against this deployment.

        ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes the Ray head and the ServerApp's driver a
        single-machine cluster, whose servers bind 127.0.0.1 (otherwise the GCS and raylets listen
        on every interface, :func:`fedleak.runners.ray_config.local_ray_options`)."""
        return {**os.environ, "FLWR_HOME": str(self.directory / "flwr-home"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                **self.env_extra}

    def listening(self) -> list[str]:
        """Every TCP address (``host:port``) a process of the deployment listens on, now."""
        groups = {process.pid for process in self.processes.values() if process.poll() is None}
        inodes = {inode for pid in _members(groups) for inode in _socket_inodes(pid)}
        return sorted(address for address, inode in _listening_sockets() if inode in inodes)

    def __enter__(self) -> LocalDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """The Ray head (if any); then, for the Flower topology, certificates, the federation entry and
        the processes in dependency order.

        Raises:
            FedleakError: a process exited or its port did not open in time (its log named).
        """
        if self.ray_head:
            self._ray_head()
        if not self.flower:
            return
        certs = write_certificates(self.directory / "certs", supernodes=self.supernodes, replace=True)
        self.certificates = certs
        self._federation_config(certs)
        self._spawn("superlink", ["flower-superlink", "--isolation", "process", "--host", HOST,
                                  "--port", str(self.superlink_port), "--database", str(self.directory / "state.db"),
                                  "--disable-runtime-dependency-installation",
                                  "--ssl-ca-certfile", str(certs.ca_certificate),
                                  "--ssl-certfile", str(certs.superlink_certificate),
                                  "--ssl-keyfile", str(certs.superlink_key), "--enable-supernode-auth"])
        self._wait_for_port("superlink", self.superlink_port)
        for _, public in certs.supernode_keys[:self.registered]:
            self.flwr(["supernode", "register", str(public), FEDERATION])
        self._spawn("superexec-serverapp", ["flower-superexec", "--runtime-api-address", self.address,
                                            "--root-certificates", str(certs.ca_certificate)])
        for partition, (private, _) in enumerate(certs.supernode_keys):
            port = free_port()
            self._spawn(f"supernode-{partition}", [
                "flower-supernode", "--superlink", self.address, "--root-certificates", str(certs.ca_certificate),
                "--auth-supernode-private-key", str(private),
                "--node-config", f"partition-id={partition} num-partitions={self.supernodes}",
                "--isolation", "process", "--host", HOST, "--port", str(port)])
            self._spawn(f"superexec-clientapp-{partition}", ["flower-superexec", "--runtime-api-address",
                                                             f"{HOST}:{port}", "--insecure"])

    def _federation_config(self, certs: DeploymentCertificates) -> None:
        home = self.directory / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{FEDERATION}"\n\n[superlink.{FEDERATION}]\n'
            f'address = "{self.address}"\nroot-certificates = "{certs.ca_certificate}"\n')

    def _ray_head(self) -> None:
        # Ray's socket paths must fit in 107 bytes and it makes its folder 0777: a short private
        # folder of its own (removed by stop), with Ray's inside it.
        self.ray_dir = Path(tempfile.mkdtemp(prefix="fedleak-ray-"))
        # Ray's fixed default ports (client server 10001, dashboard agent 52365) taken from the OS
        # instead, so that another Ray on the machine does not collide with this one.
        fixed = [f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"]
        self._spawn("ray-head", ["ray", "start", "--head", "--block", f"--node-ip-address={HOST}",
                                 f"--port={self.ray_port}", f"--num-cpus={self.ray_cpus}", *fixed,
                                 "--include-dashboard=false", f"--temp-dir={self.ray_dir / 'r'}"])
        self._wait_for_port("ray-head", self.ray_port, timeout=90)

    def ray_worker_logs(self) -> list[Path]:
        """The Ray head's worker logs (what its workers ran), while it runs."""
        return sorted(self.ray_dir.rglob("worker-*.err")) if self.ray_dir else []

    def flwr(self, arguments: Sequence[str], timeout: float = 120, check: bool = True,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``flwr`` CLI against this deployment.

        Raises:
            FedleakError: it failed (with ``check``): its last output line.
        """
        done = subprocess.run(["flwr", *arguments], env=self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd)
        if check and done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            raise FedleakError(f"flwr {' '.join(arguments[:2])} failed: {last[0]}")
        return done

    def log(self, name: str) -> str:
        return (self.directory / "logs" / f"{name}.log").read_text(errors="replace")

    def _spawn(self, name: str, command: list[str]) -> None:
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "wb") as output:
            self.processes[name] = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=self.env(),
                                                    start_new_session=True)

    def _wait_for_port(self, name: str, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise FedleakError(f"{name} exited with {self.processes[name].returncode} "
                                   f"(see {self.directory / 'logs' / name}.log)")
            with socket.socket() as probe:
                if probe.connect_ex((HOST, port)) == 0:
                    return
            time.sleep(0.2)
        raise FedleakError(f"{name} did not open port {port} in {timeout:.0f} s (see its log)")

    def stop(self, timeout: float = 20) -> None:
        """Stop every process started (its whole session: a SuperExec's app processes too), by PID."""
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            _signal_group(process, signal.SIGKILL)  # what the group's leader left behind (e.g. Ray's raylet)
        if self.ray_dir is not None:
            shutil.rmtree(self.ray_dir, ignore_errors=True)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _members(groups: set[int]) -> list[int]:
    """The PIDs of every process in the process groups ``groups`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) in groups:  # field 5 of /proc/PID/stat: the process group
                found.append(int(entry.name))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(descriptor)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _listening_sockets() -> list[tuple[str, str]]:
    """(address, inode) of every listening TCP socket (/proc/net/tcp and tcp6, state 0A)."""
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":
                continue
            host_hex, port_hex = fields[1].split(":")
            found.append((f"{_host(host_hex, width)}:{int(port_hex, 16)}", fields[9]))
    return found


def _host(hex_address: str, width: int) -> str:
    """A /proc/net address (little-endian 32-bit words) as text: IPv4-mapped IPv6 as its IPv4."""
    raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, width, 8))
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
