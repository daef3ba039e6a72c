"""OpenAI's fine-tuning jobs API over training runs: POST /v1/fine_tuning/jobs starts a LoRA run
on the base model `model`; GET lists and shows them with their events and checkpoints; cancel
cancels (see openai_api.py)."""

from __future__ import annotations

from django.db import transaction
from django.db.models.fields.json import KeyTransform
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.response import Response

from tinyforge.core.access import require_role
from tinyforge.core.events import in_log_of
from tinyforge.core.roles import Role
from tinyforge.datasets.models import DatasetVersion, DatasetVersionStatus
from tinyforge.errors import InvalidInput
from tinyforge.training import services
from tinyforge.training.models import Checkpoint, RunEvent, RunMetric, RunStatus, TrainingRun
from tinyforge.training.openai_api import LEVELS, OpenAIView, _limit, _page, _row_id, _unix
from tinyforge.training.serializers import OPENAI_METHODS, OpenAIJobSerializer


def _default_learning_rate(method: str, objective: str = "sft") -> float:
    from tinyforge.ml.config import TrainConfig

    return TrainConfig(method=method, objective=objective).learning_rate


def job_status(run: TrainingRun) -> str:
    if run.status == RunStatus.QUEUED and run.dataset_version.status != DatasetVersionStatus.READY:
        return "validating_files"
    return run.status  # queued, running, succeeded, failed, cancelled: OpenAI's words too


def fine_tuned_model(run: TrainingRun) -> str:
    base = run.base_model.rstrip("/").rsplit("/", 1)[-1]
    return f"ft:{base}:{run.project.team.slug}:{run.name}:{run.pk}"


def job_object(run: TrainingRun) -> dict:
    config = run.config
    epochs = config.get("epochs")
    hyperparameters = {
        # An integer in OpenAI's job object; the engine allows fractions of an epoch.
        "n_epochs": int(epochs) if isinstance(epochs, float) and epochs.is_integer() else epochs,
        "batch_size": config.get("batch_size"),
        "learning_rate_multiplier": round(config["learning_rate"] / _default_learning_rate(
            run.method, config.get("objective", "sft")), 6) if config.get("learning_rate") else None,
    }
    method_type = "dpo" if config.get("objective") == "dpo" else "supervised"
    method_hyperparameters = {**hyperparameters, "beta": config.get("beta")} if method_type == "dpo" else hyperparameters
    eta = run.eta_seconds if run.status == RunStatus.RUNNING else None
    error = None
    if run.status == RunStatus.FAILED:
        error = {"code": "training_failed", "message": run.error or "the run failed", "param": None}
    return {
        "id": f"ftjob-{run.pk}", "object": "fine_tuning.job", "created_at": _unix(run.created_at),
        "finished_at": _unix(run.finished_at), "model": run.base_model,
        "fine_tuned_model": fine_tuned_model(run) if run.status == RunStatus.SUCCEEDED else None,
        "organization_id": run.project.team.slug, "status": job_status(run),
        "training_file": f"file-{run.dataset_version_id}",
        "validation_file": f"file-{run.validation_version_id}" if run.validation_version_id else None,
        "hyperparameters": hyperparameters,
        "method": {"type": method_type, method_type: {"hyperparameters": method_hyperparameters}},
        "result_files": [], "trained_tokens": run.summary_metrics.get("train_tokens"),
        "error": error, "seed": config.get("seed"), "user_provided_suffix": run.name,
        "estimated_finish": _unix(run.heartbeat_at) + int(eta) if eta and run.heartbeat_at else None,
        "integrations": [], "metadata": run.metadata,
    }


def _filter_by_metadata(runs, params):
    """OpenAI's list filter: metadata[key]=value (several: all must match), or metadata=null for
    the jobs created without metadata."""
    for n, (name, value) in enumerate(params.items()):
        if name == "metadata":
            if value != "null":
                raise exceptions.ValidationError(
                    {"metadata": ["Filter with metadata[key]=value, or metadata=null for jobs without metadata."]})
            runs = runs.filter(metadata__isnull=True)
        elif name.startswith("metadata[") and name.endswith("]"):
            # The key as one name, even when it holds "__" (which a keyword lookup would split).
            runs = runs.alias(**{f"_metadata_{n}": KeyTransform(name[len("metadata["):-1], "metadata")}).filter(
                **{f"_metadata_{n}": value})
    return runs


# Our field errors under the names of the OpenAI request they came from.
OPENAI_NAMES = {"base_model": "model", "config.epochs": "hyperparameters.n_epochs",
                "config.batch_size": "hyperparameters.batch_size",
                "config.learning_rate": "hyperparameters.learning_rate_multiplier", "config.seed": "seed",
                "config.beta": "hyperparameters.beta"}


class JobsView(OpenAIView):
    @extend_schema(exclude=True)
    def get(self, request):
        runs = TrainingRun.objects.for_teams([self.team_id()]).select_related(
            "dataset_version", "project__team").order_by("-pk")
        if request.query_params.get("after"):
            runs = runs.filter(pk__lt=_row_id(request.query_params["after"], "ftjob-"))
        runs = _filter_by_metadata(runs, request.query_params)
        return Response(_page(runs, _limit(request), job_object))

    @extend_schema(exclude=True)
    def post(self, request):
        request_body = OpenAIJobSerializer(data=request.data if isinstance(request.data, dict) else {})
        request_body.is_valid(raise_exception=True)
        body = request_body.validated_data
        hyper, suffix = body["hyperparameters"], body["suffix"]
        team_id = self.team_id()
        versions = DatasetVersion.objects.for_teams([team_id]).select_related("dataset__project")
        training = versions.filter(pk=_row_id(body["training_file"], "file-")).first()
        if training is None:
            raise exceptions.ValidationError({"training_file": [f"No file {body['training_file']} in this team."]})
        validation = None
        if body.get("validation_file"):
            validation = versions.filter(pk=_row_id(body["validation_file"], "file-"),
                                         dataset__project=training.dataset.project).first()
            if validation is None:
                raise exceptions.ValidationError({"validation_file": [f"No file {body['validation_file']} in this project."]})
        project = training.dataset.project
        require_role(request, project.team_id, Role.MEMBER, action="start fine-tuning jobs")
        objective = OPENAI_METHODS[body["method"]["type"]]
        config = {"epochs": hyper.get("n_epochs"), "batch_size": hyper.get("batch_size"), "seed": body.get("seed"),
                  "beta": hyper.get("beta"), "objective": objective if objective != "sft" else None}
        multiplier = hyper.get("learning_rate_multiplier")
        if multiplier is not None:
            config["learning_rate"] = _default_learning_rate("lora", objective) * multiplier
        config = {k: v for k, v in config.items() if v is not None}
        try:
            resolved = services.resolve_config(base_model=body["model"], method="lora", config=config,
                                               team_id=project.team_id)
        except InvalidInput as exc:
            raise exceptions.ValidationError(
                {OPENAI_NAMES.get(key, key): value for key, value in exc.fields.items()}) from None
        with transaction.atomic():
            run = services.create_run(request, project=project, name=suffix or f"openai-{training.pk}",
                                      dataset_version=training, validation_version=validation,
                                      base_model=body["model"], method="lora", config=resolved,
                                      metadata=body.get("metadata"))
        run = TrainingRun.all_teams.select_related("dataset_version", "project__team").get(pk=run.pk)
        return Response(job_object(run))


class JobView(OpenAIView):
    @extend_schema(exclude=True)
    def get(self, request, job_id: str):
        return Response(job_object(self.run(job_id)))


class CancelJobView(OpenAIView):
    @extend_schema(exclude=True)
    def post(self, request, job_id: str):
        run = self.run(job_id)
        require_role(request, run.project.team_id, Role.MEMBER, action="cancel fine-tuning jobs")
        services.cancel_run(request, run)
        return Response(job_object(self.run(job_id)))


class JobEventsView(OpenAIView):
    @extend_schema(exclude=True)
    def get(self, request, job_id: str):
        run = self.run(job_id)
        events = RunEvent.all_teams.filter(in_log_of(TrainingRun, run.pk)).order_by("-id")
        if request.query_params.get("after"):
            events = events.filter(id__lt=_row_id(request.query_params["after"], "ftevent-"))
        return Response(_page(events, _limit(request), lambda e: {
            "id": f"ftevent-{e.pk}", "object": "fine_tuning.job.event", "created_at": _unix(e.created_at),
            "level": LEVELS.get(e.level, "info"), "message": e.message, "data": e.data or {}, "type": "message",
        }))


class JobCheckpointsView(OpenAIView):
    @extend_schema(exclude=True)
    def get(self, request, job_id: str):
        run = self.run(job_id)
        checkpoints = Checkpoint.all_teams.filter(run=run).order_by("-step")
        if request.query_params.get("after"):
            after = request.query_params["after"]
            step = Checkpoint.all_teams.filter(run=run, pk=_row_id(after, "ftckpt-")).values_list("step", flat=True).first()
            if step is None:
                raise exceptions.NotFound(f"No checkpoint {after} in fine-tuning job ftjob-{run.pk}.")
            checkpoints = checkpoints.filter(step__lt=step)  # one checkpoint per step and run
        losses = dict(RunMetric.all_teams.filter(run=run, name="loss").order_by("attempt", "id").values_list("step", "value"))
        model = fine_tuned_model(run)
        return Response(_page(checkpoints, _limit(request, 10), lambda c: {
            "id": f"ftckpt-{c.pk}", "object": "fine_tuning.job.checkpoint", "created_at": _unix(c.created_at),
            "fine_tuned_model_checkpoint": f"{model}:ckpt-step-{c.step}", "fine_tuning_job_id": f"ftjob-{run.pk}",
            "step_number": c.step, "is_best": c.is_best,
            "metrics": {"step": c.step, "train_loss": losses.get(c.step), "valid_loss": c.eval_loss},
        }))
