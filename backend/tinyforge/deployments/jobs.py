"""The deploy job: `deploy(deployment_id)`, run by an RQ worker from the `deploy` queue.

It prepares the folder the inference service loads: the chosen checkpoint (or the run's best,
or its final model) written as a clean model folder by the export code (`export_model`: LoRA
adapter as it is, or merged into its base when asked; ONNX for the ONNX Runtime runtime), under
the deployment's storage folder, one subfolder per deploy job so a redeploy never rewrites files
a running server reads. It then records the folder on the pending deployment; the inference
service (tinyforge.deployments.inference) picks it up within seconds and marks it ready once it
answers, or failed with the reason.

A duplicate or late delivery (the deployment moved on, or a newer job replaced this one) does
nothing.
"""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import django_rq
import redis
from django.utils import timezone
from rq import get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from tinyforge.core import storage
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.core.lifecycle import InvalidTransition, update_if
from tinyforge.core.models import EventLevel
from tinyforge.deployments import lifecycle
from tinyforge.deployments.models import Deployment, DeploymentStatus, Runtime
from tinyforge.errors import TinyforgeError

logger = logging.getLogger(__name__)

SOURCE = "deploy"


def deploy(deployment_id: int) -> str:
    deployment = Deployment.all_teams.select_related("run", "checkpoint").filter(pk=deployment_id).first()
    if deployment is None:
        return "gone"
    job = get_current_job()
    replaced = job is not None and deployment.job_id and job.id != deployment.job_id
    if deployment.status != DeploymentStatus.PENDING or replaced or deployment.model_path:
        return "skipped"  # moved on, superseded by a newer deploy, or already prepared
    say = _say(deployment)
    try:
        key = prepare_model_folder(deployment, say)
    except Exception as exc:
        if not isinstance(exc, TinyforgeError):
            logger.exception("deployment %s: preparing the model failed", deployment_id)
        message = f"preparing the model failed: {exc}" if isinstance(exc, TinyforgeError) else (
            f"preparing the model failed: {type(exc).__name__}: {exc}")
        try:
            lifecycle.mark_deployment_failed(deployment_id, message)
        except InvalidTransition:
            return "skipped"
        say(message, EventLevel.ERROR)
        return "failed"
    if not update_if(Deployment, deployment_id, statuses=[DeploymentStatus.PENDING], model_path=key):
        storage.delete(key)  # stopped meanwhile: nothing will load it
        return "skipped"
    say("model prepared; the inference service loads it within seconds")
    return key


def source_folder(deployment: Deployment) -> Path:
    """The model folder the deployment serves: its checkpoint, else the run's final model."""
    run = deployment.run
    if deployment.checkpoint is not None:
        what, key = f"checkpoint at step {deployment.checkpoint.step}", deployment.checkpoint.storage_key
    elif run.output_key:
        what, key = "final model", run.output_key
    else:
        raise TinyforgeError(f"run {run.name} has no checkpoint and no final model")
    folder = storage.path(key)
    if not folder.is_dir():
        raise TinyforgeError(f"the {what} of run {run.name} is missing from the data directory ({key}); "
                             "deploy another checkpoint or train again")
    return folder


def prepare_model_folder(deployment: Deployment, say) -> str:
    """Write the served folder and return its storage key; older folders of the deployment go."""
    from tinyforge.ml.export import export_model, is_adapter_folder

    source = source_folder(deployment)
    parent_key = storage.deployment_key(deployment.project_id, deployment.pk)
    key = f"{parent_key}/{deployment.job_id or 'model'}"
    target = storage.path(key)
    if target.exists():  # a previous try of this same job
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if deployment.runtime == Runtime.ONNX:
        say(f"exporting {source.name} to ONNX (merged, verified against PyTorch)")
        result = export_model(source, "onnx", target, progress=say)
    else:
        merge = deployment.merge_adapter and is_adapter_folder(source)
        if deployment.merge_adapter and not merge:
            say("the model has full weights: there is no adapter to merge")
        say(f"preparing {source.name}" + (" with the LoRA adapter merged into its base" if merge else ""))
        result = export_model(source, "hf", target, merge=merge, progress=say)
    for old in target.parent.iterdir():
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    say(f"model folder ready: {result.size_bytes / 1e6:.1f} MB")
    return key


def _say(deployment: Deployment):
    def say(message: str, level: str = EventLevel.INFO) -> None:
        record_event(project_id=deployment.project_id, deployment_id=deployment.pk, source=SOURCE,
                     message=message, level=level)

    return say


# A pending deployment younger than this may simply not have been enqueued yet (on commit).
ENQUEUE_GRACE = timedelta(seconds=60)


def reconcile_deployments() -> dict[str, list[int]]:
    """Periodic (tinyforge.core.worker): a pending deployment whose deploy job vanished from Redis
    (restarted without its data, or unreachable when the deployment was created) is enqueued again
    under the same job id; one whose job failed without recording why (its worker killed, the job
    timed out) is marked failed with an event."""
    from tinyforge.deployments.services import DEPLOY_JOB

    done: dict[str, list[int]] = {"requeued": [], "failed": []}
    waiting = Deployment.all_teams.filter(status=DeploymentStatus.PENDING, model_path="",
                                          updated_at__lt=timezone.now() - ENQUEUE_GRACE).exclude(job_id="")
    try:
        connection = django_rq.get_connection("deploy")
        for deployment in waiting:
            try:
                job = Job.fetch(deployment.job_id, connection=connection)
            except NoSuchJobError:
                enqueue("deploy", DEPLOY_JOB, deployment.pk, job_id=deployment.job_id)
                done["requeued"].append(deployment.pk)
                continue
            if job.get_status() in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                message = (f"the deploy job {job.id} ended without finishing ({job.get_status()}): its worker was "
                           "stopped or it ran out of time; start the deployment again")
                try:
                    lifecycle.mark_deployment_failed(deployment.pk, message)
                except InvalidTransition:
                    continue
                _say(deployment)(message, EventLevel.ERROR)
                done["failed"].append(deployment.pk)
    except redis.RedisError as exc:
        logger.warning("could not check the deploy jobs in Redis: %s", exc)
    if any(done.values()):
        logger.info("reconciled deployments: %s", done)
    return done
