"""A real MLflow tracking server for the tracking tests (`mlflow server` over SQLite and a local
artifact folder, with MLflow's basic-auth app so credentials can be wrong), started once per
session; W&B runs in its offline mode and needs no server."""

from __future__ import annotations

import socket
import threading

import pytest

from mlflow_server import free_port, start_mlflow_server
from personas import acme, alice, bob, charlie, client_for, fast_password_hashing, globex, token_client, vic  # noqa: F401
from training.conftest import make_run, tiny_config, toy_version  # noqa: F401


def require_mlflow_server():
    """Skip (with the reason) where MLflow's client or its server's dependencies are not installed."""
    for module in ("mlflow", "flask", "sqlalchemy", "alembic", "flask_wtf"):
        pytest.importorskip(module, reason=f"{module} is not installed: the MLflow tests need "
                                           "`pip install -e 'backend[dev]'` (make venv)")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    require_mlflow_server()
    try:
        server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server
    server.stop()


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
