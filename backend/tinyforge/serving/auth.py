"""Who may call the inference API.

The platform plugs in an authenticator backed by its API tokens (inference scope, team's
deployments only); a standalone server takes one key from the environment, or runs open and says
so loudly at start.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is calling, and which models they see under which ids.

    models None: every served model, under its served name. A mapping {model id the caller uses:
    served name} gives the caller its own ids: the platform serves each deployment under a name
    unique across teams, while a team sees (and only sees) its deployments under their own names.
    """

    name: str
    models: Mapping[str, str] | None = None

    def served_name(self, model_id: str) -> str | None:
        """The served model behind the id the caller asked for, or None when they have no such model."""
        return model_id if self.models is None else self.models.get(model_id)

    def model_id(self, served_name: str) -> str | None:
        """The id this caller knows a served model by, or None when it is not theirs."""
        if self.models is None:
            return served_name
        return next((model_id for model_id, served in self.models.items() if served == served_name), None)


class Authenticator(ABC):
    @abstractmethod
    def authenticate(self, api_key: str | None) -> Caller | None:
        """The caller behind a bearer key (None when the request had none), or None to refuse.
        Called from a worker thread, so it may query a database."""


class APIKeyAuthenticator(Authenticator):
    def __init__(self, key: str):
        self._key = key.encode()

    def authenticate(self, api_key: str | None) -> Caller | None:
        if api_key is not None and hmac.compare_digest(api_key.encode(), self._key):
            return Caller("api-key")
        return None


class OpenAccess(Authenticator):
    """No key: anyone who reaches the port may use every model."""

    def authenticate(self, api_key: str | None) -> Caller | None:
        return Caller("anonymous")
