"""A command timed as a whole process: wall seconds, CPU seconds, and when each output line came.

CPU is the user + system time the kernel accounts to the process and to every descendant it
reaped (``os.wait4``): a simulation's Ray servers and workers are reaped at its shutdown, so
their CPU counts. CPU beside wall is what holds on a shared machine: a neighbour's load stretches
the wall time, much less the CPU a command needs.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class Timed:
    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    """Each output line (stdout and stderr) with the seconds since the start at which it came."""

    def first(self, text: str) -> float | None:
        """When the first line containing ``text`` came (``None``: none did)."""
        return next((at for at, line in self.lines if text in line), None)

    @property
    def last_line_s(self) -> float:
        return self.lines[-1][0] if self.lines else self.wall_s


def timed(command: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
          timeout_s: float = 600) -> Timed:
    """Run ``command``; its output is read line by line (kept, with arrival times), never shown.

    Raises:
        TimeoutError: the command ran past ``timeout_s`` (it is killed first).
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    assert process.stdout is not None
    lines, pending = [], b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            if time.perf_counter() - started > timeout_s:
                process.kill()
                raise TimeoutError(f"{command[:3]} ran past {timeout_s} s")
            if not selector.select(timeout=1.0):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            *complete, pending = (pending + chunk).split(b"\n")
            now = time.perf_counter() - started
            lines.extend((now, line.decode(errors="replace")) for line in complete)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Timed(command, process.returncode, wall, usage.ru_utime + usage.ru_stime, lines)
