"""Deployments and exports. The jobs (deployments/jobs.py: `deploy(deployment_id)`,
`export(export_id)`) prepare the files; they are enqueued on commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.db import transaction

from tinyforge.core import storage
from tinyforge.core.audit import audit, save_changes
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.deployments import lifecycle
from tinyforge.deployments.models import Deployment, DeploymentStatus, Export, GgufType, Runtime
from tinyforge.errors import Conflict, InvalidInput
from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun

DEPLOY_JOB = "tinyforge.deployments.jobs.deploy"
EXPORT_JOB = "tinyforge.deployments.jobs.export"


def deploy_job_id(deployment: Deployment) -> str:
    """A new id for each deploy: the job writes a folder of its own, so a redeploy never rewrites
    files a running server reads."""
    return f"deploy-{deployment.pk}-{uuid.uuid4().hex[:8]}"


def export_job_id(export: Export) -> str:
    return f"export-{export.pk}"


def _require_model(run: TrainingRun, checkpoint: Checkpoint | None, what: str) -> None:
    """A run can be deployed or exported once it has a model: its final output or a checkpoint."""
    if checkpoint is not None:
        return
    if run.status == RunStatus.SUCCEEDED:
        return
    if run.checkpoints.exists() and run.status in (RunStatus.CANCELLED, RunStatus.FAILED):
        return
    raise Conflict(f"Run {run.name} is {run.status} and has no checkpoint; there is nothing to {what}.")


def default_checkpoint(run: TrainingRun) -> Checkpoint | None:
    """The best checkpoint, else the latest; None for a succeeded run means its final model."""
    return run.checkpoints.filter(is_best=True).order_by("-step").first() or (
        None if run.status == RunStatus.SUCCEEDED else run.checkpoints.order_by("-step").first()
    )


def _require_deployable(run: TrainingRun, checkpoint: Checkpoint | None) -> None:
    """A failed run is not served, even from a checkpoint it saved before failing: a deployment
    answers users, and the run's own answer to what went wrong is to resume it. A cancelled run
    with a checkpoint was stopped on purpose and serves what it learned so far."""
    if run.status == RunStatus.FAILED:
        if run.checkpoints.exists():
            advice = "resume it from its last checkpoint and deploy it once it succeeds"
        else:
            advice = "it saved no checkpoint to resume from, so start a new run"
        raise Conflict(f"Run {run.name} failed, and a failed run cannot be deployed: {advice}, "
                       "or deploy a run that succeeded or was cancelled.")
    _require_model(run, checkpoint, "deploy")


# (request, run, *, override, reason) -> None, raising to refuse: checks other apps register
# (the evals app's gate) without this module naming them.
DEPLOY_CHECKS: list[Callable[..., None]] = []


def register_deploy_check(check: Callable[..., None]) -> None:
    if check not in DEPLOY_CHECKS:
        DEPLOY_CHECKS.append(check)


def _require_free_name(team_id: int, name: str, *, other_than: Deployment | None = None) -> None:
    """A deployment's name is the model id clients call, so it is unique in its team."""
    taken = Deployment.all_teams.filter(team_id=team_id, name=name)
    if other_than is not None:
        taken = taken.exclude(pk=other_than.pk)
    if taken.exists():
        raise InvalidInput({"name": [f"The team already has a deployment named {name}."]})


def _require_runtime_installed(runtime: str, gguf_type: str) -> None:
    """llama.cpp is built separately (`tinyforge llama-cpp install`): without it the deploy job could
    only fail, so say now what is missing and how to build it."""
    if runtime != Runtime.LLAMA_CPP:
        return
    from tinyforge.llama_cpp import LlamaCppMissing, converter_script, find_tool

    try:
        converter_script()
        converter_script("convert_lora_to_gguf.py")
        find_tool("llama-server")
        if gguf_type != GgufType.F16:
            find_tool("llama-quantize")
    except LlamaCppMissing as exc:
        raise InvalidInput({"runtime": [f"The llama.cpp runtime is not available on this platform: {exc}."]}) from None


@transaction.atomic
def create_deployment(request, *, run: TrainingRun, name: str, checkpoint: Checkpoint | None, runtime: str,
                      merge_adapter: bool, override_gate: bool = False, override_reason: str = "",
                      precision: str = "auto", gguf_type: str = GgufType.F16) -> Deployment:
    _require_runtime_installed(runtime, gguf_type)
    _require_deployable(run, checkpoint)
    for check in DEPLOY_CHECKS:
        check(request, run, override=override_gate, reason=override_reason)
    _require_free_name(run.project.team_id, name)
    deployment = Deployment.all_teams.create(
        team_id=run.project.team_id, project_id=run.project_id, run=run, name=name,
        checkpoint=checkpoint or default_checkpoint(run), runtime=runtime, merge_adapter=merge_adapter,
        precision=precision, gguf_type=gguf_type,
        created_by=getattr(request, "user", None),
    )
    _enqueue_deploy(deployment)
    audit(request, "deployed", deployment, changes={"run": run.pk, "runtime": runtime,
                                                    **({"gguf_type": gguf_type} if runtime == Runtime.LLAMA_CPP else {})})
    return deployment


def _enqueue_deploy(deployment: Deployment) -> None:
    deployment.job_id = deploy_job_id(deployment)
    Deployment.all_teams.filter(pk=deployment.pk).update(job_id=deployment.job_id)
    record_event(**deployment.event_links(), source="platform",
                 message=f"deployment {deployment.name} queued ({deployment.runtime})")
    enqueue("deploy", DEPLOY_JOB, deployment.pk, job_id=deployment.job_id)


def update_deployment(request, deployment: Deployment, changes: dict) -> Deployment:
    if changes.get("name"):
        _require_free_name(deployment.team_id, changes["name"], other_than=deployment)
    if "precision" in changes and changes["precision"] != deployment.precision:
        # The registry lists the precision with the model, so the inference service reloads it.
        record_event(**deployment.event_links(), source="platform",
                     message=f"precision set to {changes['precision']}: the inference service reloads the model")
        changes = {**changes, "serving_precision": "", "precision_reason": "", "precision_quality": None}
    return save_changes(request, deployment, changes)


def stop_deployment(request, deployment: Deployment) -> Deployment:
    if deployment.status != DeploymentStatus.STOPPED:
        lifecycle.mark_deployment_stopped(deployment.pk)
        record_event(**deployment.event_links(), source="platform",
                     message=f"deployment {deployment.name} stopped")
        audit(request, "undeployed", deployment)
    deployment.refresh_from_db()
    return deployment


@transaction.atomic
def restart_deployment(request, deployment: Deployment) -> Deployment:
    lifecycle.mark_deployment_pending(deployment.pk)
    _enqueue_deploy(deployment)
    audit(request, "deployed", deployment, changes={"restart": True})
    deployment.refresh_from_db()
    return deployment


def delete_deployment(request, deployment: Deployment) -> None:
    audit(request, "deleted", deployment, changes={"name": deployment.name})
    key = storage.deployment_key(deployment.project_id, deployment.pk)
    deployment.delete()
    transaction.on_commit(lambda: storage.delete(key))


@transaction.atomic
def create_export(request, *, run: TrainingRun, checkpoint: Checkpoint | None, format: str, quantize: str,
                  runtime: str = "", keep_anyway: bool = False) -> Export:
    """Queue an export of `checkpoint`, else the run's best (else final) model. The serializer has
    checked the combination of format, quantize and runtime."""
    _require_model(run, checkpoint, "export")
    export = Export.all_teams.create(
        project_id=run.project_id, run=run, checkpoint=checkpoint or default_checkpoint(run), format=format,
        quantize=quantize, runtime=runtime, keep_anyway=keep_anyway, created_by=getattr(request, "user", None),
    )
    export.job_id = export_job_id(export)
    export.save(update_fields=["job_id"])
    what = f"step {export.checkpoint.step}" if export.checkpoint else "the final model"
    record_event(**export.event_links(), source="platform",
                 message=f"{export.get_format_display()} export of {run.name} ({what}) queued")
    audit(request, "exported", export, changes={"run": run.pk, "format": format, "quantize": quantize,
                                                 "runtime": runtime, "keep_anyway": keep_anyway})
    enqueue("deploy", EXPORT_JOB, export.pk, job_id=export.job_id)
    return export


def delete_export(request, export: Export) -> None:
    audit(request, "deleted", export)
    key = storage.export_folder_key(export.project_id, export.pk)
    export.delete()
    transaction.on_commit(lambda: storage.delete(key))
