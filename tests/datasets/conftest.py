"""Fixtures for the dataset API: personas, the bad-file corpus, a SQLite database in a folder the
server allows, and helpers that upload through the API and run the ingest job by calling it."""

from __future__ import annotations

import json
import sqlite3

import django_rq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from connectors.samples import write_bad_corpus
from personas import acme, alice, bob, charlie, client_for, fast_password_hashing, globex, token_client, vic  # noqa: F401
from tinyforge.datasets.jobs import ingest_version
from tinyforge.datasets.models import DatasetVersion



@pytest.fixture(scope="session")
def bad_files(tmp_path_factory):
    """Hostile and broken files by case name (tests/connectors/samples.py)."""
    return write_bad_corpus(tmp_path_factory.mktemp("bad"))


@pytest.fixture
def ingest_queue():
    queue = django_rq.get_queue("ingest")
    queue.empty()
    yield queue
    queue.empty()


@pytest.fixture
def upload(client_for, alice, ingest_queue, django_capture_on_commit_callbacks):
    """upload(dataset, [(name, bytes)], client=alice's, **options) -> the response (jobs enqueued on commit)."""

    def send(dataset, files, client=None, **options):
        body = {"files": [SimpleUploadedFile(name, data) for name, data in files]}
        if options:
            body["options"] = json.dumps(options)
        with django_capture_on_commit_callbacks(execute=True):
            return (client or client_for(alice)).post(f"/api/v1/datasets/{dataset.pk}/upload/", body,
                                                      format="multipart")

    return send


@pytest.fixture
def start_import(client_for, alice, ingest_queue, django_capture_on_commit_callbacks):
    """start_import(dataset, source_kind, connection, client=alice's, parent=None, **source_config) -> the response."""

    def send(dataset, source_kind, connection, client=None, parent=None, **source_config):
        body = {"dataset": dataset.pk, "source_kind": source_kind, "source_config": source_config}
        if connection is not None:
            body["connection"] = connection if isinstance(connection, int) else connection.pk
        if parent is not None:
            body["parent"] = parent.pk
        with django_capture_on_commit_callbacks(execute=True):
            return (client or client_for(alice)).post("/api/v1/dataset-versions/", body, format="json")

    return send


@pytest.fixture
def ingested():
    """ingested(response or version id) -> the version after its ingest job ran (called directly)."""

    def run(created) -> DatasetVersion:
        version_id = created if isinstance(created, int) else created.json()["id"]
        ingest_version(version_id)
        return DatasetVersion.all_teams.get(pk=version_id)

    return run


@pytest.fixture
def sqlite_dir(tmp_path, settings):
    settings.SQLITE_IMPORT_DIRS = [str(tmp_path)]
    return tmp_path


@pytest.fixture
def faq_db(sqlite_dir):
    """A SQLite file of 30 question/answer rows in an allowed folder; returns its URL."""
    path = sqlite_dir / "faq.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE faq (id integer PRIMARY KEY, question text, answer text, team text)")
        conn.executemany("INSERT INTO faq VALUES (?, ?, ?, ?)",
                         [(n, f"How do I do task {n}?", f"Open panel {n} and press go.", "support")
                          for n in range(1, 31)])
    conn.close()
    return f"sqlite:///{path}"
