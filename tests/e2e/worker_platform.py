"""A real platform for the worker tests: a migrated database of its own, the web server, RQ
training workers and the scheduler as subprocesses (`manage.py rqworker`, the platform's worker
class), on a real Redis: a database number of its own on REDIS_URL's server when set (CI), else an
embedded redis-server in the platform's data directory. Tests talk to it over HTTP with an API
token and kill, start and time workers like an operator would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from e2e.conftest import BACKEND, _free_port, _own_postgres_database, _wait_for_http
from tinyforge.core.worker import CONTROL_QUEUE, WORK_QUEUES

SEED = """
import hashlib, json
from django.contrib.auth import get_user_model
from tinyforge.accounts.models import ApiToken, Membership, Role, Team
from tinyforge.core import storage
from tinyforge.datasets.models import Dataset, DatasetVersion
from tinyforge.projects.models import Project
team = Team.all_teams.create(name="Ops", slug="ops")
user = get_user_model().objects.create_user(username="olga", email="olga@example.com", password="x" * 20)
Membership.all_teams.create(team=team, user=user, role=Role.OWNER)
secret, prefix, token_hash = ApiToken.new_secret()
ApiToken.all_teams.create(user=user, team=team, name="tests", prefix=prefix, token_hash=token_hash, scopes=["read", "write"])
project = Project.all_teams.create(team=team, name="reliability")
dataset = Dataset.all_teams.create(project=project, name="toy")
content = open(%r, "rb").read()
version = DatasetVersion.all_teams.create(dataset=dataset, number=1, status="ready", source_kind="upload",
                                          row_count=content.count(b"\\n"), size_bytes=len(content),
                                          sha256=hashlib.sha256(content).hexdigest())
version.storage_key = storage.dataset_version_key(project.pk, dataset.pk, version.pk)
with storage.atomic_write(version.storage_key) as handle:
    handle.write(content)
version.save()
print("SEEDED" + json.dumps({"token": secret, "project": project.pk, "version": version.pk}))
"""

# Short enough that the tests take seconds, in the same proportions as the defaults.
FAST_RELIABILITY = {
    "TINYFORGE_RUN_HEARTBEAT_SECONDS": "1",
    "TINYFORGE_RUN_STALE_SECONDS": "4",
    "TINYFORGE_RECONCILE_INTERVAL_SECONDS": "2",
    "TINYFORGE_RUN_CANCEL_GRACE_SECONDS": "5",
    "TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS": "60",
}


def descendants(pid: int) -> list[int]:
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found.append(child)
        found.extend(descendants(child))
    return found


@dataclass
class WorkerPlatform:
    data_dir: Path
    env: dict
    url: str = ""
    redis_url: str = ""
    token: str = ""
    project: int = 0
    version: int = 0
    workers: list = field(default_factory=list)
    processes: list = field(default_factory=list)

    def manage(self, *args: str, timeout: int = 300) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=BACKEND, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    # ---- processes
    def start_worker(self, name: str = "worker", **env) -> subprocess.Popen:
        """A training worker, as compose's `worker` runs it."""
        return self._start_rqworker(name, list(WORK_QUEUES), env)

    def start_scheduler(self, name: str = "scheduler", **env) -> subprocess.Popen:
        """The process that runs the periodic reconcilers, as compose's `scheduler` runs it."""
        return self._start_rqworker(name, ["--with-scheduler", CONTROL_QUEUE], env)

    def _start_rqworker(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = self.data_dir / f"{name}.log"
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *args],
            cwd=BACKEND, env={**self.env, **env}, stdout=log.open("a"), stderr=subprocess.STDOUT,
        )
        worker.log = log
        self.workers.append(worker)
        self.wait_for(lambda: "Listening on" in log.read_text(errors="replace"), 60, f"{name} to start")
        return worker

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL the worker and everything it started (its work horse, its scheduler), as when
        a container or a machine dies: nobody gets to clean up."""
        for pid in [*descendants(worker.pid), worker.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(timeout=10)

    def stop_worker(self, worker: subprocess.Popen) -> None:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_worker(worker)

    def stop_all_workers(self) -> None:
        for worker in self.workers:
            self.stop_worker(worker)
        self.workers.clear()

    # ---- API
    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"},
                             timeout=30, **kwargs)

    def create_run(self, model_dir: Path, **config) -> dict:
        config = {"batch_size": 4, "learning_rate": 3e-3, "max_seq_length": 128, "eval_generations": 0,
                  "lora_dropout": 0.0, "seed": 7, "validation_split": 0.2, **config}
        response = self.api("POST", "/api/v1/runs/", json={
            "project": self.project, "name": "run", "dataset_version": self.version, "base_model": str(model_dir),
            "method": "lora", "config": config})
        assert response.status_code == 201, response.text
        return response.json()

    def run(self, run_id: int) -> dict:
        return self.api("GET", f"/api/v1/runs/{run_id}/").json()

    def checkpoints(self, run_id: int) -> list[dict]:
        return self.api("GET", "/api/v1/checkpoints/", params={"run": run_id}).json()["results"]

    def events(self, run_id: int) -> list[dict]:
        return self.api("GET", f"/api/v1/runs/{run_id}/events/", params={"limit": 1000}).json()["results"]

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    def wait_for_run(self, run_id: int, statuses, timeout: float = 120) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        return self.wait_for(lambda: (run := self.run(run_id))["status"] in statuses and run, timeout,
                             f"run {run_id} to become {statuses}")

    def logs(self) -> str:
        out = []
        for log in sorted(self.data_dir.glob("*.log")):
            out.append(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)

    def redis(self):
        import redis

        return redis.Redis.from_url(self.redis_url)


def start_platform(data_dir: Path, dataset: Path, *, fast_reliability: bool = True) -> tuple[WorkerPlatform, list]:
    """The platform and the cleanups to run afterwards (in reverse). Without fast_reliability
    it runs with the production defaults (the benchmark)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(TINYFORGE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="tinyforge.settings", PYTHONUNBUFFERED="1",
               **(FAST_RELIABILITY if fast_reliability else {}))
    cleanups = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"], drop = _own_postgres_database(database_url)
        cleanups.append(drop)
    else:
        env.pop("DATABASE_URL", None)
    platform = WorkerPlatform(data_dir=data_dir, env=env)
    if os.environ.get("REDIS_URL"):
        # A database number of our own on the shared server (the browser journeys use 13).
        env["REDIS_URL"] = re.sub(r"/\d+$", "", os.environ["REDIS_URL"].split("?")[0]) + "/12"
        platform.redis_url = env["REDIS_URL"]
    else:
        from tinyforge.core.embedded_redis import EmbeddedRedis
        from tinyforge.core.env import embedded_redis_socket

        embedded = EmbeddedRedis(embedded_redis_socket(data_dir), data_dir).start()
        env.pop("REDIS_URL", None)
        platform.redis_url = embedded.url
        cleanups.append(embedded.stop)
    platform.redis().flushdb()
    platform.manage("migrate", "--noinput")
    seeded = platform.manage("shell", "-c", SEED % str(dataset))
    ids = json.loads(seeded.split("SEEDED", 1)[1])
    platform.token, platform.project, platform.version = ids["token"], ids["project"], ids["version"]
    port = _free_port()
    platform.url = f"http://127.0.0.1:{port}"
    web_log = data_dir / "web.log"
    web = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                           cwd=BACKEND, env=env, stdout=web_log.open("w"), stderr=subprocess.STDOUT)
    platform.processes.append(web)
    _wait_for_http(f"{platform.url}/api/v1/health/", web, web_log)
    return platform, cleanups


def stop_platform(platform: WorkerPlatform, cleanups: list) -> None:
    platform.stop_all_workers()
    for process in platform.processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    for cleanup in reversed(cleanups):
        cleanup()
