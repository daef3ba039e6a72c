"""Every status change of a deployment or an export (see tinyforge.core.lifecycle).

Deployment: pending -> ready | failed; ready -> failed (its files vanished); pending | ready |
failed -> stopped (undeploy); stopped | failed -> pending (deploy again).
Export: pending -> running -> succeeded | failed; pending -> failed.
"""

from __future__ import annotations

from django.utils import timezone

from tinyforge.core.lifecycle import InvalidTransition, transition, update_if
from tinyforge.deployments.models import Deployment, DeploymentStatus as D, Export, ExportStatus as E

__all__ = ["InvalidTransition", "mark_deployment_ready", "mark_deployment_failed", "mark_deployment_stopped",
           "mark_deployment_pending", "mark_export_running", "mark_export_succeeded", "mark_export_failed",
           "record_export_progress", "record_export_heartbeat"]


def mark_deployment_ready(deployment_id: int, *, model_path: str) -> None:
    transition(Deployment, deployment_id, to=D.READY, allowed_from=[D.PENDING],
               model_path=model_path, ready_at=timezone.now(), error="")


def mark_deployment_failed(deployment_id: int, error: str, *, only_if: dict | None = None) -> None:
    transition(Deployment, deployment_id, to=D.FAILED, allowed_from=[D.PENDING, D.READY], only_if=only_if,
               error=error)


def mark_deployment_stopped(deployment_id: int) -> None:
    transition(Deployment, deployment_id, to=D.STOPPED, allowed_from=[D.PENDING, D.READY, D.FAILED],
               stopped_at=timezone.now())


def mark_deployment_pending(deployment_id: int, *, job_id: str = "") -> None:
    """Deploy again after a stop or a failure. The model folder is forgotten: the inference service
    must wait for the new deploy job's folder, not load the old one again."""
    transition(Deployment, deployment_id, to=D.PENDING, allowed_from=[D.STOPPED, D.FAILED],
               error="", stopped_at=None, ready_at=None, model_path="", **({"job_id": job_id} if job_id else {}))


def mark_export_running(export_id: int, *, job_id: str = "") -> None:
    now = timezone.now()
    transition(Export, export_id, to=E.RUNNING, allowed_from=[E.PENDING], started_at=now, heartbeat_at=now,
               **({"job_id": job_id} if job_id else {}))


def mark_export_succeeded(export_id: int, *, storage_key: str, size_bytes: int, verification: dict) -> None:
    transition(Export, export_id, to=E.SUCCEEDED, allowed_from=[E.RUNNING], storage_key=storage_key,
               size_bytes=size_bytes, verification=verification, progress=1.0, finished_at=timezone.now())


def mark_export_failed(export_id: int, error: str, *, verification: dict | None = None,
                       only_if: dict | None = None) -> None:
    changes = {"error": error, "finished_at": timezone.now()}
    if verification is not None:
        changes["verification"] = verification
    transition(Export, export_id, to=E.FAILED, allowed_from=[E.PENDING, E.RUNNING], only_if=only_if, **changes)


def record_export_progress(export_id: int, progress: float) -> bool:
    return update_if(Export, export_id, statuses=[E.RUNNING], progress=max(0.0, min(1.0, progress)),
                     heartbeat_at=timezone.now())


def record_export_heartbeat(export_id: int) -> bool:
    return update_if(Export, export_id, statuses=[E.RUNNING], heartbeat_at=timezone.now())

