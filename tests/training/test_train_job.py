"""The train job called directly, as a worker would: what it writes to the database and storage."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tinyforge.core import storage
from tinyforge.training import services
from tinyforge.training.jobs import train_run
from tinyforge.training.models import Checkpoint, RunEvent, RunMetric, TrainingRun

from ml.conftest import TOY_FACTS
from training.conftest import make_version, toy_jsonl

pytestmark = pytest.mark.django_db(transaction=True)


def curve(run, name="loss"):
    return list(RunMetric.all_teams.filter(run=run, name=name).order_by("step", "id").values_list("step", "value"))


def messages(run):
    return list(RunEvent.all_teams.filter(run=run).values_list("message", flat=True))


def test_it_trains_a_run_and_records_curves_logs_checkpoints_and_the_model(make_run):
    run = make_run(max_steps=20)
    with CaptureQueriesContext(connection) as queries:
        assert train_run(run.pk, 1) == "succeeded"
    run.refresh_from_db()
    assert (run.status, run.progress_step, run.progress_total) == ("succeeded", 20, 20)
    assert run.started_at and run.finished_at and run.heartbeat_at and run.tokens_per_second > 0
    losses = curve(run)
    assert [step for step, _ in losses] == list(range(1, 21))
    assert losses[-1][1] < losses[0][1]  # it learned
    for name in ("learning_rate", "grad_norm", "tokens_per_second"):
        assert len(curve(run, name)) == 20
    assert [step for step, _ in curve(run, "eval_loss")] == [3, 6, 9, 12, 15, 18, 20]
    # 100+ metric points, written in a handful of batched INSERTs rather than one per point
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "training_runmetric"')]
    assert 1 <= len(inserts) < 20
    lines = messages(run)
    assert lines[0].startswith("queued") and any(m.startswith("training 19 examples") for m in lines)
    assert any(m.startswith("succeeded after 20 steps") for m in lines)
    checkpoints = list(Checkpoint.all_teams.filter(run=run).order_by("step"))
    assert len(checkpoints) >= 2 and all(storage.exists(c.storage_key) for c in checkpoints)
    best = [c for c in checkpoints if c.is_best]
    assert len(best) == 1 and best[0].eval_loss == min(c.eval_loss for c in checkpoints if c.eval_loss is not None)
    assert run.best_checkpoint() == best[0]
    assert (storage.path(run.output_key) / "tinyforge.json").is_file()
    assert run.summary_metrics["steps"] == 20 and "eval_loss" in run.summary_metrics


def test_the_same_job_delivered_twice_gives_one_result(make_run):
    run = make_run()
    assert train_run(run.pk, 1) == "succeeded"
    points, events, checkpoints = (RunMetric.all_teams.filter(run=run).count(), RunEvent.all_teams.filter(run=run).count(),
                                   list(Checkpoint.all_teams.filter(run=run).values_list("pk", "step")))
    assert train_run(run.pk, 1) == "skipped"
    assert RunMetric.all_teams.filter(run=run).count() == points
    assert RunEvent.all_teams.filter(run=run).count() == events
    assert list(Checkpoint.all_teams.filter(run=run).values_list("pk", "step")) == checkpoints


def test_a_run_cancelled_while_queued_never_starts(make_run):
    run = make_run()
    services.cancel_run(None, run)
    assert train_run(run.pk, 1) == "skipped"
    run.refresh_from_db()
    assert run.status == "cancelled" and not RunMetric.all_teams.filter(run=run).exists()


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_cancel_stops_at_a_checkpoint_and_resume_continues_the_same_curve(make_run, django_capture_on_commit_callbacks):
    run = make_run(max_steps=5000, save_steps=0, eval_steps=0)
    outcome = {}

    def work():
        try:
            outcome["result"] = train_run(run.pk, 1)
        finally:
            connection.close()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        _wait_for(lambda: TrainingRun.all_teams.get(pk=run.pk).progress_step >= 3)
        services.cancel_run(None, TrainingRun.all_teams.get(pk=run.pk))
        services.cancel_run(None, TrainingRun.all_teams.get(pk=run.pk))  # twice: still one request
    finally:
        worker.join(timeout=120)
    assert outcome["result"] == "cancelled"
    run.refresh_from_db()
    assert run.status == "cancelled" and run.progress_step < 5000
    stopped_at = run.progress_step
    checkpoint = Checkpoint.all_teams.filter(run=run).order_by("-step").first()
    assert checkpoint.step == stopped_at and Checkpoint.all_teams.filter(run=run, is_best=True).count() == 1
    assert any(m == f"cancelled at step {stopped_at}; checkpoint at step {stopped_at} saved; resume continues from there"
               for m in messages(run))

    # Resume as attempt 2, shortened so the test ends: the curve picks up at the next step.
    TrainingRun.all_teams.filter(pk=run.pk).update(config={**run.config, "max_steps": stopped_at + 4})
    with django_capture_on_commit_callbacks(execute=True):
        run = services.resume_run(None, TrainingRun.all_teams.get(pk=run.pk), None)
    assert (run.status, run.attempt, run.resumed_from_id) == ("queued", 2, checkpoint.pk)
    assert train_run(run.pk, 2) == "succeeded"
    second = list(RunMetric.all_teams.filter(run=run, attempt=2, name="loss").values_list("step", flat=True))
    assert second == list(range(stopped_at + 1, stopped_at + 5))
    assert train_run(run.pk, 1) == "skipped"  # a late delivery of the first attempt changes nothing


def test_a_nan_loss_fails_the_run_with_the_error_and_the_last_lines(make_run, tiny_model_dir, tmp_path, settings):
    import torch
    from safetensors.torch import load_file, save_file

    broken = shutil.copytree(tiny_model_dir, tmp_path / "nan-model")
    weights = load_file(broken / "model.safetensors")
    name = next(k for k in weights if "embed_tokens" in k)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    settings.MODEL_FOLDERS = {**settings.MODEL_FOLDERS, "nan-model": str(broken)}
    run = make_run(base_model="nan-model")
    assert train_run(run.pk, 1) == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and "the loss became nan at step 1" in run.error
    failure = RunEvent.all_teams.filter(run=run, level="error").get()
    assert failure.message.startswith("failed: the loss became nan")
    assert "Traceback" in failure.data["traceback"] and "TinyforgeError" in failure.data["traceback"]
    assert any(line.startswith("training ") for line in failure.data["last_lines"])


def test_a_dataset_file_corrupted_after_validation_fails_the_run(make_run, acme):
    version = make_version(acme.dataset, toy_jsonl())
    with storage.path(version.storage_key).open("r+b") as handle:
        handle.write(b"\x00garbage\xff")
    run = make_run(version=version)
    assert train_run(run.pk, 1) == "failed"
    run.refresh_from_db()
    assert "changed since it was validated" in run.error and "corrupt" in run.error
    assert RunEvent.all_teams.filter(run=run, level="error", message__contains="sha256 mismatch").exists()


def test_a_run_on_a_version_not_validated_yet_validates_it_first(make_run, acme):
    from tinyforge.core import storage as store

    content = toy_jsonl()
    upload = store.upload_key(acme.project.pk, "u1", "train.jsonl")
    with store.atomic_write(upload) as handle:
        handle.write(content)
    version = make_version(acme.dataset, b"", status="pending", source_kind="openai_file")
    version.source_config = {"files": [{"key": upload, "name": "train.jsonl", "size": len(content)}], "format": "jsonl"}
    version.save()
    run = make_run(version=version)
    assert train_run(run.pk, 1) == "succeeded"
    version.refresh_from_db()
    assert version.status == "ready" and version.row_count == len(TOY_FACTS)  # exact duplicates dropped
    assert any("not validated yet" in m for m in messages(run))
