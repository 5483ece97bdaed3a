"""Advisory locks on run and sweep directories: who is writing there, and whether it still lives.

An ``flock`` is released by the kernel when its process dies, even by ``kill -9``, so a
directory whose database says ``running`` while nobody holds its lock was left by a
process that is gone: the run was interrupted, and ``fedleak resume`` may continue it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from fedleak.core.errors import FedleakError
from fedleak.results.rows import RunStatus

LOCK_FILE = ".lock"


class DirectoryLock:
    """An exclusive lock on ``directory`` (its ``.lock`` file, 0600), held until :meth:`release`.

    Raises (on entering or :meth:`acquire`):
        FedleakError: another process holds it; ``busy`` says what that process is doing.
    """

    def __init__(self, directory: Path, busy: str) -> None:
        self.path = Path(directory) / LOCK_FILE
        self.busy = busy
        self._descriptor: int | None = None

    def acquire(self) -> DirectoryLock:
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FedleakError(f"{self.path.parent}: {self.busy}") from None
        self._descriptor = descriptor
        return self

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def is_locked(directory: Path) -> bool:
    """Whether a live process holds ``directory``'s lock (read-only: creates nothing)."""
    try:
        descriptor = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def shown_status(directory: Path, stored: str) -> str:
    """The status to report for a run stored as ``stored``: a running run whose lock nobody
    holds lost its process (killed, or its machine went down): interrupted."""
    return RunStatus.INTERRUPTED if stored == RunStatus.RUNNING and not is_locked(directory) else stored
