"""Fixtures shared by every test area."""

from __future__ import annotations

import pytest

from tinymodel import TINY_MODEL, build_tiny_model


def pytest_configure(config):
    """A pytest-xdist worker takes its share of the cores, for PyTorch here and in the processes its
    tests start: two workers of two threads each on two cores would make every two-thread product
    wait for a thread that the other worker holds."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A two-layer Llama with its own tokenizer and chat template, as a Hugging Face folder.

    Read-only for tests: copy it before changing anything inside.
    """
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def tiny_base_model(settings, tiny_model_dir):
    """The tiny model as the API names it (TINY_MODEL)."""
    settings.MODEL_FOLDERS = {**settings.MODEL_FOLDERS, TINY_MODEL: str(tiny_model_dir)}
    return TINY_MODEL


@pytest.fixture(scope="session", autouse=True)
def tinyforge_data_dir(tmp_path_factory):
    """The platform's files (uploads, dataset versions, checkpoints, exports) go to a fresh
    folder for the test session, never to the demo's data directory."""
    from django.conf import settings

    path = tmp_path_factory.mktemp("tinyforge-data")
    settings.TINYFORGE_DATA_DIR = path
    return path


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """On SQLite, the test database is a file in WAL mode, as the product's is, not Django's default
    in-memory database. That one is shared between threads through SQLite's shared cache, whose
    table locks fail at once ("database table is locked") instead of waiting out the busy timeout:
    a test whose training thread wrote while the test thread read failed now and then."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("sqlite") / "test.sqlite3")


@pytest.fixture(scope="session", autouse=True)
def redis_url(tinyforge_data_dir):
    """The Redis the RQ queues use: REDIS_URL when set (CI), else an embedded redis-server
    started for this session and stopped after it."""
    import os

    from django.conf import settings

    configured = os.environ.get("REDIS_URL")
    if configured:
        url = _worker_database(configured)
        if url != configured:  # a pytest-xdist worker: the queues of a database number of its own
            _use_redis(settings, url)
            os.environ["REDIS_URL"] = url  # the worker processes tests start inherit it
        yield url
        return
    from tinyforge.core.embedded_redis import EmbeddedRedis
    from tinyforge.core.env import embedded_redis_socket

    server = EmbeddedRedis(embedded_redis_socket(tinyforge_data_dir), tinyforge_data_dir).start()
    _use_redis(settings, server.url)
    yield server.url
    server.stop()


def _use_redis(settings, url: str) -> None:
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = url
    settings.RQ_REDIS_URL = url
    if settings.REDIS_URL:
        settings.REDIS_URL = url


def _worker_database(url: str) -> str:
    """REDIS_URL for this pytest-xdist worker: gw1 one database up, so that two workers sharing
    one server never take or flush each other's jobs (the browser journeys add 8 more, at most 4
    workers: `make test`'s --maxprocesses)."""
    import os
    import re

    from redis_database import moved_up

    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return moved_up(url, int(worker[1])) if worker else url


def pytest_collection_modifyitems(config, items):
    """The modules that take longest (SmolLM2, then real processes) run first. Under pytest-xdist
    (`make test` runs two workers, one module on one worker) a long module started last would leave
    the other worker idle for its whole length."""
    def rank(item) -> int:  # markers set on a test, its class or its module's pytestmark
        return 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("e2e") else 2

    modules: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        modules[module] = min(modules.get(module, 2), rank(item))
    items.sort(key=lambda item: modules[item.nodeid.split("::")[0]])  # stable: each module's order kept
