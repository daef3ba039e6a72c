"""POST /api/v1/datasets/{id}/upload/: multipart files -> a pending version and its ingest job."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from dataset_files import GOOD_JSONL
from personas import assert_error
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.datasets.models import DatasetVersion


def test_it_stores_the_files_and_queues_the_ingest_job(upload, acme, ingest_queue):
    response = upload(acme.dataset, [("faq.jsonl", GOOD_JSONL)])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending" and body["number"] == 2 and body["source_kind"] == "upload"
    assert ingest_queue.job_ids == [f"ingest-version-{body['id']}"]
    assert ingest_queue.fetch_job(ingest_queue.job_ids[0]).args == (body["id"],)
    (stored,) = body["source_config"]["files"]
    assert stored["name"] == "faq.jsonl" and stored["size"] == len(GOOD_JSONL)
    assert storage.path(stored["key"]).read_bytes() == GOOD_JSONL


def test_it_ingests_an_upload_into_a_ready_version_with_sha256_and_download(upload, ingested, acme, client_for,
                                                                          alice):
    version = ingested(upload(acme.dataset, [("faq.jsonl", GOOD_JSONL)]))
    assert version.status == "ready", version.error
    assert version.row_count == 6 and version.progress == 1.0 and version.heartbeat_at is not None
    data = storage.path(version.storage_key).read_bytes()
    assert version.sha256 == hashlib.sha256(data).hexdigest() and version.size_bytes == len(data)
    assert version.validation_report["valid_rows"] == 6 and version.validation_report["invalid_count"] == 0
    assert version.stats["records_read"] == 6 and version.stats["sources"][0]["shape"] == "alpaca"
    response = client_for(alice).get(f"/api/v1/dataset-versions/{version.pk}/download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    assert b"".join(response.streaming_content) == data
    messages = list(Event.all_teams.filter(dataset_version=version).values_list("message", flat=True))
    assert messages[0].startswith("version 2 of faq queued") and "ready: 6 rows" in messages[-1]


def test_it_joins_several_files_of_mixed_kinds_into_one_version(upload, ingested, acme):
    notes = b"# Holidays\n\nEveryone gets 25 days of paid leave each year.\n\n# Expenses\n\nKeep every receipt.\n"
    version = ingested(upload(acme.dataset, [("faq.jsonl", GOOD_JSONL), ("handbook.md", notes)], recipe="sections"))
    assert version.status == "ready", version.error
    assert version.row_count == 8
    rows = [json.loads(line) for line in storage.path(version.storage_key).read_text().splitlines()]
    assert rows[-1]["output"] == "Keep every receipt." and rows[-1]["metadata"]["source"] == "handbook.md"
    assert [s["source"] for s in version.stats["sources"]] == ["faq.jsonl", "handbook.md"]


def test_it_measures_token_lengths_with_the_chosen_base_model(upload, ingested, acme, tiny_base_model):
    version = ingested(upload(acme.dataset, [("faq.jsonl", GOOD_JSONL)], base_model=tiny_base_model,
                              max_seq_length=20))
    report = version.validation_report
    assert version.status == "ready" and report["base_model"] == tiny_base_model
    histogram = report["token_histogram"]
    assert histogram["count"] == 6 and sum(histogram["counts"]) == 6
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1 and histogram["max"] >= histogram["min"] > 0
    assert report["over_context_count"] == 6 and report["max_seq_length"] == 20  # every row is longer than 20
    assert version.stats["token_histogram"] == histogram


def test_a_teammate_may_upload_but_a_viewer_may_not(upload, acme, client_for, bob, vic):
    assert upload(acme.dataset, [("a.jsonl", GOOD_JSONL)], client=client_for(bob)).status_code == 201
    assert_error(upload(acme.dataset, [("a.jsonl", GOOD_JSONL)], client=client_for(vic)), 403, "permission_denied")


def test_an_outsider_cannot_upload_to_another_teams_dataset(upload, acme, globex, client_for, charlie):
    assert_error(upload(acme.dataset, [("a.jsonl", GOOD_JSONL)], client=client_for(charlie)), 404, "not_found")
    assert not DatasetVersion.all_teams.filter(dataset=acme.dataset, number=2).exists()


@pytest.mark.parametrize("options, field", [
    ({"recipe": "poetry"}, "options.recipe"),
    ({"mapping": {"output": "a"}}, "options.mapping"),
    ({"chunk_chars": 500, "overlap_chars": 500}, "options.overlap_chars"),
    ({"encoding": "klingon-8"}, "options.encoding"),
    ({"recipe": "qa"}, "options.qa"),
    ({"colour": "blue"}, "options.colour"),
])
def test_bad_import_options_are_refused_naming_the_field(upload, acme, options, field, ingest_queue):
    error = assert_error(upload(acme.dataset, [("a.jsonl", GOOD_JSONL)], **options), 400, "invalid")
    assert field in error["fields"], error
    assert ingest_queue.count == 0


def test_an_upload_without_files_is_a_400(client_for, alice, acme):
    response = client_for(alice).post(f"/api/v1/datasets/{acme.dataset.pk}/upload/", {"note": "x"}, format="multipart")
    assert "files" in assert_error(response, 400)["fields"]


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes that counts how much of it the server reads."""

    def __init__(self, size: int):
        self.size, self.read_bytes = size, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"x" * n
        self.read_bytes += n
        return n


def test_an_upload_over_the_limit_is_a_413_before_the_body_is_read(settings, alice, acme, client_for):
    settings.MAX_UPLOAD_BYTES = 10_000
    session = client_for(alice).cookies[settings.SESSION_COOKIE_NAME].value
    body = CountingStream(5_000_000)
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": f"/api/v1/datasets/{acme.dataset.pk}/upload/",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": body,
        "CONTENT_TYPE": "multipart/form-data; boundary=xyz", "CONTENT_LENGTH": str(body.size),
        "HTTP_COOKIE": f"{settings.SESSION_COOKIE_NAME}={session}", "wsgi.errors": io.StringIO(),
    }
    answers = []
    # As Django's test client does: the handler must not close the test's database connection.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = WSGIHandler()(environ, lambda status, headers: answers.append(status))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert answers == ["413 Request Entity Too Large"]
    error = json.loads(b"".join(chunks))["error"]
    assert error["code"] == "request_too_large" and "TINYFORGE_MAX_UPLOAD_BYTES" in error["message"]
    assert body.read_bytes == 0
    assert not DatasetVersion.all_teams.filter(dataset=acme.dataset, number=2).exists()


def test_two_files_with_the_same_name_are_both_kept(upload, ingested, acme):
    other = b'{"instruction": "Name a colour.", "output": "Blue."}\n'
    version = ingested(upload(acme.dataset, [("data.jsonl", GOOD_JSONL), ("data.jsonl", other)]))
    assert version.status == "ready" and version.row_count == 7
    keys = [f["key"] for f in version.source_config["files"]]
    assert len(set(keys)) == 2 and [storage.path(k).read_bytes() for k in keys] == [GOOD_JSONL, other]


LONG_NAMES = ["a" * 300 + ".jsonl", "é" * 200 + ".jsonl", "../../" + "x" * 250 + ".jsonl"]


@pytest.mark.parametrize("client_name", LONG_NAMES, ids=["300 chars", "400 bytes", "a path"])
def test_a_long_client_file_name_is_kept_shortened_and_never_stored_as_a_name(client_name, upload, ingested, acme):
    # Was a 500 (OSError: File name too long): the client's name was part of the stored path.
    version = ingested(upload(acme.dataset, [(client_name, GOOD_JSONL)]))
    assert version.status == "ready", version.error
    (stored,) = version.source_config["files"]
    assert len(stored["name"]) <= storage.DISPLAY_NAME_LENGTH and stored["name"].endswith("….jsonl")
    assert "/" not in stored["name"] and client_name.rsplit("/")[-1][:40] in stored["name"]
    assert stored["key"].rsplit("/", 1)[-1] == "0.jsonl"


def test_the_openai_files_api_keeps_a_long_name_as_metadata_only(token_client, alice, acme, ingest_queue,
                                                                 django_capture_on_commit_callbacks):
    client, _ = token_client(alice, acme.team, ["read", "write"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/v1/files", {"purpose": "fine-tune",
                                             "file": SimpleUploadedFile(LONG_NAMES[0], GOOD_JSONL)},
                               format="multipart")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["filename"] == storage.display_name(LONG_NAMES[0])
    version = DatasetVersion.all_teams.get(pk=int(response.json()["id"].removeprefix("file-")))
    assert version.source_config["files"][0]["key"].endswith("/0.jsonl")


@pytest.mark.parametrize("client_name, shown", [
    ("faq.jsonl", "faq.jsonl"), ("C:\\Users\\me\\faq.csv", "faq.csv"), ("a\x00b\x1b[31m.txt", "ab[31m.txt"),
    ("", "upload"), ("x" * 200 + ".tar.gz", "x" * 116 + "….gz"), ("y" * 200, "y" * 119 + "…"),
])
def test_display_names_are_printable_short_and_keep_the_extension(client_name, shown):
    assert storage.display_name(client_name) == shown
    assert storage.upload_key(1, "u", client_name).startswith("projects/1/uploads/u")
