"""Fixtures shared by every test area."""

from __future__ import annotations

import pytest

from tinymodel import TINY_MODEL, build_tiny_model


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
        yield configured
        return
    from tinyforge.core.embedded_redis import EmbeddedRedis
    from tinyforge.core.env import embedded_redis_socket

    server = EmbeddedRedis(embedded_redis_socket(tinyforge_data_dir), tinyforge_data_dir).start()
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = server.url
    settings.RQ_REDIS_URL = server.url
    yield server.url
    server.stop()
