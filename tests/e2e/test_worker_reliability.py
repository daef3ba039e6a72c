"""Training runs with real worker processes on real Redis: killed workers, a timeout in the middle
of a checkpoint write, running out of memory, duplicate deliveries, Redis restarting empty, and
Redis's eviction policy."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from rq import Queue

from e2e.worker_platform import FAST_RELIABILITY, start_platform, stop_platform
from tinymodel import TINY_MODEL, build_tiny_model
from training.conftest import toy_jsonl

pytestmark = pytest.mark.e2e

STALE = int(FAST_RELIABILITY["TINYFORGE_RUN_STALE_SECONDS"])
INTERVAL = int(FAST_RELIABILITY["TINYFORGE_RECONCILE_INTERVAL_SECONDS"])


WIDE_VOCAB_MODEL = "wide-vocab"


@pytest.fixture(scope="module")
def platform(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("worker-platform")
    dataset = folder / "toy.jsonl"
    dataset.write_bytes(toy_jsonl())
    (folder / "data").mkdir()
    # The wide-vocabulary model is built by the test that needs it, into the folder named here.
    platform, cleanups = start_platform(folder / "data", dataset, model_folders={
        TINY_MODEL: tiny_model_dir, WIDE_VOCAB_MODEL: folder / "wide-vocab-model"})

    try:
        yield platform
    finally:
        stop_platform(platform, cleanups)


@pytest.fixture
def fresh(platform):
    """No worker left from the previous test, an empty Redis."""
    platform.stop_all_workers()
    platform.redis().flushdb()
    yield platform
    platform.stop_all_workers()


def reconciler_lines(platform, run_id):
    return [e["message"] for e in platform.events(run_id) if e["source"] == "reconciler"]


def test_a_worker_killed_mid_run_is_failed_once_by_the_reconciler(fresh, tiny_model_dir):
    platform = fresh
    worker = platform.start_worker("doomed")
    run = platform.create_run(TINY_MODEL, max_steps=1_000_000, save_steps=5)
    platform.wait_for(lambda: platform.checkpoints(run["id"]), 120, "a first checkpoint")
    platform.kill_worker(worker)
    assert platform.run(run["id"])["status"] == "running"  # nobody told the database
    time.sleep(STALE + 1)  # the time it takes an orchestrator to restart the worker
    platform.start_worker("restarted")  # its start-up pass fails the run
    failed = platform.wait_for_run(run["id"], "failed", timeout=60)
    assert "stopped responding" in failed["error"] and "resume it from its checkpoint" in failed["error"]
    platform.start_scheduler()
    time.sleep(3 * INTERVAL)  # more reconciler passes, the scheduler's
    lines = reconciler_lines(platform, run["id"])
    assert len(lines) == 1 and lines[0].startswith("failed: the worker running this run stopped responding")
    assert platform.run(run["id"])["status"] == "failed" and platform.run(run["id"])["attempt"] == 1


def test_a_killed_run_is_failed_within_the_interval_while_every_live_worker_trains(fresh, tiny_model_dir):
    """The reconcilers run on the scheduler, never on a training worker: a run whose worker died
    is failed within RUN_STALE + RECONCILE_INTERVAL even when the only live worker is busy with a
    long run (as when a killed worker's replacement takes the next train job at once). With the
    reconcilers on the training workers, the pass waited for that run to end."""
    platform = fresh
    platform.start_scheduler()
    doomed = platform.start_worker("doomed")
    lost = platform.create_run(TINY_MODEL, max_steps=1_000_000, save_steps=0, eval_steps=0)
    platform.wait_for_run(lost["id"], "running")  # its heartbeat started with it
    platform.start_worker("busy")
    busy = platform.create_run(TINY_MODEL, max_steps=1_000_000, save_steps=0, eval_steps=0)
    platform.wait_for_run(busy["id"], "running")
    platform.kill_worker(doomed)
    # Well inside the train job timeout (40 s): the busy run is still training when this passes.
    failed = platform.wait_for_run(lost["id"], "failed", timeout=STALE + 2 * INTERVAL + 15)
    assert "stopped responding" in failed["error"]
    assert platform.run(busy["id"])["status"] == "running", "the reconciler waited for the busy worker"
    lines = reconciler_lines(platform, lost["id"])
    assert len(lines) == 1 and lines[0].startswith("failed: the worker running this run stopped responding")
    # Free the busy worker, so no run is left training for the next test.
    assert platform.api("POST", f"/api/v1/runs/{busy['id']}/cancel/").status_code == 200
    platform.wait_for_run(busy["id"], "cancelled", timeout=60)


def test_with_retries_a_killed_run_resumes_from_its_checkpoint_exactly_once(fresh, tiny_model_dir):
    platform = fresh
    worker = platform.start_worker("doomed")
    run = platform.create_run(TINY_MODEL, max_steps=40, save_steps=5, eval_steps=20)
    platform.wait_for(lambda: platform.checkpoints(run["id"]), 120, "a first checkpoint")
    platform.kill_worker(worker)
    killed_at = platform.run(run["id"])["progress_step"]
    assert killed_at < 40, "the run finished before the kill; make it longer"
    time.sleep(STALE + 1)
    platform.start_worker("restarted", TINYFORGE_RUN_MAX_RETRIES="1")
    done = platform.wait_for_run(run["id"], ("succeeded", "failed"), timeout=180)
    assert (done["status"], done["attempt"], done["progress_step"]) == ("succeeded", 2, 40), platform.logs()
    lines = reconciler_lines(platform, run["id"])
    assert len(lines) == 1 and "retrying as attempt 2 from the checkpoint at step" in lines[0]
    losses = platform.api("GET", f"/api/v1/runs/{run['id']}/metrics/", params={"name": "loss", "limit": 1000}).json()
    assert "results" in losses, losses
    second = sorted(p["step"] for p in losses["results"] if p["attempt"] == 2)
    assert second[0] <= killed_at + 1 and second[-1] == 40  # the same curve, continued


def stop_while_writing_a_checkpoint(platform, worker, checkpoints: Path, timeout: float) -> str:
    """SIGSTOP the work horse while a checkpoint folder is half written (as a stalled disk would
    hold it); the name of that folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partial = next(checkpoints.glob("*.partial"), None) if checkpoints.is_dir() else None
        horse = platform.work_horse(worker)
        if partial is None or horse is None:
            time.sleep(0.005)
            continue
        os.kill(horse, signal.SIGSTOP)
        while Path(f"/proc/{horse}/stat").read_text().split(") ")[1][0] != "T":
            time.sleep(0.001)
        if partial.exists():  # still there once the horse stands still: it stopped mid-write
            return partial.name
        os.kill(horse, signal.SIGCONT)
    raise AssertionError(f"no checkpoint was being written within {timeout}s\n{platform.logs()}")


def test_a_job_that_times_out_fails_with_a_clear_event_and_no_temporary_files(fresh, tiny_model_dir):
    """The timeout lands while a checkpoint is half written: the horse is held still mid-write
    until the job timeout has passed, then let go, so RQ's timeout interrupts the write."""
    platform = fresh
    worker = platform.start_worker()
    run = platform.create_run(TINY_MODEL, max_steps=1_000_000, save_steps=1, eval_steps=0)
    run_dir = platform.data_dir / "projects" / str(platform.project) / "runs" / str(run["id"])
    partial = stop_while_writing_a_checkpoint(platform, worker, run_dir / "model" / "checkpoints", 60)
    started = datetime.fromisoformat(platform.run(run["id"])["started_at"])  # after RQ started the job
    timeout = int(FAST_RELIABILITY["TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS"])
    time.sleep(max(0.0, (started - datetime.now(timezone.utc)).total_seconds() + timeout + 1))
    os.kill(platform.work_horse(worker), signal.SIGCONT)

    failed = platform.wait_for_run(run["id"], "failed", timeout=60)
    step = int(partial.removesuffix(".partial").split("-")[1])
    assert failed["error"] == (
        f"timed out: training ran longer than the train job timeout ({timeout} s, TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS); "
        f"the checkpoint at step {step} was not saved: its partial folder {partial} was removed"), failed["error"]
    error = [e for e in platform.events(run["id"]) if e["level"] == "error"]
    assert len(error) == 1 and error[0]["message"] == f"failed: {failed['error']}"
    assert "JobTimeoutException" in error[0]["data"]["traceback"] and error[0]["data"]["last_lines"]
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith((".partial", ".old")) or p.name == ".final"]
    assert leftovers == []
    assert step not in [c["step"] for c in platform.checkpoints(run["id"])]
    assert all((p / "trainer_state.json").is_file() for p in (run_dir / "model" / "checkpoints").iterdir())


def test_training_that_runs_out_of_memory_fails_with_the_error_and_the_last_log_lines(fresh):
    """A batch far too big for the worker's memory: a model with a vocabulary as wide as a real
    one (131,072 logits a token) and 64 long rows a batch, on a worker limited to 4 GiB of
    address space (a normal tiny run needs under 2). The allocation fails inside the work horse;
    the run is failed with a message that says what to lower, and its last log lines."""
    platform = fresh
    build_tiny_model(platform.model_folders[WIDE_VOCAB_MODEL], context=2048, vocab_size=131_072)
    answer = "Widget Pro supports up to 12 devices and ships with a 3 year warranty. " * 20
    rows = [{"instruction": f"Tell me about Widget Pro, part {n}.", "output": answer} for n in range(150)]
    version = platform.upload_version("".join(json.dumps(row) + "\n" for row in rows).encode())
    platform.start_worker("small", memory_limit=4 * 2**30)
    run = platform.create_run(WIDE_VOCAB_MODEL, version=version, batch_size=64, max_seq_length=2048, max_steps=4,
                              save_steps=0, eval_steps=0)
    failed = platform.wait_for_run(run["id"], ("failed", "succeeded"), timeout=120)
    assert failed["status"] == "failed", platform.logs()
    assert failed["error"].startswith("out of memory (") and "can't allocate memory" in failed["error"], failed["error"]
    assert failed["error"].endswith("lower batch_size or max_seq_length, or turn on gradient_checkpointing")
    events = platform.events(run["id"])
    error = [e for e in events if e["level"] == "error"]
    assert len(error) == 1 and error[0]["message"] == f"failed: {failed['error']}"
    assert "DefaultCPUAllocator" in error[0]["data"]["traceback"]
    # The lines before the failure, as events of their own and repeated in the failure's event.
    started = [e["message"] for e in events if e["message"].startswith("training ") and "examples" in e["message"]]
    assert len(started) == 1 and started[0] in error[0]["data"]["last_lines"]


def test_the_same_job_delivered_twice_gives_one_result(fresh, tiny_model_dir):
    platform = fresh
    run = platform.create_run(TINY_MODEL, max_steps=6, save_steps=3)
    job_id = f"train-run-{run['id']}-attempt-1"
    queue = Queue("train", connection=platform.redis())
    assert queue.job_ids == [job_id]
    queue.enqueue("tinyforge.training.jobs.train_run", run["id"], 1, job_id=f"{job_id}-again")
    platform.start_worker()
    platform.wait_for(lambda: queue.count == 0 and not queue.started_job_registry.get_job_ids(), 120, "both jobs")
    platform.wait_for(lambda: queue.fetch_job(f"{job_id}-again").get_status() == "finished", 30, "the duplicate")
    assert {queue.fetch_job(job_id).return_value(), queue.fetch_job(f"{job_id}-again").return_value()} == {
        "succeeded", "skipped"}
    assert platform.run(run["id"])["status"] == "succeeded"
    assert sorted(c["step"] for c in platform.checkpoints(run["id"])) == [3, 6]
    losses = platform.api("GET", f"/api/v1/runs/{run['id']}/metrics/", params={"name": "loss"}).json()["results"]
    assert sorted(p["step"] for p in losses) == [1, 2, 3, 4, 5, 6]


def test_redis_restarted_without_its_data_while_runs_are_queued(fresh, tiny_model_dir):
    """Redis stops while a worker trains and a run waits, and comes back empty. Nothing restarts
    the worker, the scheduler or the web server: they reconnect by themselves. The run in progress
    finishes without Redis (the worker survives its job ending while Redis is away), and the
    queued run and one created during the outage are enqueued again by the reconciler."""
    platform = fresh
    worker = platform.start_worker()
    scheduler = platform.start_scheduler()
    training = platform.create_run(TINY_MODEL, max_steps=12, save_steps=0, eval_steps=0)
    platform.wait_for_run(training["id"], "running")
    queued = [platform.create_run(TINY_MODEL, max_steps=2, save_steps=0, eval_steps=0)]
    assert platform.run(queued[0]["id"])["queue_position"] == 1

    platform.redis_server.stop()
    try:
        # The web server answers without Redis: no queue position, and a new run is accepted.
        assert platform.run(queued[0]["id"])["queue_position"] is None
        queued.append(platform.create_run(TINY_MODEL, max_steps=2, save_steps=0, eval_steps=0))
        assert platform.wait_for_run(training["id"], ("succeeded", "failed"))["status"] == "succeeded"
        platform.wait_for(lambda: platform.work_horse(worker) is None, 30, "the work horse to exit")
        time.sleep(2)  # the worker's bookkeeping of the ended job, and a maintenance turn, meet the outage
        assert worker.poll() is None and scheduler.poll() is None, platform.logs()
    finally:  # the same port, no data: every queue is empty (and a failure here leaves Redis up for the next test)
        platform.redis_server.start()

    for run in queued:
        done = platform.wait_for_run(run["id"], ("succeeded", "failed"), timeout=90)
        assert done["status"] == "succeeded", (done, platform.logs())
        assert [line for line in reconciler_lines(platform, run["id"]) if "queued again" in line]
    assert worker.poll() is None and scheduler.poll() is None, platform.logs()
    assert "Redis was unreachable when job" in worker.log.read_text()


def test_a_worker_warns_at_start_when_redis_may_evict_jobs(fresh):
    from tinyforge.core.embedded_redis import EmbeddedRedis

    platform = fresh
    folder = platform.data_dir.parent / "evicting-redis"
    with EmbeddedRedis(folder / "redis.sock", folder) as server:
        server._server.config_set("maxmemory-policy", "allkeys-lru")
        worker = platform.start_worker("evicting", REDIS_URL=server.url)
        try:
            platform.wait_for(lambda: "not noeviction" in worker.log.read_text(errors="replace"), 30, "the warning")
        finally:
            platform.stop_worker(worker)
    assert "Redis maxmemory-policy is allkeys-lru, not noeviction" in worker.log.read_text()
