"""Errors shared by the pure-Python layers (ml, connectors, serving), the CLI and the platform's
services.

They never import Django. The control plane maps them to HTTP answers (tinyforge.core.errors:
TinyforgeError and InvalidInput 400, NotAllowed 403, NotFound 404, Conflict 409); the CLI prints them and exits
with status 2, without a traceback.
"""


class TinyforgeError(Exception):
    """A problem the user can fix: bad input, a bad option, a missing file.

    The message says what is wrong and where (file, line, field) and, when it helps, what to do.
    """


class InvalidInput(TinyforgeError):
    """Input the caller can fix, field by field: `fields` maps each field (dotted when nested:
    config.learning_rate) to what is wrong with it."""

    def __init__(self, fields: dict[str, list[str]]):
        self.fields = fields
        super().__init__("; ".join(f"{name}: {message}" for name, messages in fields.items() for message in messages))


class NotFound(TinyforgeError):
    """What the request names does not exist for the caller (or belongs to another team: the
    same answer, so ids reveal nothing)."""


class Conflict(TinyforgeError):
    """The request conflicts with the current state of what it names (a run still running, a
    version not ready, the last owner of a team)."""


class NotAllowed(TinyforgeError):
    """The caller's role does not allow this, whatever the input."""
