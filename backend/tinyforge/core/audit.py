"""The audit log: who created, changed, started, cancelled, deployed or deleted what, and when."""

from __future__ import annotations

from tinyforge.core.access import client_ip_address, team_id_of, token_of
from tinyforge.core.models import AuditEvent


def audit(request, action: str, target, *, changes: dict | None = None, team_id: int | None = None,
          project_id: int | None = None) -> AuditEvent:
    """Record `action` on `target` by the caller of `request` (None for the platform itself)."""
    user = getattr(request, "user", None) if request is not None else None
    if user is not None and not user.is_authenticated:
        user = None
    if project_id is None:
        project_id = _project_id_of(target)
    return AuditEvent.all_teams.create(
        team_id=team_id if team_id is not None else team_id_of(target),
        project_id=project_id,
        actor=user,
        actor_token=token_of(request) if request is not None else None,
        action=action,
        target_type=target._meta.model_name,
        target_id=str(target.pk),
        target_repr=str(target)[:200],
        changes=changes or {},
        ip_address=_client_ip(request),
    )


def save_changes(request, target, changes: dict):
    """Set validated `changes` on `target`, save it and audit the update: what every app's
    update service does for records that have no rules of their own on a change."""
    for name, value in changes.items():
        setattr(target, name, value)
    target.save()
    audit(request, "updated", target, changes=changes)
    return target


def _project_id_of(target) -> int | None:
    if target._meta.model_name == "project":
        return target.pk
    project_id = getattr(target, "project_id", None)
    return project_id if isinstance(project_id, int) else None


def _client_ip(request) -> str | None:
    if request is None:
        return None
    return client_ip_address(getattr(request, "_request", request))
