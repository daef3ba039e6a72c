import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from django.core.management import CommandError, call_command

from tinyforge.accounts.models import Membership


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


@pytest.mark.e2e
def test_it_runs_the_demo_and_stops_everything_it_started(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env["TINYFORGE_DATA_DIR"] = str(tmp_path / "data")
    demo = subprocess.Popen([sys.executable, "-m", "tinyforge.cli", "demo", "--port", str(port),
                             "--inference-port", str(free_port())], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            output.append(line)
            if "Press Ctrl-C" in line or demo.poll() is not None:
                break
        text = "".join(output)
        assert "sign in as:        demo / " in text, text[-3000:]
        password = (tmp_path / "data" / "demo_password").read_text()
        children = psutil.Process(demo.pid).children(recursive=True)
        # One training worker (--workers 1) and the scheduler, which alone runs the reconcilers.
        rqworkers = sorted(" ".join(child.cmdline()).split(" rqworker ", 1)[1]
                           for child in psutil.Process(demo.pid).children() if "rqworker" in child.cmdline())
        assert rqworkers == ["--with-scheduler control", "ingest train deploy"]
        assert any("redis-server" in line for line in processes_mentioning(str(tmp_path)))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            client.get("/api/v1/auth/csrf/")
            response = client.post("/api/v1/auth/login/", json={"username": "demo", "password": password},
                                   headers={"X-CSRFToken": client.cookies["csrftoken"]})
            assert response.status_code == 200, response.text
            assert [p["name"] for p in client.get("/api/v1/projects/").json()["results"]] == ["Demo project"]
            # One origin: the web server passes /v1/ on to the inference service the demo started.
            deadline = time.monotonic() + 60
            while (models := client.get("/v1/models")).status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert models.status_code == 401, models.text
            assert models.json()["error"]["code"] == "invalid_api_key"
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        if demo.poll() is None:
            demo.kill()
        demo.stdout.close()


