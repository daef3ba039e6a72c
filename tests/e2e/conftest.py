"""Browser journeys against the real platform, started by the test: a migrated database of its
own, the web server serving the built dashboard, an RQ worker and the scheduler, and Debian's
Chromium driven by Playwright (never a downloaded browser).

The web server, the worker, the scheduler and the inference service the Playground chats through
(`tinyforge serve-platform`) run as subprocesses with their own data directory, so the journey sees
exactly what a user of `make demo` sees. Screenshots of every page go to
test-artifacts/e2e/<journey>/ (the path is printed).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from urllib.parse import urlsplit, urlunsplit
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2e.browser import PASSWORD, REPO, Screenshots
from e2e.knowledge_teacher import TEACHER_MODEL, build_teacher_model
from redis_database import moved_up
from serving.conftest import smol_tiny_model_dir  # noqa: F401  (a fixture: the llama.cpp journey's base)
from tinymodel import TINY_MODEL

# The tiny model with SmolLM2's tokenizer, offered by name: llama.cpp's converter takes it.
SMOL_TINY_MODEL = "tiny-smol"

BACKEND = REPO / "backend"
FRONTEND_DIST = REPO / "frontend" / "dist"
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = Path(os.environ.get("TINYFORGE_CHROMIUM", "/usr/bin/chromium"))

SEED = """
from tinyforge.accounts.models import Membership, Role, Team
from django.contrib.auth import get_user_model
User = get_user_model()
from tinyforge.projects.models import Project
team = Team.all_teams.create(name="Acme", slug="acme")
for username, role in (("alice", Role.OWNER), ("vic", Role.VIEWER)):
    user = User.objects.create_user(username=username, email=f"{username}@example.com", password=%r)
    Membership.all_teams.create(team=team, user=user, role=role)
Project.all_teams.create(team=team, name="Acme launch", description="Seeded for the viewer's journey")
""" % PASSWORD


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _own_postgres_database(url: str):
    """A database of this test run's own on the server DATABASE_URL points at (other helpers
    and test runs share that server). Returns its URL and a function that drops it."""
    import psycopg

    name = f"tinyforge_e2e_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}")), drop


@dataclass
class Platform:
    url: str
    env: dict
    data_dir: Path
    processes: list = field(default_factory=list)

    def manage(self, *args: str, timeout: int = 300) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BACKEND, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def log_tail(self) -> str:
        out = []
        for name in ("web.log", "worker.log", "scheduler.log", "inference.log"):
            path = self.data_dir / name
            if path.exists():
                out.append(f"--- {name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)


def _wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60, what: str = "the web server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer {url} within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def teacher_model_dir(tmp_path_factory) -> Path:
    """The tiny Llama with a context long enough to serve as the knowledge recipe's teacher."""
    return build_teacher_model(tmp_path_factory.mktemp("tiny-teacher"))


@pytest.fixture(scope="session")
def platform(tmp_path_factory, tiny_model_dir, teacher_model_dir, smol_tiny_model_dir) -> Platform:  # noqa: F811
    if not (FRONTEND_DIST / "index.html").is_file():
        pytest.fail("The dashboard is not built: run `make frontend` (make test does) before the browser journeys.")
    data_dir = tmp_path_factory.mktemp("platform") / "data"
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        TINYFORGE_DATA_DIR=str(data_dir),
        TINYFORGE_FRONTEND_DIR=str(FRONTEND_DIST),
        TINYFORGE_MODEL_FOLDERS=f"{TINY_MODEL}={tiny_model_dir},{TEACHER_MODEL}={teacher_model_dir},"
                                f"{SMOL_TINY_MODEL}={smol_tiny_model_dir}",
        TINYFORGE_MODEL_CACHE=os.environ.get("TINYFORGE_MODEL_CACHE", str(Path.home() / ".cache" / "tinyforge" / "models")),
        DJANGO_SETTINGS_MODULE="tinyforge.settings",
        PYTHONUNBUFFERED="1",
    )
    cleanups = []
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"], drop = _own_postgres_database(database_url)
        cleanups.append(drop)
    else:
        env.pop("DATABASE_URL", None)  # SQLite in the data directory
    embedded = None
    if os.environ.get("REDIS_URL"):
        # A database number of our own on the shared server (8 above the suite's), so no other
        # test run's worker picks up this journey's jobs, and two runs given different
        # REDIS_URL databases do not flush each other's journeys.
        env["REDIS_URL"] = moved_up(os.environ["REDIS_URL"], 8)
    else:
        from tinyforge.core.embedded_redis import EmbeddedRedis

        from tinyforge.core.env import embedded_redis_socket

        # The same socket the web server and the worker derive from TINYFORGE_DATA_DIR.
        embedded = EmbeddedRedis(embedded_redis_socket(data_dir), data_dir)
        embedded.start()
    port = _free_port()
    # The inference service, as `make demo` runs it: the web server passes the Playground's chats
    # and /v1/ on to it.
    inference_port = _free_port()
    env["TINYFORGE_INFERENCE_URL"] = f"http://127.0.0.1:{inference_port}"
    platform = Platform(url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir)
    try:
        platform.manage("migrate", "--noinput")
        platform.manage("collectstatic", "--noinput")  # as `make demo` does: the admin's files
        platform.manage("shell", "-c", SEED)
        if embedded is None:
            import redis  # a leftover queue from an earlier run must not leak in

            redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        web_log = data_dir / "web.log"
        web = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=BACKEND, env=env, stdout=web_log.open("w"), stderr=subprocess.STDOUT,
        )
        platform.processes.append(web)
        # A training worker, the scheduler (the periodic reconcilers) and the evaluator, as compose runs them.
        from tinyforge.core.worker import CONTROL_QUEUE, EVAL_QUEUE, WORK_QUEUES

        for name, args in (("worker", WORK_QUEUES), ("scheduler", ("--with-scheduler", CONTROL_QUEUE)),
                           ("evaluator", (EVAL_QUEUE,))):
            log = data_dir / f"{name}.log"
            platform.processes.append(subprocess.Popen(
                [sys.executable, "manage.py", "rqworker", *args],
                cwd=BACKEND, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            ))
        inference_log = data_dir / "inference.log"
        inference = subprocess.Popen(
            [sys.executable, "-m", "tinyforge.cli", "serve-platform", "--host", "127.0.0.1", "--port", str(inference_port),
             "--device", "cpu", "--threads", "1"],
            cwd=BACKEND, env=env, stdout=inference_log.open("w"), stderr=subprocess.STDOUT,
        )
        platform.processes.append(inference)
        _wait_for_http(f"{platform.url}/api/v1/health/", web, web_log)
        _wait_for_http(f"{env['TINYFORGE_INFERENCE_URL']}/health", inference, inference_log, what="the inference service")
        yield platform
    finally:
        for process in reversed(platform.processes):
            process.terminate()
        for process in platform.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        if embedded is not None:
            embedded.stop()
        for cleanup in cleanups:
            cleanup()


# Module scope, not session: Playwright's sync API marks its event loop as running in the main
# thread until it stops, and later tests that call asyncio.run() (tests/serving) would then fail.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make browser`, or apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture
def journey(request, browser, platform, capsys):
    """A fresh browser context (no cookies) with a screenshot recorder for this test."""
    context = browser.new_context(viewport={"width": 1366, "height": 860}, base_url=platform.url)
    context.set_default_timeout(15_000)
    console_errors: list[str] = []
    # Pages report what the Content-Security-Policy refused as events, with the directive.
    context.expose_binding("tinyforgeCspViolation", lambda source, text: console_errors.append(text))
    context.add_init_script("""document.addEventListener("securitypolicyviolation", (event) =>
        window.tinyforgeCspViolation(`CSP refused ${event.blockedURI || "inline"} (${event.violatedDirective})`));""")
    page = context.new_page()
    page.on("pageerror", lambda error: console_errors.append(str(error)))
    # Console errors include what the Content-Security-Policy refused ("Refused to load ...");
    # the pages' own answers that are errors on purpose (401 before sign-in, 403 for a viewer)
    # show as failed resource loads, which the journeys check themselves.
    page.on("console", lambda message: message.type == "error" and not message.text.startswith(
        "Failed to load resource: the server responded with a status of 4") and console_errors.append(message.text))
    folder = ARTIFACTS / request.node.name
    shots = Screenshots(page, folder)
    with capsys.disabled():
        print(f"\n[e2e] screenshots of {request.node.name}: {folder}")
    yield page, shots
    context.close()
    assert not console_errors, f"JavaScript or Content-Security-Policy errors in the page: {console_errors}"
