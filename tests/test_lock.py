"""Run-directory locks: one writer; a dead writer (even kill -9) leaves the run recognisably interrupted."""

import subprocess
import sys

import pytest

from fedleak.core.errors import FedleakError
from fedleak.results.lock import DirectoryLock, is_locked, shown_status


def test_a_second_writer_is_refused_with_what_the_first_is_doing(tmp_path):
    with DirectoryLock(tmp_path, "the run is still running"):
        assert is_locked(tmp_path)
        with pytest.raises(FedleakError, match="the run is still running"):
            DirectoryLock(tmp_path, "the run is still running").acquire()
    assert not is_locked(tmp_path)
    assert (tmp_path / ".lock").stat().st_mode & 0o777 == 0o600


def test_is_locked_creates_nothing(tmp_path):
    assert not is_locked(tmp_path) and list(tmp_path.iterdir()) == []


def test_a_running_run_whose_process_was_killed_shows_as_interrupted(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom fedleak.results.lock import "
                               f"DirectoryLock\nDirectoryLock({str(tmp_path)!r}, 'busy').acquire()\n"
                               "print('held', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert shown_status(tmp_path, "running") == "running"
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert shown_status(tmp_path, "running") == "interrupted"
    assert shown_status(tmp_path, "finished") == "finished"
