"""The deploy and export jobs (`deploy(deployment_id)`, `export(export_id)`), run by RQ workers
from the `deploy` queue.

The deploy job prepares the folder the inference service loads: the chosen checkpoint (or the run's best,
or its final model) written as a clean model folder by the export code (`export_model`: LoRA
adapter as it is, or merged into its base when asked; ONNX for the ONNX Runtime runtime), under
the deployment's storage folder, one subfolder per deploy job so a redeploy never rewrites files
a running server reads. It then records the folder on the pending deployment; the inference
service (tinyforge.deployments.inference) picks it up within seconds and marks it ready once it
answers, or failed with the reason.

A duplicate or late delivery (the deployment moved on, or a newer job replaced this one) does
nothing.

The reconciler (tinyforge.core.reconcile, registered in DeploymentsConfig.ready()) requeues a
deploy or export job that vanished from Redis and fails an export whose heartbeat went stale.

The export job claims a pending export (a conditional update, so a duplicate delivery does
nothing), writes its zip with `export_model` under the export's storage folder while a thread
beats its heartbeat, and records size and verification report; any failure (verification, a full
disk, an architecture ONNX does not cover) removes what it wrote and marks the export failed with
the reason, so only a verified, complete file is ever offered for download.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.text import slugify
from rq import get_current_job

from tinyforge.core import storage
from tinyforge.core.events import record_event
from tinyforge.core.heartbeat import Heartbeat
from tinyforge.core.lifecycle import InvalidTransition, update_if
from tinyforge.core.models import EventLevel
from tinyforge.deployments import lifecycle
from tinyforge.deployments.models import Deployment, DeploymentStatus, Export, ExportFormat, Quantize, Runtime
from tinyforge.errors import TinyforgeError

if TYPE_CHECKING:
    from tinyforge.exports import ExportResult

logger = logging.getLogger(__name__)

SOURCE = "deploy"
# Called with (deployment, say) once a deployment's model folder is ready, by apps that register
# in their AppConfig.ready() (the MLflow Model Registry); they must not raise.
DEPLOYED_HOOKS: list = []


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
    for hook in DEPLOYED_HOOKS:
        hook(deployment, say)
    return key


def source_folder(deployment: Deployment | Export) -> Path:
    """The model folder a deployment serves or an export writes: its checkpoint, else the run's
    final model."""
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
                             "choose another checkpoint or train again")
    return folder


def prepare_model_folder(deployment: Deployment, say) -> str:
    """Write the served folder and return its storage key; older folders of the deployment go."""
    from tinyforge.exports import export_model
    from tinyforge.ml.export import is_adapter_folder

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
    elif deployment.runtime == Runtime.LLAMA_CPP:
        _prepare_llama_cpp_folder(deployment, source, target, say)
        say(f"model folder ready for llama.cpp ({deployment.gguf_type}), verified against PyTorch")
        _remove_older_folders(target)
        return key
    else:
        merge = deployment.merge_adapter and is_adapter_folder(source)
        if deployment.merge_adapter and not merge:
            say("the model has full weights: there is no adapter to merge")
        say(f"preparing {source.name}" + (" with the LoRA adapter merged into its base" if merge else ""))
        result = export_model(source, "hf", target, merge=merge, progress=say)
    _remove_older_folders(target)
    say(f"model folder ready: {result.size_bytes / 1e6:.1f} MB")
    return key


def _remove_older_folders(target: Path) -> None:
    for old in target.parent.iterdir():
        if old != target and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _prepare_llama_cpp_folder(deployment: Deployment, source: Path, target: Path, say) -> None:
    """The served folder of a llama.cpp deployment: its manifest and tokenizer; the GGUFs it names are
    cached beside the run (per checkpoint and type, so a redeploy or a second deployment of the same
    model converts nothing and shares its llama-server) and, for a LoRA's base, with the other bases."""
    from tinyforge.ml.export import is_adapter_folder
    from tinyforge.ml.quality_budget import QualityBudget
    from tinyforge.serving.llama_cpp_runtime import write_llama_cpp_folder

    merge = deployment.merge_adapter and is_adapter_folder(source)
    where = f"step-{deployment.checkpoint.step}" if deployment.checkpoint else "final"
    cache = storage.path(f"{storage.run_key(deployment.project_id, deployment.run_id)}/gguf/{where}"
                         + ("-merged" if merge else ""))
    heldout, _ = _heldout(deployment)
    say(f"preparing {source.name} for llama.cpp as GGUF {deployment.gguf_type}"
        + (" with the LoRA adapter merged into its base" if merge else ""))
    write_llama_cpp_folder(
        source, target, cache=cache, base_cache=storage.path(storage.gguf_base_folder_key()),
        gguf_type=deployment.gguf_type, merge=merge, heldout_data=heldout, progress=say,
        budget=QualityBudget(max_loss_increase=settings.EXPORT_Q4_K_M_MAX_LOSS_INCREASE
                             if deployment.gguf_type == "q4_k_m" else settings.EXPORT_MAX_LOSS_INCREASE,
                             min_token_agreement=settings.EXPORT_MIN_TOKEN_AGREEMENT))


def _say(deployment: Deployment):
    def say(message: str, level: str = EventLevel.INFO) -> None:
        record_event(**deployment.event_links(), source=SOURCE,
                     message=message, level=level)

    return say


# --- exports -----------------------------------------------------------------------------------

EXPORT_SOURCE = "export"
# A bundle's runtime as the export code names it.
BUNDLE_RUNTIMES = {Runtime.PYTORCH: "torch", Runtime.ONNX: "onnxruntime", Runtime.LLAMA_CPP: "llama.cpp"}


class ExportAbandoned(Exception):
    """The export was deleted, or failed by the reconciler, while its job worked on it."""


def export(export_id: int) -> str:
    """The export job: write the export's zip (verified, for ONNX) under its storage folder and
    record its size and verification report. Returns what happened."""
    record = Export.all_teams.select_related("run__validation_version__dataset", "checkpoint").filter(
        pk=export_id).first()
    if record is None:
        return "gone"
    try:
        lifecycle.mark_export_running(export_id)
    except InvalidTransition:
        return "skipped"  # a duplicate or late delivery: another job has it, or it is finished
    say = _export_say(record)
    folder_key = storage.export_folder_key(record.project_id, record.pk)
    storage.delete(folder_key)  # whatever an earlier, killed try left
    job = get_current_job()
    say(f"{record.get_format_display()} export started on worker "
        f"{job.worker_name if job and job.worker_name else 'in-process'}")
    try:
        with Heartbeat(lambda: lifecycle.record_export_heartbeat(export_id), f"heartbeat-export-{export_id}"):
            key, result = write_export(record, ExportProgress(record, say))
    except ExportAbandoned:
        storage.delete(folder_key)
        return "abandoned"
    except Exception as exc:
        storage.delete(folder_key)  # never a partial file that looks downloadable
        return _fail_export(record, exc, say)
    try:
        lifecycle.mark_export_succeeded(export_id, storage_key=key, size_bytes=result.size_bytes,
                                        verification=result.verification or {})
    except (InvalidTransition, Export.DoesNotExist):
        storage.delete(folder_key)
        return "abandoned"
    say(f"export ready: {storage.path(key).name}, {result.size_bytes / 1e6:.1f} MB, {len(result.files)} files")
    if result.warning:
        say(result.warning, EventLevel.WARNING)
    return "succeeded"


def write_export(record: Export, progress) -> tuple[str, ExportResult]:
    """Export the record's model into the zip its storage key names; returns (key, result)."""
    from tinyforge.exports import export_model
    from tinyforge.ml.quality_budget import QualityBudget

    source = source_folder(record)
    key = storage.export_key(record.project_id, record.pk, export_filename(record))
    verified = (record.format in (ExportFormat.ONNX, ExportFormat.GGUF, ExportFormat.GGUF_LORA)
                or record.runtime in (Runtime.ONNX, Runtime.LLAMA_CPP))
    heldout, heldout_name = _heldout(record) if verified else (None, "")
    progress.expect(record, source)
    result = export_model(
        source, "hf" if record.format == ExportFormat.HF_MERGED else record.format, storage.path(key),
        merge=record.format == ExportFormat.HF_MERGED,
        quantize=None if record.quantize == Quantize.NONE else record.quantize,
        runtime=BUNDLE_RUNTIMES[record.runtime] if record.format == ExportFormat.BUNDLE else None,
        heldout_data=heldout, progress=progress, keep_anyway=record.keep_anyway,
        budget=QualityBudget(max_loss_increase=settings.EXPORT_Q4_K_M_MAX_LOSS_INCREASE
                             if record.quantize == Quantize.Q4_K_M else settings.EXPORT_MAX_LOSS_INCREASE,
                             min_token_agreement=settings.EXPORT_MIN_TOKEN_AGREEMENT),
    )
    if result.verification:
        # The report names the file it read; users know it as their validation set.
        result.verification["heldout_source"] = heldout_name or result.verification.get("heldout_source")
    if result.warning:
        # Kept below its budget: the downloaded file's name says so too, not only the dashboard.
        worse = key.removesuffix(".zip") + "-BELOW-QUALITY-BUDGET.zip"
        storage.path(key).rename(storage.path(worse))
        key = worse
    return key, result


def export_filename(record: Export) -> str:
    """`<run>-step-<n>-<format>[-onnx|-llama-cpp][-int8|-f16|-q8_0|-q4_k_m].zip`: says what is inside once
    downloaded."""
    parts = [slugify(record.run.name) or f"run-{record.run_id}",
             f"step-{record.checkpoint.step}" if record.checkpoint else "final", record.format.replace("_", "-")]
    # runtime is empty unless the export is a bundle (the serializer sees to it).
    if record.runtime in (Runtime.ONNX, Runtime.LLAMA_CPP):
        parts.append({Runtime.ONNX: "onnx", Runtime.LLAMA_CPP: "llama-cpp"}[record.runtime])
    if record.quantize != Quantize.NONE:
        parts.append(record.quantize)
    elif record.format == ExportFormat.GGUF or record.runtime == Runtime.LLAMA_CPP:
        parts.append("f16")
    return "-".join(parts) + ".zip"


def _heldout(record: Export | Deployment) -> tuple[str | None, str]:
    """The run's validation set for the held-out loss of ONNX and GGUF exports (and of a llama.cpp
    deployment's GGUF), when it has one."""
    version = record.run.validation_version
    if version is None or not version.storage_key or not storage.exists(version.storage_key):
        return None, ""
    return str(storage.path(version.storage_key)), f"validation set {version.dataset.name} v{version.number}"


class ExportProgress:
    """export_model's progress callback: each message is an event, a step of the progress bar and a
    heartbeat. It stops the export (ExportAbandoned) once the record has moved on."""

    def __init__(self, record: Export, say):
        self.export_id, self.say = record.pk, say
        self.seen, self.expected = 0, 4

    def expect(self, record: Export, source: Path) -> None:
        """How many messages export_model sends for this export (tinyforge.exports): model
        steps, the serving code of a bundle, then "writing the zip archive" and "wrote ...";
        progress is the share seen, so it only approximates the time spent."""
        from tinyforge.ml.export import is_adapter_folder

        if record.format in (ExportFormat.ONNX, ExportFormat.GGUF) or record.runtime in (Runtime.ONNX,
                                                                                          Runtime.LLAMA_CPP):
            model_steps = 5 + (2 if record.quantize != Quantize.NONE else 0)
        elif record.format == ExportFormat.GGUF_LORA:
            model_steps = 6
        elif record.format == ExportFormat.HF and is_adapter_folder(source):
            model_steps = 1
        else:
            model_steps = 2
        self.expected = model_steps + (1 if record.format == ExportFormat.BUNDLE else 0) + 2

    def __call__(self, message: str) -> None:
        self.seen += 1
        if not lifecycle.record_export_progress(self.export_id, min(0.95, self.seen / self.expected)):
            raise ExportAbandoned(self.export_id)
        self.say(message)


def _fail_export(record: Export, exc: Exception, say) -> str:
    from tinyforge.ml.quality_budget import VerificationFailed

    if isinstance(exc, TinyforgeError):
        message = str(exc)
    else:
        logger.exception("export %s failed", record.pk)
        message = f"{type(exc).__name__}: {exc}"
    verification = exc.verification if isinstance(exc, VerificationFailed) else None
    try:
        lifecycle.mark_export_failed(record.pk, message, verification=verification)
    except (InvalidTransition, Export.DoesNotExist):
        return "abandoned"
    say(f"export failed: {message}", EventLevel.ERROR, data={"verification": verification} if verification else None)
    return "failed"


def _export_say(record: Export, source: str = EXPORT_SOURCE):
    def say(message: str, level: str = EventLevel.INFO, data: dict | None = None) -> None:
        record_event(**record.event_links(), source=source,
                     message=message, level=level, data=data)

    return say

