"""OpenAI's fine-tuning API over the platform's runs, so existing tools (the official `openai`
client, scripts written for OpenAI) automate training unchanged:

    POST /v1/files                                   purpose "fine-tune": a JSONL file -> a dataset version
    GET  /v1/files, /v1/files/{id}, /v1/files/{id}/content
    POST /v1/fine_tuning/jobs                        -> a training run (LoRA on the base model `model`)
    GET  /v1/fine_tuning/jobs, /v1/fine_tuning/jobs/{id}
    POST /v1/fine_tuning/jobs/{id}/cancel
    GET  /v1/fine_tuning/jobs/{id}/events, /v1/fine_tuning/jobs/{id}/checkpoints

Authenticated by API tokens only (`Authorization: Bearer`), and scoped to the token's team: files
go to the team's project named by the `OpenAI-Project` header (an id or a name), else to a project
"OpenAI API" created on first use. Ids carry OpenAI's prefixes over our row ids (file-12,
ftjob-34, ftevent-56, ftckpt-78); lists are newest first (files: `order`) with an `after` cursor
and `has_more`, like OpenAI's, so the client's auto-pagination walks them. Errors use the
platform's one error body, whose `error.message` the client shows.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.fields.json import KeyTransform
from django.http import FileResponse
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, parsers
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from tinyforge.accounts.authentication import BearerTokenAuthentication
from tinyforge.core import storage
from tinyforge.core.access import require_role, token_of
from tinyforge.core.api import parse_id
from tinyforge.core.query import query_int
from tinyforge.core.parsers import JSONParser
from tinyforge.core.roles import Role
from tinyforge.datasets.models import Dataset, DatasetVersion, DatasetVersionStatus, SourceKind
from tinyforge.datasets.services import create_dataset, create_version, save_uploads
from tinyforge.errors import InvalidInput
from tinyforge.projects.models import Project
from tinyforge.projects.services import create_project
from tinyforge.training import services
from tinyforge.training.models import Checkpoint, RunEvent, RunMetric, RunStatus, TrainingRun

DEFAULT_PROJECT = "OpenAI API"
FILES_DATASET = "OpenAI files"
LEVELS = {"debug": "info", "info": "info", "warning": "warn", "error": "error"}


def _unix(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _row_id(value: str, prefix: str) -> int:
    """ftjob-12 -> 12; anything else is simply not found."""
    try:
        if not value.startswith(prefix):
            raise exceptions.ValidationError("no prefix")
        return parse_id(value.removeprefix(prefix))
    except exceptions.ValidationError:
        raise exceptions.NotFound(f"No such object: {value}") from None


def _limit(request, default: int = 20, most: int = 100) -> int:
    return query_int(request, "limit", default=default, minimum=1, maximum=most)


def _page(rows, limit: int, render) -> dict:
    rows = list(rows[: limit + 1])
    data = [render(row) for row in rows[:limit]]
    page = {"object": "list", "data": data, "has_more": len(rows) > limit}
    if data:
        page["first_id"], page["last_id"] = data[0]["id"], data[-1]["id"]
    return page


class IgnoreAcceptHeader(BaseContentNegotiation):
    """Answers in the view's first renderer (JSON) whatever the Accept header asks for."""

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class OpenAIView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    parser_classes = [JSONParser]

    def team_id(self) -> int:
        token = token_of(self.request)
        if token is None:
            raise exceptions.NotAuthenticated("The OpenAI-compatible API needs an API token (Authorization: Bearer).")
        return token.team_id

    def project(self) -> Project:
        team_id = self.team_id()
        wanted = (self.request.headers.get("OpenAI-Project") or "").strip()
        projects = Project.objects.for_teams([team_id])
        if wanted:
            try:
                found = projects.filter(pk=parse_id(wanted)).first()
            except exceptions.ValidationError:  # not an id: a project's name
                found = projects.filter(name=wanted).first()
            if found is None:
                raise exceptions.ValidationError({"OpenAI-Project": [f"No project {wanted!r} in this token's team."]})
            return found
        found = projects.filter(name=DEFAULT_PROJECT).order_by("pk").first()
        if found is None:
            require_role(self.request, team_id, Role.MEMBER, action="create the OpenAI API project")
            found = create_project(self.request, team=token_of(self.request).team, name=DEFAULT_PROJECT,
                                   description="Files and fine-tuning jobs created through the OpenAI API")
        return found

    def run(self, job_id: str) -> TrainingRun:
        run = TrainingRun.objects.for_teams([self.team_id()]).select_related(
            "dataset_version", "validation_version", "project__team").filter(pk=_row_id(job_id, "ftjob-")).first()
        if run is None:
            raise exceptions.NotFound(f"No fine-tuning job {job_id}.")
        return run


# ---- files

def file_object(version: DatasetVersion) -> dict:
    files = version.source_config.get("files") or [{}]
    status = {DatasetVersionStatus.READY: "processed", DatasetVersionStatus.FAILED: "error"}.get(version.status, "uploaded")
    return {
        "id": f"file-{version.pk}", "object": "file", "bytes": files[0].get("size") or version.size_bytes or 0,
        "created_at": _unix(version.created_at), "filename": files[0].get("name") or f"version-{version.number}.jsonl",
        "purpose": "fine-tune", "status": status, "status_details": version.error or None, "expires_at": None,
    }


class FilesView(OpenAIView):
    parser_classes = [parsers.MultiPartParser]

    @extend_schema(exclude=True)
    def get(self, request):
        order = request.query_params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise exceptions.ValidationError({"order": ["Must be 'asc' or 'desc'."]})
        versions = DatasetVersion.objects.for_teams([self.team_id()]).filter(
            source_kind=SourceKind.OPENAI_FILE).order_by("pk" if order == "asc" else "-pk")
        if request.query_params.get("purpose") not in (None, "", "fine-tune"):
            versions = versions.none()
        if request.query_params.get("after"):
            after = _row_id(request.query_params["after"], "file-")
            versions = versions.filter(pk__gt=after) if order == "asc" else versions.filter(pk__lt=after)
        # OpenAI's limits for files: 1 to 10,000, all of them by default.
        return Response(_page(versions, _limit(request, 10_000, most=10_000), file_object))

    @extend_schema(exclude=True)
    def post(self, request):
        purpose = request.data.get("purpose")
        upload = request.FILES.get("file")
        problems = {}
        if purpose != "fine-tune":
            problems["purpose"] = [f"Only purpose 'fine-tune' is supported here, not {purpose!r}."]
        if upload is None:
            problems["file"] = ["Send the JSONL training file as the multipart field 'file'."]
        if problems:
            raise exceptions.ValidationError(problems)
        project = self.project()
        require_role(request, project.team_id, Role.MEMBER, action="upload files")
        dataset = Dataset.objects.for_teams([project.team_id]).filter(project=project, name=FILES_DATASET).first()
        if dataset is None:
            dataset = create_dataset(request, project=project, name=FILES_DATASET,
                                     description="Training files uploaded through POST /v1/files")
        saved = save_uploads(project.pk, [upload])
        try:
            version = create_version(request, dataset=dataset, source_kind=SourceKind.OPENAI_FILE,
                                     source_config={"files": saved, "format": "jsonl"}, note=saved[0]["name"])
        except BaseException:
            for item in saved:
                storage.delete(item["key"])
            raise
        return Response(file_object(version))


class FileView(OpenAIView):
    def version(self, file_id: str) -> DatasetVersion:
        version = DatasetVersion.objects.for_teams([self.team_id()]).filter(
            pk=_row_id(file_id, "file-"), source_kind=SourceKind.OPENAI_FILE).first()
        if version is None:
            raise exceptions.NotFound(f"No file {file_id}.")
        return version

    @extend_schema(exclude=True)
    def get(self, request, file_id: str):
        return Response(file_object(self.version(file_id)))


class FileContentView(FileView):
    # The client asks for application/binary; the content is the file as uploaded, and errors
    # are the usual JSON body whatever the Accept header said.
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(exclude=True)
    def get(self, request, file_id: str):
        version = self.version(file_id)
        upload = (version.source_config.get("files") or [{}])[0]
        if not upload.get("key"):
            raise exceptions.NotFound(f"File {file_id} has no uploaded content.")
        return FileResponse(storage.open_for_download(upload["key"]), content_type="application/octet-stream",
                            as_attachment=True, filename=upload.get("name") or f"{file_id}.jsonl")


# ---- fine-tuning jobs

def _default_learning_rate(method: str) -> float:
    from tinyforge.ml.config import TrainConfig

    return TrainConfig(method=method).learning_rate


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
        "learning_rate_multiplier": round(config["learning_rate"] / _default_learning_rate(run.method), 6)
        if config.get("learning_rate") else None,
    }
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
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        "result_files": [], "trained_tokens": run.summary_metrics.get("train_tokens"),
        "error": error, "seed": config.get("seed"), "user_provided_suffix": run.name,
        "estimated_finish": _unix(run.heartbeat_at) + int(eta) if eta and run.heartbeat_at else None,
        "integrations": [], "metadata": run.metadata,
    }


def _metadata_problem(value) -> str | None:
    """What is wrong with a job's metadata by OpenAI's rules: at most 16 pairs, string keys of up to
    64 characters, string values of up to 512."""
    if not isinstance(value, dict):
        return "Must be an object of string keys and string values."
    if len(value) > 16:
        return f"At most 16 keys, not {len(value)}."
    for key, item in value.items():
        if len(key) > 64:
            return f"The key {key[:20]!r}... is longer than 64 characters."
        if not isinstance(item, str):
            return f"The value of {key!r} must be a string."
        if len(item) > 512:
            return f"The value of {key!r} is longer than 512 characters."
    return None


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
                "config.learning_rate": "hyperparameters.learning_rate_multiplier", "config.seed": "seed"}


def _number(value, name: str, kind):
    if value in (None, "auto"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise exceptions.ValidationError({f"hyperparameters.{name}": [f"Must be 'auto' or a {kind.__name__}."]})
    return kind(value)


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
        body = request.data if isinstance(request.data, dict) else {}
        known = {"model", "training_file", "validation_file", "hyperparameters", "method", "suffix", "seed",
                 "metadata", "integrations"}
        problems = {key: ["Unknown field."] for key in body if key not in known}
        for name in ("model", "training_file"):
            if not isinstance(body.get(name), str) or not body.get(name):
                problems[name] = ["Required."]
        if body.get("integrations"):
            problems["integrations"] = ["Integrations are not supported."]
        method = body.get("method") or {"type": "supervised"}
        if not isinstance(method, dict) or method.get("type", "supervised") != "supervised":
            problems["method"] = ["Only the 'supervised' method is supported."]
        suffix = body.get("suffix") or ""
        if not isinstance(suffix, str) or len(suffix) > 64:
            problems["suffix"] = ["At most 64 characters."]
        if body.get("metadata") is not None and (problem := _metadata_problem(body["metadata"])):
            problems["metadata"] = [problem]
        if problems:
            raise exceptions.ValidationError(problems)
        hyper = body.get("hyperparameters") or (method.get("supervised") or {}).get("hyperparameters") or {}
        unknown = sorted(set(hyper) - {"n_epochs", "batch_size", "learning_rate_multiplier"})
        if unknown:
            raise exceptions.ValidationError({f"hyperparameters.{k}": ["Unknown hyperparameter."] for k in unknown})
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
        config = {"epochs": _number(hyper.get("n_epochs"), "n_epochs", int),
                  "batch_size": _number(hyper.get("batch_size"), "batch_size", int),
                  "seed": _number(body.get("seed"), "seed", int)}
        multiplier = _number(hyper.get("learning_rate_multiplier"), "learning_rate_multiplier", float)
        if multiplier is not None:
            config["learning_rate"] = _default_learning_rate("lora") * multiplier
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
        events = RunEvent.all_teams.filter(run=run).order_by("-id")
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


urlpatterns = [
    path("files", FilesView.as_view(), name="openai-files"),
    path("files/<str:file_id>", FileView.as_view(), name="openai-file"),
    path("files/<str:file_id>/content", FileContentView.as_view(), name="openai-file-content"),
    path("fine_tuning/jobs", JobsView.as_view(), name="openai-jobs"),
    path("fine_tuning/jobs/<str:job_id>", JobView.as_view(), name="openai-job"),
    path("fine_tuning/jobs/<str:job_id>/cancel", CancelJobView.as_view(), name="openai-job-cancel"),
    path("fine_tuning/jobs/<str:job_id>/events", JobEventsView.as_view(), name="openai-job-events"),
    path("fine_tuning/jobs/<str:job_id>/checkpoints", JobCheckpointsView.as_view(), name="openai-job-checkpoints"),
]
