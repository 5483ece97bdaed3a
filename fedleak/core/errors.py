"""The one exception type that means "the user asked for something we cannot do"."""

import re

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
"""Terminal escape sequences (colours, cursor moves, titles): Ray colours its actors' tracebacks."""


def escaped(text: str) -> str:
    """``text`` with every unprintable character (newline, tab, escape, ...) written as Python
    writes it in a ``repr`` (``\\n``): an echoed value can then never break a one-line message."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class FedleakError(Exception):
    """A user error: bad scenario value, unknown name, missing file.

    The message is a single line that names the offending key and, where there is a
    closed set, the allowed values. The CLI prints it without a traceback and exits 2.
    Values it echoes may hold anything (``--set 'name="a\\nb"'``): the message is kept one
    line here, once for every message, by :func:`escaped`.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(escaped(str(message)))


def first_line(error: BaseException | str) -> str:
    """A message's first line, as plain text (stored as a reason, shown in one-line errors):
    terminal colour codes removed, other unprintable characters escaped; an exception without
    a message gives its type's name."""
    lines = _ANSI.sub("", str(error)).strip().splitlines()
    if lines:
        return escaped(lines[0])
    return type(error).__name__ if isinstance(error, BaseException) else ""


class RunFailed(Exception):
    """The run cannot go on, e.g. a round in which the server accepted no reply.

    The server stores the message as the run's error and ends the run as ``failed``;
    ``fedleak run`` prints it on one line and exits 1.
    """


class RunInterrupted(Exception):
    """The run was asked to stop (Ctrl-C, SIGTERM): the server stores it as ``interrupted``,
    with the last completed round, and ``fedleak resume`` can continue it."""
