"""Records that cut across the apps: the event log (run, ingest, deploy and export log lines in
one table, so the Logs page tails them all with one cursor), the audit log, and the shape every
tracked job's record shares (TrackedJob)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tinyforge.core.tenancy import TeamOwnedModel


def tracked_status(choices: type[models.TextChoices], default: str) -> models.CharField:
    """The `status` field of a TrackedJob subclass: its own statuses, indexed (the reconciler and
    the dashboards filter on it)."""
    return models.CharField(max_length=16, choices=choices.choices, default=default, db_index=True)


class TrackedJob(models.Model):
    """A record that a background job works on: a training run, a dataset version, a deployment,
    an export, an evaluation. Its status changes only through `core.lifecycle.transition`, its job
    is found again in Redis by `job_id`, and `core.reconcile` requeues it when that job vanished or
    fails it when its heartbeat went stale (see core/reconcile.py to register a kind).

    Subclasses declare `status = tracked_status(TheirStatus, TheirStatus.FIRST)` and
    `event_links()`.
    """

    status = models.CharField(max_length=16, db_index=True)
    job_id = models.CharField(max_length=64, blank=True)
    attempt = models.PositiveIntegerField(default=1, help_text="1 for the first try; resume adds one")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def event_links(self) -> dict:
        """What an event about this record carries (core.events.record_event's keyword arguments
        besides the message): its project and the link to the record."""
        raise NotImplementedError(f"{type(self).__name__} must say how its events link to it")


class EventLevel(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class Event(TeamOwnedModel):
    """One log line about a project's work. Its integer id is the tail cursor (?after=<id>).

    Exactly what it concerns is given by the optional links: a training run (training.RunEvent
    is the view of these), a dataset version being ingested, a deployment or an export.
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    level = models.CharField(max_length=8, choices=EventLevel.choices, default=EventLevel.INFO)
    # Who wrote it: "trainer", "worker", "ingest", "validator", "deploy", "export", "serving", "platform"...
    source = models.CharField(max_length=32, default="platform")
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    run = models.ForeignKey("training.TrainingRun", null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    attempt = models.PositiveIntegerField(null=True, blank=True)
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    export = models.ForeignKey("deployments.Export", null=True, blank=True, on_delete=models.CASCADE, related_name="events")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "id"], name="event_project_cursor"),
            models.Index(fields=["run", "id"], name="event_run_cursor"),
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.source}: {self.message[:80]}"


class AuditEvent(TeamOwnedModel):
    """Who did what to which object, when. Written by services, never edited."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="audit_events")
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_token = models.ForeignKey(
        "accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # created, updated, deleted, started, cancelled, resumed, deployed, undeployed, exported,
    # revoked, invited, joined, role_changed, removed, logged_in...
    action = models.CharField(max_length=32, db_index=True)
    target_type = models.CharField(max_length=64, db_index=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    team_path = "team"

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_type} {self.target_repr}"
