"""`Authorization: Bearer <token>` for scripts, and the lookup the inference service shares."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from tinyforge.accounts.models import ApiToken

# last_used_at is written at most this often, so busy scripts do not turn reads into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def authenticate_token(secret: str) -> ApiToken | None:
    """The active token with this secret (its user active too), or None; records its use."""
    if not secret.startswith(ApiToken.PREFIX) or len(secret) > 200:
        return None
    token = (
        ApiToken.all_teams.select_related("user", "team")
        .filter(token_hash=ApiToken.hash_secret(secret))
        .first()
    )
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.all_teams.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token contains characters no token has.") from None
        token = authenticate_token(secret)
        if token is None:
            raise exceptions.AuthenticationFailed("The API token is invalid, expired or revoked.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'
