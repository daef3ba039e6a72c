"""Creating, cancelling and resuming training runs. The train job (training/jobs.py,
`train_run(run_id, attempt)`) does the work; it is enqueued on commit."""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.db import transaction

from tinyforge.core import storage
from tinyforge.core.audit import audit, save_changes
from tinyforge.core.events import record_event
from tinyforge.core.jobs import enqueue
from tinyforge.errors import Conflict, InvalidInput, NotFound
from tinyforge.training import base_models, lifecycle
from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun

TRAIN_JOB = "tinyforge.training.jobs.train_run"

logger = logging.getLogger(__name__)


def job_id_for(run: TrainingRun) -> str:
    return f"train-run-{run.pk}-attempt-{run.attempt}"


def resolve_config(*, base_model: str, method: str, config: dict, team_id: int | None) -> dict:
    """The engine's full config for a run of `team_id`: `config` holds an optional "preset" plus
    the hyperparameters the user changed. Checked by TrainConfig itself, so anything the engine
    would refuse is a 400 naming the field (config.<name>) before a job exists."""
    from dataclasses import fields

    from tinyforge.ml.config import PRESETS, InvalidConfig, TrainConfig

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
    try:
        base_models.check(base_model, team_id)
    except base_models.StartingModelNotFound as exc:
        raise NotFound(str(exc)) from None  # another team's run reads as no run at all
    except base_models.StartingModelNotReady as exc:
        raise Conflict(str(exc)) from None
    except base_models.UnusableBaseModel as exc:
        errors["base_model"] = [str(exc)]
    if errors:
        raise InvalidInput(errors)
    try:
        resolved = TrainConfig.from_preset(preset, base_model=base_model, method=method, **config)
    except InvalidConfig as exc:
        raise InvalidInput({name if name in ("base_model", "method") else f"config.{name}": messages
                            for name, messages in exc.problems.items()}) from None
    precision_problem = cpu_precision_problem(resolved.precision, resolved.device)
    if precision_problem:
        raise InvalidInput({"config.precision": [precision_problem]})
    return resolved.to_dict()


def cpu_precision_problem(precision: str, device: str) -> str | None:
    """Why bf16 cannot train on this machine's CPU (naming the missing feature), for a run that will
    train on a CPU: device cpu, or auto on a machine without CUDA. Workers of a one-machine install
    share this CPU; a worker elsewhere checks its own and fails the run with the same words."""
    from tinyforge.hardware import cuda_available, half_missing

    if precision != "bf16" or device == "cuda" or (device == "auto" and cuda_available()):
        return None
    missing = half_missing("cpu", "bfloat16")
    if missing is None:
        return None
    hint = " (workers with GPUs: set device cuda)" if device == "auto" else ""
    return f"bf16 on a CPU needs native bfloat16, but {missing}; use precision fp32 or auto{hint}."


def training_options() -> dict:
    """What the new-run form offers, all read from the engine: the base-model presets, each
    hyperparameter (type, default, choices, help) and each preset resolved for both methods."""
    from dataclasses import MISSING, fields

    from tinyforge.ml.config import PRESETS, TrainConfig
    from tinyforge.ml.models import PRESETS as MODEL_PRESETS

    on_the_run = {"base_model", "method"}  # set on the run itself, not in its config

    def kind(f) -> str:
        if f.metadata.get("choices"):
            return "choice"
        type_name = str(f.type)
        return next((k for k in ("bool", "int", "float", "list") if type_name.startswith(k)), "str")

    def default(f):
        return f.default_factory() if f.default is MISSING else f.default

    hyperparameters = [
        {"name": f.name, "type": kind(f), "nullable": "None" in str(f.type), "default": default(f),
         "choices": list(f.metadata.get("choices", ())), "help": f.metadata["help"]}
        for f in fields(TrainConfig) if f.name not in on_the_run
    ]
    presets = []
    for name, overrides in PRESETS.items():
        resolved = {}
        for method in ("lora", "full"):
            values = TrainConfig.from_preset(name, base_model="-", method=method).to_dict()
            resolved[method] = {k: v for k, v in values.items() if k not in on_the_run}
        presets.append({"name": name, "overrides": overrides, "resolved": resolved})
    offered = [{"name": p.name, "hf_id": p.hf_id, "license": p.license} for p in MODEL_PRESETS.values()]
    offered += [{"name": name, "hf_id": "", "license": "see the model folder"} for name in settings.MODEL_FOLDERS]
    return {"base_models": offered, "hyperparameters": hyperparameters, "presets": presets,
            "default_preset": "balanced"}


@transaction.atomic
def create_run(request, *, project, name: str, dataset_version, base_model: str, method: str, config: dict,
               validation_version=None, metadata: dict | None = None) -> TrainingRun:
    run = TrainingRun.all_teams.create(
        project=project, name=name, dataset_version=dataset_version, validation_version=validation_version,
        base_model=base_model, method=method, config=config, metadata=metadata,
        created_by=getattr(request, "user", None),
    )
    run.job_id = job_id_for(run)
    run.save(update_fields=["job_id"])
    record_event(**run.event_links(), source="platform",
                 message=f"queued: {method} fine-tune of {base_model} on {dataset_version}")
    audit(request, "created", run, changes={"base_model": base_model, "method": method})
    enqueue("train", TRAIN_JOB, run.pk, run.attempt, job_id=run.job_id)
    return run


@transaction.atomic
def cancel_run(request, run: TrainingRun) -> TrainingRun:
    outcome = lifecycle.request_cancel(run.pk)
    run.refresh_from_db()
    if outcome == lifecycle.ALREADY_REQUESTED:
        return run  # cancelling twice changes nothing: no second event, no second audit entry
    if outcome == RunStatus.CANCELLED:
        message = "cancelled before it started"
        transaction.on_commit(partial(_withdraw_job, run.job_id))
    else:
        message = "cancel requested; stopping after a checkpoint"
    record_event(**run.event_links(), source="platform", message=message)
    audit(request, "cancelled", run)
    return run


def _withdraw_job(job_id: str) -> None:
    """Take a run's job off the train queue, so the runs behind it move up. LREM is atomic: once
    it removed the id no worker can take the job, so its hash can go too. When a worker took the
    job first it finds the run cancelled and skips it."""
    import django_rq
    import redis

    queue = django_rq.get_queue("train")
    try:
        if queue.remove(job_id):
            job = queue.fetch_job(job_id)
            if job is not None:
                job.delete(remove_from_queue=False)
    except redis.RedisError as exc:  # queue_positions ignores it; a worker that takes it skips it
        logger.warning("could not take job %s off the train queue: %s", job_id, exc)


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
    record_event(**run.event_links(), source="platform",
                 message=f"attempt {run.attempt} queued, resuming from step {checkpoint.step}")
    audit(request, "resumed", run, changes={"attempt": run.attempt, "checkpoint_step": checkpoint.step})
    enqueue("train", TRAIN_JOB, run.pk, run.attempt, job_id=run.job_id)
    return run


def update_run(request, run: TrainingRun, changes: dict) -> TrainingRun:
    """Its name (the serializer lets nothing else change once a run exists)."""
    return save_changes(request, run, changes)


def delete_run(request, run: TrainingRun) -> None:
    if not run.is_finished:
        raise Conflict(f"The run is {run.status}; cancel it before deleting it.")
    audit(request, "deleted", run, changes={"name": run.name})
    key = storage.run_key(run.project_id, run.pk)
    run.delete()
    transaction.on_commit(lambda: storage.delete(key))


def queue_positions() -> dict[str, int] | None:
    """{job id: 1-based place} of the queued runs' jobs on the train queue, in the order workers
    take them; None when Redis cannot be reached (the API then reports no position). A job whose
    run is no longer queued (cancelled a moment ago, its removal not done yet or not possible while
    Redis was away) does not count: a worker that takes it skips it at once."""
    import django_rq
    import redis

    try:
        job_ids = django_rq.get_queue("train").job_ids
    except redis.RedisError:
        return None
    waiting = set(TrainingRun.all_teams.filter(status=RunStatus.QUEUED).values_list("job_id", flat=True))
    return {job_id: n for n, job_id in enumerate((j for j in job_ids if j in waiting), start=1)}


def estimate_run(*, dataset_version, config: dict, validation_version=None) -> dict:
    """Steps, trained tokens and duration of a run before it starts: the engine's plan of the run
    (tinyforge.ml.train.estimate_run, which lays out batches as training will, packing included),
    its tokens divided by the median throughput of this installation's finished runs of the same
    base model and method."""
    import statistics

    from tinyforge.datasets.models import DatasetVersionStatus
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import estimate_run as engine_estimate

    if dataset_version.status != DatasetVersionStatus.READY:
        raise Conflict(f"Dataset version {dataset_version} is {dataset_version.status}; an estimate needs its rows "
                       "validated (the run itself would validate them first).")
    # The engine's own plan (rows kept, batch layout, packing) for this data: the steps the run will take.
    team_id = dataset_version.dataset.project.team_id
    engine_config = TrainConfig.from_dict({**config, "base_model": str(base_models.folder(config["base_model"], team_id))})
    plan = engine_estimate(engine_config, storage.path(dataset_version.storage_key),
                           storage.path(validation_version.storage_key) if validation_version is not None else None)
    steps, tokens = plan["total_steps"], plan["total_tokens"]
    earlier = [
        rate for rate in TrainingRun.all_teams.filter(
            status=RunStatus.SUCCEEDED, base_model=config["base_model"], method=config["method"],
        ).order_by("-finished_at").values_list("summary_metrics__train_tokens_per_second", flat=True)[:20]
        if isinstance(rate, (int, float)) and rate > 0
    ]
    if not earlier:
        return {"steps": steps, "tokens": tokens, "seconds": None,
                "basis": f"no finished run of {config['base_model']} ({config['method']}) on this installation yet, "
                         "so no measured throughput; the first run calibrates the next estimates"}
    rate = statistics.median(earlier)
    return {"steps": steps, "tokens": tokens, "seconds": round(tokens / rate, 1),
            "basis": f"{rate:,.0f} tokens/s, the median of {len(earlier)} finished run(s) of "
                     f"{config['base_model']} ({config['method']}) on this installation"}


def compare_runs(runs: list[TrainingRun]) -> dict:
    """Several runs' curves aligned by step (one row per step, one column per run; a resumed
    run's later attempt wins a step both attempts reached) and their configs side by side."""
    from tinyforge.training.models import RunMetric

    names = ("loss", "eval_loss", "learning_rate", "grad_norm", "tokens_per_second")
    by_metric: dict[str, dict[int, dict]] = {name: {} for name in names}
    points = RunMetric.all_teams.filter(run__in=runs, name__in=names).order_by("attempt", "id").values_list(
        "run_id", "name", "step", "value")
    for run_id, name, step, value in points:
        by_metric[name].setdefault(step, {"step": step})[str(run_id)] = value
    keys = sorted({key for run in runs for key in run.config})
    differing = [k for k in keys if len({repr(run.config.get(k)) for run in runs}) > 1]
    return {
        "runs": [{"id": run.pk, "name": run.name, "status": run.status, "attempt": run.attempt,
                  "base_model": run.base_model, "method": run.method, "dataset_version": run.dataset_version_id,
                  "summary_metrics": run.summary_metrics, "config": run.config} for run in runs],
        "config_keys": keys,
        "config_differences": differing,
        "metrics": {name: [rows[step] for step in sorted(rows)] for name, rows in by_metric.items()},
    }
