"""Creating, cancelling and resuming training runs. The train job (training/jobs.py,
`train_run(run_id, attempt)`) does the work; it is enqueued on commit."""

from __future__ import annotations

from django.db import transaction

from tinyforge.core import storage
from tinyforge.core.audit import audit
from tinyforge.core.errors import Conflict
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.training import lifecycle
from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun

TRAIN_JOB = "tinyforge.training.jobs.train_run"


def job_id_for(run: TrainingRun) -> str:
    return f"train-run-{run.pk}-attempt-{run.attempt}"


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
