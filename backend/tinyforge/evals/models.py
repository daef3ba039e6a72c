"""Eval sets and their immutable versions, evaluations (a set answered by targets, scored and
judged), their per-row results, and a project's gate before deploying."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tinyforge.core.models import TrackedJob, tracked_status
from tinyforge.core.tenancy import TeamOwnedModel


class EvalSet(TeamOwnedModel):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="eval_sets")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # An eval created through the OpenAI Evals API: its data_source_config, testing_criteria and
    # metadata as given, and the scorers they map to (null: created otherwise).
    openai_eval = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    team_path = "project__team"

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="evalset_unique_name_per_project")]

    def __str__(self) -> str:
        return self.name


class EvalSource(models.TextChoices):
    UPLOAD = "upload", "Uploaded file (JSONL or CSV)"
    ROWS = "rows", "Rows in the request"
    RUN_VALIDATION = "run_validation", "A run's validation rows"
    DATASET_VERSION = "dataset_version", "Rows picked in a dataset version"
    GENERAL = "general", "The shipped general set"
    PLAYGROUND = "playground", "A Playground conversation added to the previous version's rows"


class EvalSetVersion(TeamOwnedModel):
    """Never changes: its rows are a JSONL file in storage named by its sha256."""

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    source_kind = models.CharField(max_length=16, choices=EvalSource.choices)
    source = models.JSONField(default=dict, blank=True, help_text="Where the rows came from (file name, run, dataset version)")
    storage_key = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField()
    tags = models.JSONField(default=list, blank=True, help_text="The tags its rows carry")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    team_path = "eval_set__project__team"

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["eval_set", "number"], name="evalsetversion_unique_number")]

    def __str__(self) -> str:
        return f"{self.eval_set} v{self.number}"


class EvalStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Purpose(models.TextChoices):
    MANUAL = "manual", "Started by a person"
    RUN = "run", "A run's automatic evaluation on its validation rows"
    GATE = "gate", "A run checked against the project's gate"


class Evaluation(TeamOwnedModel, TrackedJob):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="evaluations")
    name = models.CharField(max_length=100, blank=True)
    eval_set_version = models.ForeignKey(EvalSetVersion, on_delete=models.RESTRICT, related_name="evaluations")
    # [{"kind": "run"|"base"|"deployment"|"endpoint", "label": ..., "run", "checkpoint", "deployment",
    #   "base_url", "model"}]: what answers, in order (the first is the baseline of comparisons).
    targets = models.JSONField()
    scorers = models.JSONField(default=list, blank=True)  # [{"name": ..., "pattern"?, "schema"?}]
    # {"mode", "prompt", "rubric", "max_tokens", "target": {"kind": "deployment"|"endpoint", ...}} or null
    judge = models.JSONField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(default=128)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.MANUAL)
    run = models.ForeignKey("training.TrainingRun", null=True, blank=True, on_delete=models.CASCADE,
                            related_name="evaluations", help_text="The run an automatic or gate evaluation is about")
    status = tracked_status(EvalStatus, EvalStatus.QUEUED)
    rows_done = models.PositiveIntegerField(default=0)
    row_count = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True, help_text="Aggregates per target with 95% intervals, pairwise rates")
    # Gate evaluations: whether the run passes, and why not.
    gate_passed = models.BooleanField(null=True, blank=True)
    gate_reason = models.TextField(blank=True)
    metadata = models.JSONField(null=True, blank=True, help_text="Set through the OpenAI Evals API")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    team_path = "project__team"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or f"evaluation {self.pk}"

    def event_links(self) -> dict:
        # Not the run's: its log (and the OpenAI job's events) end with the training's own last line.
        return {"project_id": self.project_id, "data": {"evaluation": self.pk}}


class EvalResult(TeamOwnedModel):
    """One row of an evaluation: the row, and every target's answer, scores and judge verdict."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    index = models.PositiveIntegerField(help_text="Position of the row in the eval set version")
    input = models.JSONField()
    reference = models.TextField(null=True, blank=True)
    must_include = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)
    tags_text = models.CharField(max_length=1000, blank=True, help_text="|tag|tag|, for filtering on every database")
    # {label: {"answer", "error", "scores", "passed", "judge", "prompt_tokens", "completion_tokens", "latency_ms"}}
    answers = models.JSONField(default=dict)
    # [{"first", "second", "winner", "orders", "raw", "reasoning"}]
    pairwise = models.JSONField(default=list, blank=True)
    regression = models.BooleanField(default=False, help_text="An earlier target passed a score a later one fails")
    disagreement = models.BooleanField(default=False,
                                       help_text="The targets do not all pass or all fail a score, or the judge's two "
                                                 "orders disagreed")

    team_path = "evaluation__project__team"

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["evaluation", "index"], name="evalresult_unique_row")]


class Gate(TeamOwnedModel):
    """A project's "deploy only if": the run's score on the gate's eval set reaches `threshold`, and
    is no worse than the deployed model's by more than `max_drop`. The score is a scorer's mean, a
    pointwise judge's mean (1-5), or a pairwise judge's win rate of the run against the deployed
    model (a tie counts half). Rows the judge left unscored count neither way; they are reported."""

    project = models.OneToOneField("projects.Project", on_delete=models.CASCADE, related_name="gate")
    eval_set = models.ForeignKey(EvalSet, on_delete=models.RESTRICT, related_name="gates",
                                 help_text="Its latest version is used")
    scorer = models.JSONField(null=True, blank=True,
                              help_text='The scorer that decides, e.g. {"name": "must_include"} (null: the judge decides)')
    # {"mode", "prompt", "rubric", "max_tokens", "target"} as an evaluation's judge, or null
    judge = models.JSONField(null=True, blank=True, help_text="The judge that decides (null: the scorer decides)")
    threshold = models.FloatField(help_text="The run's mean score (pairwise judge: its win rate) must reach this")
    max_drop = models.FloatField(null=True, blank=True,
                                 help_text="No worse than the deployed model's mean by more than this (empty: not compared)")
    enabled = models.BooleanField(default=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    team_path = "project__team"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"gate of {self.project}"
