"""Records that cut across the apps: the event log (run, ingest, deploy and export log lines in
one table, so the Logs page tails them all with one cursor), the audit log, and the shape every
tracked job's record shares (TrackedJob)."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
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

    Subclasses declare `status = tracked_status(TheirStatus, TheirStatus.FIRST)`, `event_links()`
    and, when their events name them, `events = EventSubject(...)`.
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

    What it concerns is its subject: a training run (training.RunEvent is the view of those), a
    dataset version being ingested, a deployment, an export... any model that declares
    `events = EventSubject(...)`, so the table names no app. A record whose lines also belong in
    another one's log names that one as the parent (an export's lines show in its run's log).
    """

    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    level = models.CharField(max_length=8, choices=EventLevel.choices, default=EventLevel.INFO)
    # Who wrote it: "trainer", "worker", "ingest", "validator", "deploy", "export", "serving", "platform"...
    source = models.CharField(max_length=32, default="platform")
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    attempt = models.PositiveIntegerField(null=True, blank=True)
    subject_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    subject_id = models.PositiveBigIntegerField(null=True, blank=True)
    subject = GenericForeignKey("subject_type", "subject_id")
    parent_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    parent_id = models.PositiveBigIntegerField(null=True, blank=True)
    parent = GenericForeignKey("parent_type", "parent_id")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["project", "id"], name="event_project_cursor"),
            models.Index(fields=["subject_type", "subject_id", "id"], name="event_subject_cursor"),
            models.Index(fields=["parent_type", "parent_id", "id"], name="event_parent_cursor"),
        ]

    def __str__(self) -> str:
        return f"[{self.level}] {self.source}: {self.message[:80]}"

    def linked_id(self, model: type[models.Model]) -> int | None:
        """The id of the record of `model` this line is in the log of (its subject or its parent)."""
        kind = ContentType.objects.get_for_model(model).pk
        if self.subject_type_id == kind:
            return self.subject_id
        if self.parent_type_id == kind:
            return self.parent_id
        return None


class EventSubject(GenericRelation):
    """Declared on a model whose work is logged (`events = EventSubject("run", "run", "Training
    runs")`): the record's `events`, deleted with it; `name` is how the events API filters on it
    (?run=<id>) and names it in each line; `kind` and `label` are its choice in the ?kind= filter."""

    def __init__(self, name: str, kind: str, label: str):
        super().__init__(Event, content_type_field="subject_type", object_id_field="subject_id",
                         related_query_name=name)
        self.subject_name, self.kind, self.kind_label = name, kind, label


def event_subjects() -> list[EventSubject]:
    """Every EventSubject the installed apps declare, in INSTALLED_APPS order."""
    return [field for model in apps.get_models() if not model._meta.proxy
            for field in model._meta.private_fields if isinstance(field, EventSubject)]


def event_links_to(model: type[models.Model], pk: int,
                   parent: tuple[type[models.Model], int] | None = None) -> dict:
    """The columns that make an event about record `pk` of `model` (and part of `parent`'s log):
    what `TrackedJob.event_links` returns besides the project, and what `record_event` takes."""
    links = {"subject_type": ContentType.objects.get_for_model(model), "subject_id": pk}
    if parent is not None:
        links.update(parent_type=ContentType.objects.get_for_model(parent[0]), parent_id=parent[1])
    return links


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
