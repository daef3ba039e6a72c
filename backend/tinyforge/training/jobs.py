"""The train job: `train_run(run_id, attempt)`, run by an RQ worker from the `train` queue.

It claims the attempt (queued -> running, a conditional update, so a duplicate delivery or a
run cancelled while queued does nothing), makes sure the dataset version is validated, calls
the engine (`tinyforge.ml.train.train`) with `RunRecorder` as its callback, and records the
outcome. The recorder turns the engine's progress into RunEvent log lines, RunMetric points,
progress/ETA and a heartbeat, written in batches at most every FLUSH_SECONDS, so a fast run costs
a few queries per second rather than a few per step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
import traceback
import warnings
from collections import deque
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import RestrictedError

from tinyforge.core import storage
from tinyforge.core.events import record_event
from tinyforge.core.heartbeat import Heartbeat
from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.core.models import Event, EventLevel
from tinyforge.errors import TinyforgeError
from tinyforge.ml.train import TrainerCallback
from tinyforge.training import base_models, lifecycle
from tinyforge.training.models import Checkpoint, RunMetric, TrainingRun
from tinyforge.training.signals import run_succeeded

logger = logging.getLogger(__name__)

# Metric points and log lines are written together this often (and at every evaluation,
# checkpoint and the end): the dashboard polls every 2 s, so a fresher write buys nothing.
FLUSH_SECONDS = 1.0
# A human-readable progress line goes to the log at most this often.
PROGRESS_LINE_SECONDS = 10.0
# How many of the last log lines a failure event repeats, so the reason is visible in one place.
LAST_LINES = 20
# How torch words a failed allocation: "CUDA out of memory" on a GPU, "can't allocate memory" on the CPU.
OUT_OF_MEMORY = ("out of memory", "can't allocate memory")
# How long a run waits for its dataset version to finish importing before giving up.
DATASET_WAIT_SECONDS = 6 * 3600
# Callbacks other apps add to every run (experiment trackers), registered in their
# AppConfig.ready(): factory(run, attempt, recorder) -> TrainerCallback | None. A callback's
# attempt_ended(outcome) is called once the outcome is recorded; factories and it must not raise.
RUN_CALLBACK_FACTORIES: list = []


class StopTraining(Exception):
    """The run was cancelled, reconciled or superseded while the engine was still setting up."""


class RunRecorder(TrainerCallback):
    """The platform's TrainerCallback: buffers what the engine reports and writes it in batches."""

    def __init__(self, run: TrainingRun, attempt: int):
        self.run_id, self.project_id, self.attempt = run.pk, run.project_id, attempt
        self.links = {**run.event_links(), "attempt": attempt}  # every line's project, run and attempt
        self.metrics: list[RunMetric] = []
        self.events: list[Event] = []
        self.last_lines: deque[str] = deque(maxlen=LAST_LINES)
        self.progress = None
        self.total_steps: int | None = None
        self.stop = False
        self.last_flush = time.monotonic()
        self.last_progress_line = 0.0
        self.warnings_seen: set[str] = set()

    # ---- log lines
    def log(self, message: str, level: str = EventLevel.INFO, source: str = "trainer", data: dict | None = None) -> None:
        self.last_lines.append(message)
        self.events.append(Event(**self.links, source=source, level=level, message=message, data=data or {}))

    def warning(self, message) -> None:
        text = str(message)
        if text not in self.warnings_seen:  # a warning raised every step is logged once
            self.warnings_seen.add(text)
            self.log(text, level=EventLevel.WARNING)

    # ---- TrainerCallback
    def on_start(self, info):
        self.total_steps = info["total_steps"]
        resumed = f", resuming at step {info['start_step']}" if info.get("resumed_from") else ""
        self.log(
            f"training {info['train_examples']} examples ({info['validation_examples']} held out) for "
            f"{info['total_steps']} steps on {info['device']} ({info['precision']}), "
            f"{info['trainable_parameters']:,} trainable parameters{resumed}",
            data=info,
        )
        if info.get("skipped_rows"):
            self.log(f"{info['skipped_rows']} rows are longer than max_seq_length and were skipped",
                     level=EventLevel.WARNING)
        self.flush(force=True)

    def on_step(self, progress):
        self.progress = progress
        values = {name: getattr(progress, name) for name in ("loss", "learning_rate", "grad_norm", "tokens_per_second")}
        # The objective's own curves (preference runs: rewards, margin, preference accuracy).
        values.update(progress.metrics)
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.metrics.append(RunMetric(run_id=self.run_id, attempt=self.attempt, step=progress.step,
                                              name=name, value=value))
        now = time.monotonic()
        if now - self.last_progress_line >= PROGRESS_LINE_SECONDS or progress.step == progress.total_steps:
            self.last_progress_line = now
            eta = f", ETA {_duration(progress.eta_s)}" if progress.eta_s else ""
            self.log(f"step {progress.step}/{progress.total_steps} loss {progress.loss:.4f} "
                     f"lr {progress.learning_rate:.2e} {progress.tokens_per_second:,.0f} tokens/s{eta}")
        self.flush()

    def on_evaluate(self, progress):
        values = {"eval_loss": progress.eval_loss, **{f"eval_{k}": v for k, v in progress.metrics.items()}}
        self.metrics.extend(RunMetric(run_id=self.run_id, attempt=self.attempt, step=progress.step, name=name,
                                      value=value) for name, value in values.items() if math.isfinite(value))
        accuracy = progress.metrics.get("preference_accuracy")
        scored = f", preference accuracy {accuracy:.2f}" if accuracy is not None else ""
        self.log(f"evaluation at step {progress.step}: eval loss {progress.eval_loss:.4f}{scored}")
        self.flush(force=True)

    def on_checkpoint(self, path, step, eval_loss, is_best):
        self.flush(force=True)
        record_checkpoint(self.run_id, self.attempt, Path(path), step, eval_loss)
        scored = f" (eval loss {eval_loss:.4f}{', best so far' if is_best else ''})" if eval_loss is not None else ""
        self.log(f"checkpoint saved at step {step}{scored}")

    def on_log(self, message):
        self.log(message)

    def should_stop(self) -> bool:
        return self.stop

    # ---- writing
    def flush(self, force: bool = False) -> None:
        """Write buffered points and lines, the progress and the heartbeat; learn whether to stop."""
        now = time.monotonic()
        if not force and now - self.last_flush < FLUSH_SECONDS:
            return
        self.last_flush = now
        with transaction.atomic():
            if self.metrics:
                RunMetric.all_teams.bulk_create(self.metrics)
                self.metrics = []
            if self.events:
                Event.all_teams.bulk_create(self.events)
                self.events = []
        p = self.progress
        still_running = lifecycle.record_progress(
            self.run_id, attempt=self.attempt, step=p.step if p else 0, total=self.total_steps,
            eta_seconds=p.eta_s if p else None, tokens_per_second=p.tokens_per_second if p else None,
        )
        if not still_running:
            self.stop = True  # cancel requested, or the run was reconciled: stop after a checkpoint


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def record_checkpoint(run_id: int, attempt: int, path: Path, step: int, eval_loss: float | None) -> None:
    """The Checkpoint row of a folder the engine wrote; keeps exactly one best checkpoint (the
    lowest eval loss, or the latest when nothing was evaluated) and drops rows of folders the
    engine pruned (keep_checkpoints)."""
    with transaction.atomic():
        Checkpoint.all_teams.update_or_create(
            run_id=run_id, step=step,
            defaults={"attempt": attempt, "storage_key": storage.key_of(path), "eval_loss": eval_loss},
        )
        checkpoints = list(Checkpoint.all_teams.filter(run_id=run_id).select_for_update())
        kept = []
        for checkpoint in checkpoints:
            if storage.exists(checkpoint.storage_key):
                kept.append(checkpoint)
                continue
            try:
                checkpoint.delete()
            except RestrictedError:  # a deployment still names it; its row stays, marked by the missing files
                pass
        scored = [c for c in kept if c.eval_loss is not None]
        if not kept:
            return
        best = min(scored, key=lambda c: (c.eval_loss, -c.step)) if scored else max(kept, key=lambda c: c.step)
        Checkpoint.all_teams.filter(run_id=run_id).exclude(pk=best.pk).update(is_best=False)
        Checkpoint.all_teams.filter(pk=best.pk).update(is_best=True)


def train_run(run_id: int, attempt: int) -> str:
    """The RQ job. Returns what happened ("succeeded", "failed", "cancelled", "skipped")."""
    from rq import get_current_job

    job = get_current_job()
    if not lifecycle.claim_attempt(run_id, attempt, job_id=job.id if job else ""):
        current = TrainingRun.all_teams.filter(pk=run_id).values("status", "attempt").first()
        logger.info("train job for run %s attempt %s skipped: the run is %s", run_id, attempt, current)
        return "skipped"
    run = TrainingRun.all_teams.select_related("dataset_version__dataset", "validation_version__dataset",
                                                "resumed_from").get(pk=run_id)
    recorder = RunRecorder(run, attempt)
    recorder.log(f"attempt {attempt} started on worker {job.worker_name if job and job.worker_name else 'in-process'}",
                 source="worker")
    recorder.flush(force=True)
    out_dir = storage.folder(storage.run_output_key(run.project_id, run.pk))
    extra_callbacks = [c for factory in RUN_CALLBACK_FACTORIES if (c := factory(run, attempt, recorder)) is not None]
    outcome = "failed"
    try:
        with Heartbeat(lambda: lifecycle.record_heartbeat(run_id, attempt), f"heartbeat-run-{run_id}"), \
                warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = lambda message, *args, **kwargs: recorder.warning(message)
            outcome = _train(run, attempt, recorder, out_dir, extra_callbacks)
            return outcome
    except BaseException as exc:
        _record_failure(run, attempt, recorder, exc, out_dir)
        if isinstance(exc, (TinyforgeError, StopTraining)):
            return "failed"  # the user's problem, recorded on the run; not a worker error
        raise
    finally:
        for callback in extra_callbacks:
            callback.attempt_ended(outcome)
        close_old_connections()


def _train(run: TrainingRun, attempt: int, recorder: RunRecorder, out_dir: Path, extra_callbacks: list) -> str:
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import train

    dataset = ready_dataset_file(run.dataset_version, recorder)
    validation = ready_dataset_file(run.validation_version, recorder) if run.validation_version_id else None
    # The engine gets the folder of the run's base model reference (a preset, a run of the team...).
    config = TrainConfig.from_dict({**run.config, "base_model": str(base_models.folder(run.base_model,
                                                                                       run.project.team_id))})
    resume_from = None
    if attempt > 1 and run.resumed_from is not None:
        resume_from = storage.path(run.resumed_from.storage_key)
        if not (resume_from / "trainer_state.json").is_file():
            raise TinyforgeError(f"checkpoint at step {run.resumed_from.step} is missing from the data directory "
                                 f"({run.resumed_from.storage_key}); resume from another checkpoint")
        recorder.log(f"resuming from the checkpoint at step {run.resumed_from.step}")
    recorder.flush(force=True)
    if recorder.stop:
        raise StopTraining("the run was cancelled before training started")
    result = train(config, dataset, out_dir, [recorder, *extra_callbacks], validation=validation,
                   resume_from=resume_from)
    recorder.flush(force=True)
    if result.status == "cancelled" and not recorder.stop:
        # The engine stops like this on SIGTERM too: the worker is shutting down, nobody cancelled.
        raise TinyforgeError(f"the worker was shut down at step {result.steps}; the checkpoint there was saved, "
                             "resume the run to continue")
    if result.status == "cancelled":
        last = f"; checkpoint at step {result.steps} saved" if result.last_checkpoint else ""
        try:
            lifecycle.mark_cancelled(run.pk, attempt=attempt, progress_step=result.steps)
        except InvalidTransition as exc:
            recorder.log(f"stopped at step {result.steps}: the run is {exc.current}{last}", source="worker")
            recorder.flush(force=True)
            return "skipped"
        recorder.log(f"cancelled at step {result.steps}{last}; resume continues from there", source="worker")
        recorder.flush(force=True)
        return "cancelled"
    eval_results = _read_json(out_dir / "eval_results.json")
    summary = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lifecycle.mark_succeeded(run.pk, attempt=attempt, output_key=storage.key_of(out_dir), summary_metrics=summary,
                             eval_results=eval_results, progress_step=result.steps)
    how = "early stopping" if result.status == "early_stopped" else "the last step"
    recorder.log(f"succeeded after {result.steps} steps ({how}) in {_duration(result.elapsed_s)}; "
                 f"{result.train_tokens_per_second:,.0f} tokens/s", source="worker")
    recorder.flush(force=True)
    try:
        run_succeeded.send(TrainingRun, run=TrainingRun.all_teams.select_related(
            "project", "dataset_version", "validation_version").get(pk=run.pk))
    except Exception as exc:  # the run did succeed: what follows it must not turn it into a failure
        logger.exception("after run %s succeeded", run.pk)
        recorder.warning(f"could not start the run's evaluations: {type(exc).__name__}: {exc}")
        recorder.flush(force=True)
    return "succeeded"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _record_failure(run: TrainingRun, attempt: int, recorder: RunRecorder, exc: BaseException, out_dir: Path) -> None:
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, JobTimeoutException):
        message = (f"timed out: training ran longer than the train job timeout "
                   f"({settings.TRAIN_JOB_TIMEOUT_SECONDS} s, TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS)")
    elif isinstance(exc, (TinyforgeError, StopTraining)):
        message = str(exc)
    elif isinstance(exc, MemoryError):
        message = "out of memory: lower batch_size or max_seq_length, or turn on gradient_checkpointing"
    elif isinstance(exc, KeyboardInterrupt | SystemExit):
        message = "the worker was shut down while training; resume the run from its last checkpoint"
    else:
        message = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, MemoryError) and any(words in str(exc).lower() for words in OUT_OF_MEMORY):
        message = f"out of memory ({exc}); lower batch_size or max_seq_length, or turn on gradient_checkpointing"
    removed = remove_temporary_files(out_dir)
    # Notes say what the engine cleaned up as the error went by (a half-written checkpoint).
    message += "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
    if removed:
        message += f"; temporary files removed: {', '.join(removed)}"
    try:
        recorder.flush(force=True)  # the lines logged before the failure come first
    except Exception:
        logger.exception("could not write the last log lines of run %s", run.pk)
        close_old_connections()
    record_event(
        **recorder.links, source="worker", level=EventLevel.ERROR,
        message=f"failed: {message}",
        data={"traceback": "".join(traceback.format_exception(exc)), "last_lines": list(recorder.last_lines),
              "removed_temporary_files": removed},
    )
    try:
        lifecycle.mark_failed(run.pk, message, attempt=attempt)
    except InvalidTransition as moved:
        logger.info("run %s attempt %s failed after it became %s", run.pk, attempt, moved.current)


def remove_temporary_files(out_dir: Path) -> list[str]:
    """Half-written checkpoint and model folders an interrupted attempt left behind."""
    removed = []
    candidates = [out_dir / ".final", *out_dir.glob("*.partial"), *(out_dir / "checkpoints").glob("*.partial"),
                  *(out_dir / "checkpoints").glob("*.old"), *out_dir.glob(".*.partial")]
    for path in candidates:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# ---------------------------------------------------------------------------------------------
# the dataset a run trains on


def ready_dataset_file(version, recorder: RunRecorder) -> Path:
    """The JSONL file of a ready dataset version. A version still pending is imported and
    validated here first (the ingest job's own function: whichever of the two jobs claims it
    first does the work), so a run never waits for an ingest job queued behind itself on a
    single worker; a version another worker is importing is waited for."""
    from tinyforge.datasets.jobs import ingest_version
    from tinyforge.datasets.models import DatasetVersionStatus as S

    waited_since = None
    while True:
        version.refresh_from_db()
        if version.status == S.READY:
            break
        if version.status == S.FAILED:
            raise TinyforgeError(f"dataset version {version} failed: {version.error or 'see its validation report'}")
        if version.status == S.PENDING:
            recorder.log(f"dataset version {version} is not validated yet: importing and validating it first",
                         source="validator")
            recorder.flush(force=True)
            outcome = ingest_version(version.pk)
            recorder.log(f"dataset version {version}: {outcome}", source="validator")
            continue
        if waited_since is None:
            waited_since = time.monotonic()
            recorder.log(f"waiting for dataset version {version} to finish importing ({version.status})")
        elif time.monotonic() - waited_since > DATASET_WAIT_SECONDS:
            raise TinyforgeError(f"dataset version {version} was still {version.status} after "
                                 f"{_duration(DATASET_WAIT_SECONDS)}")
        recorder.flush(force=True)
        if recorder.stop:
            raise StopTraining("the run was cancelled while waiting for its dataset")
        time.sleep(2)
    path = storage.path(version.storage_key)
    if not path.is_file():
        raise TinyforgeError(f"the file of dataset version {version} is missing from the data directory "
                             f"({version.storage_key})")
    if version.sha256 and _sha256(path) != version.sha256:
        raise TinyforgeError(f"the file of dataset version {version} changed since it was validated "
                             f"(sha256 mismatch): it is corrupt; import the data again as a new version")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
