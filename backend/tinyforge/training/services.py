"""Creating, cancelling and resuming training runs. The train job (training/jobs.py,
`train_run(run_id, attempt)`) does the work; it is enqueued on commit."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction
from rest_framework import serializers

from tinyforge.core import storage
from tinyforge.core.audit import audit
from tinyforge.core.errors import Conflict
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.errors import TinyforgeError
from tinyforge.training import lifecycle
from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun

TRAIN_JOB = "tinyforge.training.jobs.train_run"


def job_id_for(run: TrainingRun) -> str:
    return f"train-run-{run.pk}-attempt-{run.attempt}"


def resolve_config(*, base_model: str, method: str, config: dict) -> dict:
    """The engine's full config for a run: `config` holds an optional "preset" plus the
    hyperparameters the user changed. Checked by TrainConfig itself, so anything the engine
    would refuse is a 400 naming the field (config.<name>) before a job exists."""
    from dataclasses import fields

    from tinyforge.ml.config import PRESETS, TrainConfig

    config = dict(config or {})
    preset = config.pop("preset", "balanced")
    known = {f.name for f in fields(TrainConfig)} - {"base_model", "method"}
    errors: dict[str, list[str]] = {}
    if preset not in PRESETS:
        errors["config.preset"] = [f"Unknown preset; choose one of {', '.join(PRESETS)}."]
    for name in config:
        if name in ("base_model", "method"):
            errors[f"config.{name}"] = [f"Set {name} on the run, not inside config."]
        elif name not in known:
            errors[f"config.{name}"] = ["Unknown hyperparameter."]
    base_problem = base_model_problem(base_model)
    if base_problem:
        errors["base_model"] = [base_problem]
    if errors:
        raise serializers.ValidationError(errors)
    try:
        resolved = TrainConfig.from_preset(preset, base_model=base_model, method=method, **config)
    except TinyforgeError as exc:
        raise serializers.ValidationError(_config_field_errors(str(exc), known | {"method"})) from None
    return resolved.to_dict()


def _config_field_errors(message: str, names: set[str]) -> dict[str, list[str]]:
    """TrainConfig's "invalid training config: a must be ...; b must be ..." as field errors."""
    errors: dict[str, list[str]] = {}
    for problem in message.removeprefix("invalid training config: ").split("; "):
        name = problem.split(" ", 1)[0]
        key = "method" if name == "method" else f"config.{name}" if name in names else "config"
        errors.setdefault(key, []).append(problem)
    return errors


def base_model_problem(base_model: str) -> str | None:
    """Why a base model name cannot be trained from, without loading it (None when it can)."""
    from tinyforge.ml.models import PRESETS

    name = (base_model or "").strip()
    if name in PRESETS:
        return None
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")):
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            return f"{name} is not a model folder on the workers (no config.json)."
        if path.resolve().is_relative_to(Path(settings.TINYFORGE_DATA_DIR).resolve()):
            # Other teams' runs live there: a folder base model must be outside the data directory.
            return "A base model folder cannot be inside the platform's data directory."
        return None
    if name.count("/") == 1 and all(name.split("/")):
        return None  # a Hugging Face id: downloaded by the worker
    return f"Unknown base model: give a preset ({', '.join(PRESETS)}), a model folder path, or a Hugging Face id."


@transaction.atomic
def create_run(request, *, project, name: str, dataset_version, base_model: str, method: str, config: dict,
               validation_version=None) -> TrainingRun:
    run = TrainingRun.all_teams.create(
        project=project, name=name, dataset_version=dataset_version, validation_version=validation_version,
        base_model=base_model, method=method, config=config, created_by=getattr(request, "user", None),
    )
    run.job_id = job_id_for(run)
    run.save(update_fields=["job_id"])
    record_event(project_id=project.pk, run_id=run.pk, attempt=run.attempt, source="platform",
                 message=f"queued: {method} fine-tune of {base_model} on {dataset_version}")
    audit(request, "created", run, changes={"base_model": base_model, "method": method})
    enqueue("train", TRAIN_JOB, run.pk, run.attempt, job_id=run.job_id)
    return run


def cancel_run(request, run: TrainingRun) -> TrainingRun:
    status = lifecycle.request_cancel(run.pk)
    if status == RunStatus.CANCELLED and run.status == RunStatus.CANCELLED:
        return run  # cancelling twice changes nothing
    message = "cancelled before it started" if status == RunStatus.CANCELLED else "cancel requested; stopping after a checkpoint"
    record_event(project_id=run.project_id, run_id=run.pk, attempt=run.attempt, source="platform", message=message)
    audit(request, "cancelled", run)
    run.refresh_from_db()
    return run


@transaction.atomic
def resume_run(request, run: TrainingRun, checkpoint: Checkpoint | None) -> TrainingRun:
    if checkpoint is not None and checkpoint.run_id != run.pk:
        raise Conflict("That checkpoint belongs to another run.")
    if checkpoint is None:
        checkpoint = run.checkpoints.order_by("-step").first()
    if checkpoint is None:
        raise Conflict("This run has no checkpoint to resume from; start a new run instead.")
    lifecycle.requeue_for_resume(run.pk, checkpoint_id=checkpoint.pk)
    run.refresh_from_db()
    run.job_id = job_id_for(run)
    run.save(update_fields=["job_id"])
    record_event(project_id=run.project_id, run_id=run.pk, attempt=run.attempt, source="platform",
                 message=f"attempt {run.attempt} queued, resuming from step {checkpoint.step}")
    audit(request, "resumed", run, changes={"attempt": run.attempt, "checkpoint_step": checkpoint.step})
    enqueue("train", TRAIN_JOB, run.pk, run.attempt, job_id=run.job_id)
    return run


def delete_run(request, run: TrainingRun) -> None:
    if not run.is_finished:
        raise Conflict(f"The run is {run.status}; cancel it before deleting it.")
    audit(request, "deleted", run, changes={"name": run.name})
    key = storage.run_key(run.project_id, run.pk)
    run.delete()
    transaction.on_commit(lambda: storage.delete(key))
