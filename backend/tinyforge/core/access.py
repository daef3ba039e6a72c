"""Who may see and change what: the teams of a request and the caller's role in each.

A request sees the teams its user belongs to; a request made with an API token sees only the
token's team (and nothing once its user has left that team). Objects of other teams are simply
not found (404), so ids reveal nothing.

Who belongs to which team is the accounts app's data: it registers its membership and token models
here (AccountsConfig.ready()), so core names no app.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions

from tinyforge.core.roles import ROLE_RANK, Role


class _Accounts:
    membership = None  # team_id, user, role; a team-scoped manager `objects` with for_teams()
    token = None  # what token authentication puts in request.auth: team_id, has_scope()


def register_accounts(*, membership_model, token_model) -> None:
    _Accounts.membership, _Accounts.token = membership_model, token_model


def _membership():
    if _Accounts.membership is None:
        raise RuntimeError("no membership model is registered: tinyforge.accounts must be in INSTALLED_APPS")
    return _Accounts.membership


def token_of(request):
    """The API token the request was made with, or None (a session, or no one)."""
    auth = getattr(request, "auth", None)
    return auth if _Accounts.token is not None and isinstance(auth, _Accounts.token) else None


def team_roles(request) -> dict[int, str]:
    """{team id: role} for the caller; computed once per request."""
    cached = getattr(request, "_tinyforge_team_roles", None)
    if cached is not None:
        return cached
    roles: dict[int, str] = {}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        memberships = _membership().objects.for_teams(
            [token_of(request).team_id] if token_of(request) else _all_teams_of(user)
        ).filter(user=user)
        roles = {m.team_id: m.role for m in memberships}
    request._tinyforge_team_roles = roles
    return roles


def _all_teams_of(user) -> list[int]:
    return list(_membership().all_teams.filter(user=user).values_list("team_id", flat=True))


def visible_team_ids(request) -> list[int]:
    return list(team_roles(request))


def role_in(request, team_id: int) -> str | None:
    return team_roles(request).get(team_id)


def has_role(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


def require_role(request, team_id: int, minimum: str, action: str = "do this") -> str:
    """The caller's role in the team, or 404 (not a member) / 403 (role too low)."""
    role = role_in(request, team_id)
    if role is None:
        raise exceptions.NotFound()
    if not has_role(role, minimum):
        raise exceptions.PermissionDenied(f"Your role in this team is {role}; to {action} you need {minimum} or above.")
    return role


def team_id_of(obj) -> int:
    """The id of the team an object belongs to, following its model's team_path."""
    parts = type(obj).team_path.split("__")
    if parts == ["id"]:
        return obj.pk
    for part in parts[:-1]:
        obj = getattr(obj, part)
    return getattr(obj, f"{parts[-1]}_id")


def client_ip_address(request) -> str | None:
    """The caller's address: the last hop of X-Forwarded-For behind our proxy, else the peer."""
    meta = getattr(request, "META", {})
    if settings.BEHIND_PROXY:
        forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]
    return meta.get("REMOTE_ADDR")
