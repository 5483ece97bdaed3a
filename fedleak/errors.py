"""The one exception type that means "the user asked for something we cannot do"."""


class FedleakError(Exception):
    """A user error: bad scenario value, unknown name, missing file.

    The message is a single line that names the offending key and, where there is a
    closed set, the allowed values. The CLI prints it without a traceback and exits 2.
    """
