"""Training runs, their log lines, metric points and checkpoints."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tinyforge.core.events import in_log_of
from tinyforge.core.models import Event, EventSubject, TrackedJob, event_links_to, tracked_status
from tinyforge.core.tenancy import TeamOwnedModel, TeamScopedQuerySet


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Method(models.TextChoices):
    LORA = "lora", "LoRA"
    FULL = "full", "Full fine-tune"


class TrainingRun(TeamOwnedModel, TrackedJob):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=100)
    dataset_version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.RESTRICT, related_name="runs")
    validation_version = models.ForeignKey(
        "datasets.DatasetVersion", null=True, blank=True, on_delete=models.RESTRICT, related_name="validation_runs"
    )
    base_model = models.CharField(max_length=500, help_text="A preset name, a Hugging Face id or a local folder")
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.LORA)
    # The engine's full training config (preset merged with the user's hyperparameters).
    config = models.JSONField(default=dict, blank=True)
    events = EventSubject("run", kind="run", label="Training runs")
    status = tracked_status(RunStatus, RunStatus.QUEUED)
    resumed_from = models.ForeignKey(
        "training.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The checkpoint the current attempt started from",
    )
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    output_key = models.CharField(max_length=500, blank=True, help_text="Storage key of the final model folder")
    summary_metrics = models.JSONField(default=dict, blank=True)
    eval_results = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(
        null=True, blank=True,
        help_text="Up to 16 string key-value pairs given through the OpenAI fine-tuning API (null: none given)",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat")]

    def __str__(self) -> str:
        return self.name

    def event_links(self) -> dict:
        return {"project_id": self.project_id, **event_links_to(TrainingRun, self.pk), "attempt": self.attempt}

    @property
    def is_finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)

    def best_checkpoint(self):
        return self.checkpoints.filter(is_best=True).order_by("-step").first()


class RunMetric(TeamOwnedModel):
    """One point of one curve: loss, eval_loss, learning_rate, grad_norm, tokens_per_second..."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    attempt = models.PositiveIntegerField(default=1)
    step = models.PositiveIntegerField()
    name = models.CharField(max_length=64)
    value = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    team_path = "run__project__team"

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "name", "step"], name="metric_run_name_step")]


class Checkpoint(TeamOwnedModel):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="checkpoints")
    attempt = models.PositiveIntegerField(default=1)
    step = models.PositiveIntegerField()
    storage_key = models.CharField(max_length=500)
    eval_loss = models.FloatField(null=True, blank=True)
    is_best = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    team_path = "run__project__team"

    class Meta:
        ordering = ["step"]
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="checkpoint_unique_step_per_run")]

    def __str__(self) -> str:
        return f"{self.run} step {self.step}"


class _RunEventsOnly(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(in_log_of(TrainingRun))


class RunEvent(Event):
    """The log lines of training runs: the events in a run's log (see core.events.in_log_of)."""

    all_teams = _RunEventsOnly()
    objects = _RunEventsOnly.from_queryset(TeamScopedQuerySet)()

    class Meta:
        proxy = True
        ordering = ["id"]
