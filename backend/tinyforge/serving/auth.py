"""Who may call the inference API.

The platform plugs in an authenticator backed by its API tokens (inference scope, team's
deployments only); a standalone server takes one key from the environment, or runs open and says
so loudly at start.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    name: str
    models: frozenset[str] | None = None  # None: every model

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


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
