"""A real MLflow tracking server for the tracking tests (`mlflow server` over SQLite and a local
artifact folder, with MLflow's basic-auth app so credentials can be wrong), started once per
session; W&B runs in its offline mode and needs no server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass

import pytest

from personas import acme, alice, bob, charlie, client_for, fast_password_hashing, globex, token_client, vic  # noqa: F401
from training.conftest import make_run, tiny_config, toy_version  # noqa: F401

ADMIN_USER = "tinyforge-admin"
ADMIN_PASSWORD = "a-Test-Password-for-mlflow-42"
SERVER_START_SECONDS = 180


def require_mlflow_server():
    """Skip (with the reason) where MLflow's client or its server's dependencies are not installed."""
    for module in ("mlflow", "flask", "sqlalchemy", "alembic", "flask_wtf"):
        pytest.importorskip(module, reason=f"{module} is not installed: the MLflow tests need "
                                           "`pip install -e 'backend[dev]'` (make venv)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MlflowServer:
    url: str
    username: str
    password: str

    def client(self):
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = self.username, self.password
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    require_mlflow_server()
    root = tmp_path_factory.mktemp("mlflow-server")
    auth_config = root / "basic_auth.ini"
    auth_config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.sqlite'}\n"
        f"admin_username = {ADMIN_USER}\nadmin_password = {ADMIN_PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    port = free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(auth_config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only"}
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.sqlite'}", "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
    server = MlflowServer(url, ADMIN_USER, ADMIN_PASSWORD)
    server.client().search_experiments()  # its first API answer is slow (lazy imports): not in a test
    yield server
    os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


class PortGate:
    """A TCP relay in front of the MLflow server that the test can shut, so that from the
    tracker's side the server is stopped (connection refused), and open again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def shut(self) -> None:
        """New connections are refused, open ones (the client's keep-alive pool) are cut."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not
        except OSError:
            pass
        self.listener.close()
        for connection in self.connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def port_gate(mlflow_server):
    from urllib.parse import urlsplit

    gate = PortGate(urlsplit(mlflow_server.url).port)
    yield gate
    gate.shut()
