"""Deployments (a run's model behind the inference service) and exports (files to take away)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from tinyforge.core.models import EventSubject, TrackedJob, event_links_to, tracked_status
from tinyforge.core.tenancy import TeamOwnedModel
from tinyforge.serving.precision import PRECISIONS
from tinyforge.training.models import TrainingRun


class Runtime(models.TextChoices):
    PYTORCH = "pytorch", "PyTorch"
    ONNX = "onnx", "ONNX Runtime"
    LLAMA_CPP = "llama.cpp", "llama.cpp (GGUF)"


class GgufType(models.TextChoices):
    F16 = "f16", "f16 (as trained)"
    Q8_0 = "q8_0", "q8_0 (8-bit)"
    Q4_K_M = "q4_k_m", "q4_k_m (4.5-bit)"


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
    events = EventSubject("deployment", kind="deployment", label="Deployments")
    checkpoint = models.ForeignKey(
        "training.Checkpoint", null=True, blank=True, on_delete=models.RESTRICT, related_name="deployments",
        help_text="Empty: the run's final model",
    )
    runtime = models.CharField(max_length=16, choices=Runtime.choices, default=Runtime.PYTORCH)
    merge_adapter = models.BooleanField(default=False)
    gguf_type = models.CharField(
        max_length=8, choices=GgufType.choices, default=GgufType.F16,
        help_text="llama.cpp runtime only: the GGUF it serves. f16 serves a LoRA run as its adapter on the base's "
                  "f16 GGUF, shared with the other deployments of that base (unless merge_adapter); q8_0 and q4_k_m "
                  "serve the model merged and quantized, verified against PyTorch within the export's quality budget")
    precision = models.CharField(
        max_length=16, choices=[(p, p) for p in PRECISIONS], default="auto",
        help_text="Weight precision the user asked for (PyTorch runtime): auto picks from the inference service's "
                  "CPU or GPU (bfloat16 where native, else int8 where the CPU has its kernels, else float16 where it has "
                  "F16C, each only if it keeps the quality budget, else float32)")
    serving_precision = models.CharField(max_length=16, blank=True,
                                         help_text="What the inference service serves it in, once loaded")
    precision_reason = models.CharField(max_length=1000, blank=True,
                                        help_text="Why: the CPU's features, int8's measured quality, a fallback")
    precision_quality = models.JSONField(
        null=True, blank=True, help_text="int8's numbers against float32 at load (token_agreement, heldout_loss_change)")
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
        return {"project_id": self.project_id, **event_links_to(Deployment, self.pk)}


class ExportFormat(models.TextChoices):
    HF = "hf", "Hugging Face folder (adapter or full)"
    HF_MERGED = "hf_merged", "Hugging Face folder, adapter merged"
    ONNX = "onnx", "ONNX"
    GGUF = "gguf", "GGUF (llama.cpp, Ollama, LM Studio)"
    GGUF_LORA = "gguf_lora", "GGUF LoRA adapter (llama.cpp --lora, Ollama ADAPTER)"
    BUNDLE = "bundle", "Standalone inference bundle"


class Quantize(models.TextChoices):
    NONE = "none", "None"
    INT8 = "int8", "int8 (dynamic)"
    Q8_0 = "q8_0", "GGUF q8_0 (8-bit)"
    Q4_K_M = "q4_k_m", "GGUF q4_k_m (4.5-bit)"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Export(TeamOwnedModel, TrackedJob):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="exports")
    run = models.ForeignKey("training.TrainingRun", on_delete=models.CASCADE, related_name="exports")
    events = EventSubject("export", kind="export", label="Exports")
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
        # Its lines are its run's too (the run page's log shows the export's progress).
        return {"project_id": self.project_id, **event_links_to(Export, self.pk, parent=(TrainingRun, self.run_id))}


class CompletionSource(models.TextChoices):
    API = "api", "The OpenAI-compatible API (an API token)"
    PLAYGROUND = "playground", "The Playground"
    PLATFORM = "platform", "The platform's own jobs (a teacher, a judge)"


class Completion(TeamOwnedModel):
    """One answer the inference service returned, under the id its caller got, kept so that
    feedback on that id can be resolved to what was asked, what was answered and which model
    (deployment, run, checkpoint) answered. Kept per team up to COMPLETIONS_KEPT_PER_TEAM, the
    oldest without feedback dropped first (deployments/feedback.py)."""

    id = models.CharField(primary_key=True, max_length=64, help_text="The id the API returned (chatcmpl-…, cmpl-…)")
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="completions")
    # The answer outlives its deployment (feedback is data): what answered is copied onto the row.
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="completions")
    run = models.ForeignKey("training.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="completions")
    checkpoint = models.ForeignKey("training.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="completions")
    model = models.CharField(max_length=100, help_text="The model id the caller asked for (the deployment's name)")
    kind = models.CharField(max_length=16, choices=[("chat", "Chat completion"), ("completion", "Text completion")])
    prompt = models.JSONField(help_text="Chat: the messages [{role, content}]; text completion: the prompt string")
    answer = models.TextField()
    finish_reason = models.CharField(max_length=16)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=16, choices=CompletionSource.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    team_path = "team"

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "created_at"], name="completion_team_created")]

    def __str__(self) -> str:
        return self.id


class FeedbackKind(models.TextChoices):
    RATING = "rating", "Thumbs up or down"
    CORRECTION = "correction", "What the answer should have been"
    CHOICE = "choice", "The better of two answers to the same prompt (or a tie)"


class Feedback(TeamOwnedModel):
    """A person's judgement of a kept completion: a rating, a correction, or a choice between it
    and another completion of the same prompt. Becomes preference data (deployments/feedback.py)."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="feedback")
    completion = models.ForeignKey(Completion, on_delete=models.CASCADE, related_name="feedback")
    kind = models.CharField(max_length=16, choices=FeedbackKind.choices)
    rating = models.BooleanField(null=True, blank=True, help_text="Ratings: true is thumbs up")
    correction = models.TextField(blank=True, help_text="Corrections: the answer it should have given")
    compared_with = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE,
                                      related_name="compared_in", help_text="Choices: the other completion")
    preferred = models.ForeignKey(Completion, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                  help_text="Choices: the better of the two; empty for a tie")
    comment = models.CharField(max_length=2000, blank=True)
    source = models.CharField(max_length=16, choices=CompletionSource.choices)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    token = models.ForeignKey("accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    team_path = "team"

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(name="feedback_fields_match_kind", condition=(
                models.Q(kind="rating", rating__isnull=False, correction="", compared_with__isnull=True)
                | models.Q(kind="correction", rating__isnull=True, compared_with__isnull=True) & ~models.Q(correction="")
                | models.Q(kind="choice", rating__isnull=True, correction="", compared_with__isnull=False))),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.completion_id}"

    @staticmethod
    def on_deployment(deployment_id: int) -> models.Q:
        """Feedback on a deployment's answers: on one of its answers, or a choice with one of its
        answers on either side (the Playground's compare mode sends the left answer as `completion`,
        and a choice between two deployments belongs to both)."""
        return models.Q(completion__deployment_id=deployment_id) | models.Q(compared_with__deployment_id=deployment_id)
