"""Which fedleak code a process runs: the version and a digest of the package's sources.

A deployment has several copies of fedleak: the app bundle ``flwr run`` ships (the ServerApp and
ClientApps import it from there), the package installed in each image (what Ray attack workers
import). Two copies with one version number can still differ (an edited checkout, an old image),
and then the server's checks, the clients' training and the attacks disagree on what an update
is. The server sends its fingerprint with every train config (``fedleak-code``); a client or an
attack worker whose own differs refuses with one line naming both.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
"""The fedleak package's folder (this module is ``fedleak/core/fingerprint.py``)."""


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """``<version>+<12 hex of SHA-256 over the package's .py files, by relative path>``."""
    root = PACKAGE
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("fedleak")
    except metadata.PackageNotFoundError:  # a bundle's copy, not installed
        version = "0"
    return f"{version}+{digest.hexdigest()[:12]}"


def code_mismatch(theirs: object, where: str) -> str | None:
    """Why code that reports fingerprint ``theirs`` must not work with this process (``None``: same code)."""
    mine = code_fingerprint()
    if theirs == mine:
        return None
    return (f"fedleak code differs: the server runs {theirs}, {where} {mine} (the app bundle and the installed "
            "package are different copies: install one fedleak everywhere)")
