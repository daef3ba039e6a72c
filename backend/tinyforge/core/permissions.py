from __future__ import annotations

from rest_framework import exceptions, permissions

from tinyforge.core.access import require_role, team_id_of, token_of
from tinyforge.core.roles import Role, Scope


class TeamRolePermission(permissions.BasePermission):
    """Signed in; a token needs `read` for safe methods and `write` for the rest (an inference
    token reaches no control-plane data); changing an object needs `write_role` (default:
    member) in the object's team. Views may set:

    - `write_role`: the least role that may change their objects (e.g. admin for memberships);
    - `session_only = True`: refuse API tokens (token management must not be automatable by a
      leaked token);
    - `required_scope`: a scope instead of read/write.
    """

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        token = token_of(request)
        if token is not None:
            if getattr(view, "session_only", False):
                raise exceptions.PermissionDenied("This endpoint needs a signed-in session; API tokens cannot use it.")
            needed = getattr(view, "required_scope", None) or (
                Scope.READ if request.method in permissions.SAFE_METHODS else Scope.WRITE
            )
            if not token.has_scope(needed):
                raise exceptions.PermissionDenied(f"This API token lacks the '{needed}' scope.")
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True  # visibility is the queryset's job: other teams' objects are 404
        minimum = getattr(view, "write_role", Role.MEMBER)
        require_role(request, team_id_of(obj), minimum, action=f"change this {obj._meta.verbose_name}")
        return True
