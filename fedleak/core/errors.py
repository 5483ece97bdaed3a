"""The one exception type that means "the user asked for something we cannot do"."""


class FedleakError(Exception):
    """A user error: bad scenario value, unknown name, missing file.

    The message is a single line that names the offending key and, where there is a
    closed set, the allowed values. The CLI prints it without a traceback and exits 2.
    """


def first_line(error: BaseException | str) -> str:
    """A message's first line; an exception without one gives its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__ if isinstance(error, BaseException) else ""


class RunFailed(Exception):
    """The run cannot go on, e.g. a round in which the server accepted no reply.

    The server stores the message as the run's error and ends the run as ``failed``;
    ``fedleak run`` prints it on one line and exits 1.
    """


class RunInterrupted(Exception):
    """The run was asked to stop (Ctrl-C, SIGTERM): the server stores it as ``interrupted``,
    with the last completed round, and ``fedleak resume`` can continue it."""
