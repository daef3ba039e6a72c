"""Errors shared by the pure-Python layers (ml, connectors, serving) and the CLI.

They never import Django. The control plane maps them to HTTP answers; the CLI prints them
and exits with status 2, without a traceback.
"""


class TinyforgeError(Exception):
    """A problem the user can fix: bad input, a bad option, a missing file.

    The message says what is wrong and where (file, line, field) and, when it helps, what to do.
    """
