"""Deployments (a run's model behind the inference service) and exports (files to take away)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from tinyforge.core.models import TrackedJob, tracked_status
from tinyforge.core.tenancy import TeamOwnedModel


class Runtime(models.TextChoices):
    PYTORCH = "pytorch", "PyTorch"
    ONNX = "onnx", "ONNX Runtime"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    STOPPED = "stopped", "Stopped"


# The name is the model id clients pass to the OpenAI API, so it must survive a URL and JSON.
model_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$",
    "Use letters, digits, '.', '_', ':' and '-', starting with a letter or digit (at most 100).",
)


class Deployment(TeamOwnedModel, TrackedJob):
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="deployments")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=100, validators=[model_id_validator], help_text="The OpenAI model id")
    run = models.ForeignKey("training.TrainingRun", on_delete=models.RESTRICT, related_name="deployments")
    checkpoint = models.ForeignKey(
        "training.Checkpoint", null=True, blank=True, on_delete=models.RESTRICT, related_name="deployments",
        help_text="Empty: the run's final model",
    )
    runtime = models.CharField(max_length=16, choices=Runtime.choices, default=Runtime.PYTORCH)
    merge_adapter = models.BooleanField(default=False)
    status = tracked_status(DeploymentStatus, DeploymentStatus.PENDING)
    model_path = models.CharField(
        max_length=1000, blank=True, help_text="Storage key of the folder the inference service loads"
    )
    # Copied from the inference service's metrics by a periodic job.
    request_count = models.BigIntegerField(default=0)
    error_count = models.BigIntegerField(default=0)
    tokens_in = models.BigIntegerField(default=0)
    tokens_out = models.BigIntegerField(default=0)
    latency_p50_ms = models.FloatField(null=True, blank=True)
    latency_p95_ms = models.FloatField(null=True, blank=True)
    own_memory_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="What this deployment adds: its adapter on a shared base, or its full weights"
    )
    shared_memory_bytes = models.BigIntegerField(
        null=True, blank=True,
        help_text="The runtime it runs on (shared base weights, KV cache), which other deployments on it share too",
    )
    stats_updated_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    team_path = "team"

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="deployment_unique_name_per_team")]

    def __str__(self) -> str:
        return self.name

    def event_links(self) -> dict:
        return {"project_id": self.project_id, "deployment_id": self.pk}


class ExportFormat(models.TextChoices):
    HF = "hf", "Hugging Face folder (adapter or full)"
    HF_MERGED = "hf_merged", "Hugging Face folder, adapter merged"
    ONNX = "onnx", "ONNX"
    BUNDLE = "bundle", "Standalone inference bundle"


class Quantize(models.TextChoices):
    NONE = "none", "None"
    INT8 = "int8", "int8 (dynamic)"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Export(TeamOwnedModel, TrackedJob):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="exports")
    run = models.ForeignKey("training.TrainingRun", on_delete=models.CASCADE, related_name="exports")
    checkpoint = models.ForeignKey(
        "training.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    quantize = models.CharField(max_length=8, choices=Quantize.choices, default=Quantize.NONE)
    runtime = models.CharField(max_length=16, choices=Runtime.choices, blank=True,
                               help_text="Bundles only: the runtime inside (empty for other formats)")
    keep_anyway = models.BooleanField(
        default=False, help_text="Quantized exports only: keep one that misses its quality budget (its verification "
                                 "then carries a warning) instead of failing")
    status = tracked_status(ExportStatus, ExportStatus.PENDING)
    storage_key = models.CharField(max_length=500, blank=True, help_text="The downloadable file (zip)")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    # The equality check: prompts compared, tokens agreeing, max logit difference, loss change.
    verification = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0, help_text="0..1")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_format_display()} of {self.run}"

    @property
    def quality_warning(self) -> str:
        """Set when a quantized model missed its quality budget and was kept anyway."""
        return (self.verification or {}).get("warning", "")

    def event_links(self) -> dict:
        return {"project_id": self.project_id, "export_id": self.pk, "run_id": self.run_id}
