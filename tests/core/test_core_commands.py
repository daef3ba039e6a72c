import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest
from django.core.management import CommandError, call_command

from e2e.worker_platform import FAST_RELIABILITY
from tinyforge import demo
from tinyforge.accounts.models import Membership
from tinyforge.demo import Child, GaveUp, Supervisor
from tinymodel import TINY_MODEL
from training.conftest import toy_jsonl


def test_it_creates_the_first_admin_once(db, monkeypatch, capsys):
    monkeypatch.setenv("TINYFORGE_ADMIN_USERNAME", "root")
    monkeypatch.setenv("TINYFORGE_ADMIN_PASSWORD", "a long enough password")
    monkeypatch.setenv("TINYFORGE_ADMIN_TEAM", "Ops")
    call_command("createadmin")
    call_command("createadmin")
    membership = Membership.all_teams.select_related("user", "team").get(user__username="root")
    assert membership.user.is_superuser and membership.team.name == "Ops" and membership.role == "owner"
    assert "already exists" in capsys.readouterr().out


def test_it_says_what_is_missing_for_the_first_admin(db, monkeypatch):
    monkeypatch.setenv("TINYFORGE_ADMIN_USERNAME", "root")
    monkeypatch.delenv("TINYFORGE_ADMIN_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="TINYFORGE_ADMIN_PASSWORD"):
        call_command("createadmin")


def processes_mentioning(text: str) -> list[str]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and text in " ".join(process.cmdline()):
                found.append(" ".join(process.cmdline()))
        except psutil.Error:
            pass  # gone, or a zombie of someone else's
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_supervisor_restarts_a_crashed_child_with_its_leftovers_stopped(tmp_path, capsys):
    """A child killed with SIGKILL is restarted after the first backoff; what it had started goes
    with it, even in a process group of its own (as RQ starts its work horses); the others run on."""
    leftover = tmp_path / "leftover.pid"
    parent = Child("parent", [sys.executable, "-c", "import subprocess, sys, time; child = subprocess.Popen("
                              "[sys.executable, '-c', 'import time; time.sleep(120)'], process_group=0); "
                              f"open({str(leftover)!r}, 'w').write(str(child.pid)); time.sleep(120)"])
    steady = Child("steady", [sys.executable, "-c", "import time; time.sleep(120)"])
    supervisor = Supervisor([parent, steady], dict(os.environ))
    supervisor.start()
    try:
        wait_until(lambda: leftover.exists() and leftover.read_text(), "the grandchild")
        first, horse, steady_pid = parent.process.pid, int(leftover.read_text()), steady.process.pid
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: supervisor.check() or parent.process.pid != first, "the restart")
        assert not psutil.pid_exists(horse) or psutil.Process(horse).status() == psutil.STATUS_ZOMBIE
        assert parent.process.poll() is None and steady.process.pid == steady_pid and steady.process.poll() is None
    finally:
        supervisor.stop()
    assert parent.process.poll() is not None and steady.process.poll() is not None
    err = capsys.readouterr().err
    assert "tinyforge demo: parent exited (killed by SIGKILL) after" in err and "restarting it in 1 s" in err
    assert f"tinyforge demo: parent restarted (pid {parent.process.pid})" in err


def test_the_supervisor_backs_off_and_gives_up_on_a_child_that_keeps_crashing(monkeypatch, capsys):
    monkeypatch.setattr(demo, "FIRST_BACKOFF_SECONDS", 0.1)
    crashing = Child("crashing", [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = Supervisor([crashing, Child("steady", [sys.executable, "-c", "import time; time.sleep(120)"])],
                            dict(os.environ))
    supervisor.start()
    try:
        with pytest.raises(GaveUp, match=r"crashing exited \(status 3\) 5 times in a row within 30 s of starting"):
            wait_until(lambda: supervisor.check(), "giving up")
    finally:
        supervisor.stop()
    delays = re.findall(r"crashing exited \(status 3\) after \d+ s; restarting it in ([\d.]+) s", capsys.readouterr().err)
    assert delays == ["0.1", "0.2", "0.4", "0.8"]


def wait_until(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Output:
    """The demo's output, read as it comes by a thread."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self.thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)


def rqworker_pids(demo_pid: int) -> dict[str, int]:
    """The demo's live RQ worker processes by their queue arguments."""
    pids = {}
    for child in psutil.Process(demo_pid).children():
        try:
            if "rqworker" in child.cmdline():
                pids[" ".join(child.cmdline()).split(" rqworker ", 1)[1]] = child.pid
        except psutil.ZombieProcess:
            pass  # killed, not yet reaped by the demo
    return pids


@pytest.mark.e2e
def test_it_runs_the_demo_survives_a_killed_worker_and_stops_everything_it_started(tmp_path, tiny_model_dir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["TINYFORGE_DATA_DIR"] = str(tmp_path / "data")
    env["TINYFORGE_MODEL_FOLDERS"] = f"{TINY_MODEL}={tiny_model_dir}"  # the API takes model names, not paths
    env.update(FAST_RELIABILITY)  # a lost run is the reconciler's within seconds
    demo = subprocess.Popen([sys.executable, "-m", "tinyforge.cli", "demo", "--port", str(port),
                             "--inference-port", str(free_port())], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Output(demo.stdout)
    try:
        wait_until(lambda: "Press Ctrl-C" in output.text or demo.poll() is not None, "the demo", timeout=120)
        assert "sign in as:        demo / " in output.text, output.text[-3000:]
        password = (tmp_path / "data" / "demo_password").read_text()
        children = psutil.Process(demo.pid).children(recursive=True)
        # One training worker (--workers 1), the scheduler, which alone runs the reconcilers, and the
        # evaluator, so evaluations never wait behind training.
        assert sorted(rqworker_pids(demo.pid)) == ["--with-scheduler control", "eval", "ingest train deploy"]
        assert any("redis-server" in line for line in processes_mentioning(str(tmp_path)))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            client.get("/api/v1/auth/csrf/")
            client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
            response = client.post("/api/v1/auth/login/", json={"username": "demo", "password": password})
            assert response.status_code == 200, response.text
            client.headers["X-CSRFToken"] = client.cookies["csrftoken"]  # a new one with the session
            projects = client.get("/api/v1/projects/").json()["results"]
            assert [p["name"] for p in projects] == ["Demo project"]
            # One origin: the web server passes /v1/ on to the inference service the demo started.
            wait_until(lambda: client.get("/v1/models").status_code != 503, "the inference service")
            assert client.get("/v1/models").json()["error"]["code"] == "invalid_api_key"

            # A run in progress when its worker is killed, as in issue 15.
            dataset = client.post("/api/v1/datasets/", json={"project": projects[0]["id"], "name": "toy"}).json()
            upload = client.post(f"/api/v1/datasets/{dataset['id']}/upload/",
                                 files={"files": ("toy.jsonl", toy_jsonl(), "application/jsonl")})
            assert upload.status_code == 201, upload.text
            run = client.post("/api/v1/runs/", json={
                "project": projects[0]["id"], "name": "doomed", "dataset_version": upload.json()["id"],
                "base_model": TINY_MODEL, "method": "lora",
                "config": {"batch_size": 4, "max_seq_length": 128, "eval_generations": 0, "max_steps": 1_000_000,
                           "save_steps": 0, "eval_steps": 0, "validation_split": 0.2}}).json()
            wait_until(lambda: client.get(f"/api/v1/runs/{run['id']}/").json()["status"] == "running", "the run")
            worker = rqworker_pids(demo.pid)["ingest train deploy"]
            horse = psutil.Process(worker).children()
            os.kill(worker, signal.SIGKILL)

            restarted = wait_until(lambda: re.search(r"tinyforge demo: worker-1 restarted \(pid (\d+)\)", output.text),
                                   "the restart")
            assert "tinyforge demo: worker-1 exited (killed by SIGKILL)" in output.text, output.text[-3000:]
            assert rqworker_pids(demo.pid)["ingest train deploy"] == int(restarted.group(1)) != worker
            assert all(not h.is_running() or h.status() == psutil.STATUS_ZOMBIE for h in horse)  # the work horse too
            # Everything else kept answering; the run is the reconciler's, as with any lost worker.
            assert client.get("/api/v1/health/").status_code == 200
            assert client.get("/v1/models").json()["error"]["code"] == "invalid_api_key"
            failed = wait_until(lambda: (r := client.get(f"/api/v1/runs/{run['id']}/").json())["status"] == "failed"
                                and r, "the reconciler to fail the run")
            assert "stopped responding" in failed["error"], failed
        assert demo.poll() is None, output.text[-3000:]
        children = psutil.Process(demo.pid).children(recursive=True)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        if demo.poll() is None:  # a failed test: nothing of the demo may outlive it
            for child in psutil.Process(demo.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            demo.kill()
            for process in psutil.process_iter():  # the embedded Redis, which runs detached
                with contextlib.suppress(psutil.Error):
                    if str(tmp_path) in " ".join(process.cmdline()):
                        process.kill()
        output.thread.join(timeout=10)
        demo.stdout.close()
