"""Who may see and change what: the teams of a request and the caller's role in each.

A request sees the teams its user belongs to; a request made with an API token sees only the
token's team (and nothing once its user has left that team). Objects of other teams are simply
not found (404), so ids reveal nothing.
"""

from __future__ import annotations

from rest_framework import exceptions

from tinyforge.accounts.models import ROLE_RANK, ApiToken, Membership, Role


def token_of(request) -> ApiToken | None:
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, ApiToken) else None


def team_roles(request) -> dict[int, str]:
    """{team id: role} for the caller; computed once per request."""
    cached = getattr(request, "_tinyforge_team_roles", None)
    if cached is not None:
        return cached
    roles: dict[int, str] = {}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        memberships = Membership.objects.for_teams(
            [token_of(request).team_id] if token_of(request) else _all_teams_of(user)
        ).filter(user=user)
        roles = {m.team_id: m.role for m in memberships}
    request._tinyforge_team_roles = roles
    return roles


def _all_teams_of(user) -> list[int]:
    return list(Membership.all_teams.filter(user=user).values_list("team_id", flat=True))


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
