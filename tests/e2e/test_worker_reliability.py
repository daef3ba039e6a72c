"""Training runs with real worker processes on real Redis: killed workers, timeouts, duplicate
deliveries, Redis losing its data, and Redis's eviction policy."""

from __future__ import annotations

import time

import pytest
from rq import Queue

from e2e.worker_platform import FAST_RELIABILITY, start_platform, stop_platform
from training.conftest import toy_jsonl

pytestmark = pytest.mark.e2e

STALE = int(FAST_RELIABILITY["TINYFORGE_RUN_STALE_SECONDS"])
INTERVAL = int(FAST_RELIABILITY["TINYFORGE_RECONCILE_INTERVAL_SECONDS"])


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker-platform")
    dataset = folder / "toy.jsonl"
    dataset.write_bytes(toy_jsonl())
    (folder / "data").mkdir()
    platform, cleanups = start_platform(folder / "data", dataset)
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
    run = platform.create_run(tiny_model_dir, max_steps=1_000_000, save_steps=5)
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
    lost = platform.create_run(tiny_model_dir, max_steps=1_000_000, save_steps=0, eval_steps=0)
    platform.wait_for_run(lost["id"], "running")  # its heartbeat started with it
    platform.start_worker("busy")
    busy = platform.create_run(tiny_model_dir, max_steps=1_000_000, save_steps=0, eval_steps=0)
    platform.wait_for_run(busy["id"], "running")
    platform.kill_worker(doomed)
    # Well inside the train job timeout (60 s): the busy run is still training when this passes.
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
    run = platform.create_run(tiny_model_dir, max_steps=40, save_steps=5, eval_steps=20)
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


def test_a_job_that_times_out_fails_with_a_clear_event_and_no_temporary_files(fresh, tiny_model_dir):
    platform = fresh
    platform.start_worker()
    run = platform.create_run(tiny_model_dir, max_steps=1_000_000, save_steps=0, eval_steps=0)
    failed = platform.wait_for_run(run["id"], "failed", timeout=120)
    timeout = FAST_RELIABILITY["TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS"]
    assert failed["error"].startswith(f"timed out: training ran longer than the train job timeout ({timeout} s")
    error = [e for e in platform.events(run["id"]) if e["level"] == "error"]
    assert len(error) == 1 and "JobTimeoutException" in error[0]["data"]["traceback"]
    assert error[0]["data"]["last_lines"]
    run_dir = platform.data_dir / "projects" / str(platform.project) / "runs" / str(run["id"])
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith((".partial", ".old")) or p.name == ".final"]
    assert leftovers == []


def test_the_same_job_delivered_twice_gives_one_result(fresh, tiny_model_dir):
    platform = fresh
    run = platform.create_run(tiny_model_dir, max_steps=6, save_steps=3)
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


def test_runs_queued_when_redis_loses_its_data_still_run(fresh, tiny_model_dir):
    platform = fresh
    runs = [platform.create_run(tiny_model_dir, max_steps=4) for _ in range(2)]
    assert [platform.run(r["id"])["queue_position"] for r in runs] == [1, 2]
    platform.redis().flushdb()  # a Redis restarted without persistence
    assert platform.run(runs[0]["id"])["queue_position"] is None
    platform.start_worker()
    platform.start_scheduler()  # re-enqueues them once the enqueue grace has passed
    for run in runs:
        assert platform.wait_for_run(run["id"], ("succeeded", "failed"), timeout=120)["status"] == "succeeded"
        assert any("queued again" in line for line in reconciler_lines(platform, run["id"]))


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
