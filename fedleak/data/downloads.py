"""Checked files and downloads that never replace what is already in ``data_root``.

A download goes to a fresh temporary folder inside ``data_root``; each file must match
its MD5 before it is moved to its place, and callers move only files and folders that are
not there yet. Without a network a download ends in one line, not a traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from fedleak.core.errors import FedleakError, first_line

_NO_NETWORK_HINT = "without a network, put the files in dataset.data_root yourself"


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, md5: str) -> None:
    """Raises:
        FedleakError: ``path``'s MD5 is not ``md5`` (a corrupt or different file).
    """
    found = md5_of(path)
    if found != md5:
        raise FedleakError(f"dataset.data_root: {path} fails its MD5 check (expected {md5}, found {found}): a corrupt "
                           "or incomplete download, or not the official file; replace it")


@contextlib.contextmanager
def staging(root: Path) -> Iterator[Path]:
    """A temporary folder inside ``root`` (created if needed), removed with what is left in it."""
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".fedleak-download-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fetch(urls: Sequence[str], folder: Path, filename: str, md5: str) -> Path:
    """Download ``filename`` into ``folder`` from the first of ``urls`` that gives the file with ``md5``.

    Raises:
        FedleakError: one line: no URL gave it (no network, or a wrong file), with each URL's reason.
    """
    from torchvision.datasets.utils import download_url  # torchvision only to download

    path, reasons = folder / filename, []
    for url in urls:
        try:
            download_url(url, str(folder), filename)
        except Exception as error:  # noqa: BLE001 - URLError, OSError, HTTP errors: all mean "not from here"
            reasons.append(f"{url}: {first_line(error)}")
            continue
        found = md5_of(path)
        if found == md5:
            return path
        path.unlink()
        reasons.append(f"{url}: MD5 {found}, expected {md5}")
    raise FedleakError(f"dataset.download: cannot download {filename} ({'; '.join(reasons)}); {_NO_NETWORK_HINT}")


def extract(archive: Path, folder: Path) -> None:
    """Unpack a tar archive into ``folder`` (no absolute paths, links out or devices: tarfile's ``data`` filter)."""
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")


def place(source: Path, target: Path) -> None:
    """Move a checked file or folder to ``target``.

    Raises:
        FedleakError: ``target`` exists (it is never replaced).
    """
    if target.exists():
        raise FedleakError(f"dataset.data_root: {target} already exists; a download never replaces it")
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
