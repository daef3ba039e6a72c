"""The bad-input corpus of issue 5, through the API: each bad source gives a failed version whose
error (and error event) names the source and the record, and the dataset's earlier version is
neither damaged nor lost."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from urllib.parse import urlsplit, urlunsplit

import pytest

from dataset_files import GOOD_JSONL
from connectors.test_gdocs import google_apis, service_account_key  # noqa: F401  (fixtures)
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.datasets.models import DataConnection


@pytest.fixture
def earlier(upload, ingested, acme):
    """A ready version with a real file, which no later bad import may touch."""
    version = ingested(upload(acme.dataset, [("good.jsonl", GOOD_JSONL)]))
    assert version.status == "ready", version.error
    return version


def assert_failed_cleanly(client, version, earlier, *expected: str, absent: tuple[str, ...] = ()):
    """The version failed with each expected text in its error and in an error event, left no file,
    and the earlier version is byte for byte what it was."""
    body = client.get(f"/api/v1/dataset-versions/{version.pk}/").json()
    assert body["status"] == "failed", body
    for text in expected:
        assert text in body["error"], (text, body["error"])
    event = Event.all_teams.filter(dataset_version=version, level="error").last()
    assert event is not None and all(text in event.message for text in expected), event
    for secret in absent:
        everything = str(body) + " ".join(Event.all_teams.filter(dataset_version=version).values_list("message", flat=True))
        assert secret not in everything
    assert not storage.exists(version.storage_key)
    again = client.get(f"/api/v1/dataset-versions/{earlier.pk}/").json()
    assert again["status"] == "ready" and again["sha256"] == earlier.sha256
    download = client.get(f"/api/v1/dataset-versions/{earlier.pk}/download/")
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == earlier.sha256
    return event


@pytest.mark.parametrize("name, message", [
    ("zip_named.pdf", "zip_named.pdf: the file is named as PDF but its content is a zip archive"),
    ("pdf_named.csv", "pdf_named.csv: the file is named as CSV but its content is a PDF"),
    ("text_named.docx", "named as DOCX but its content is text"),
    ("flate_bomb.pdf", "flate_bomb.pdf, page 1: not a readable PDF"),
    ("circular_xref.pdf", "circular_xref.pdf: not a readable PDF"),
    ("truncated.pdf", "truncated.pdf: not a readable PDF"),
    ("encrypted.pdf", "encrypted.pdf: the PDF is encrypted"),
    ("image_only.pdf", "image_only.pdf: no extractable text"),
    ("external_entity.docx", "external_entity.docx, word/document.xml: rejected: the XML declares a DOCTYPE"),
    ("zip_bomb.docx", "zip_bomb.docx, word/media/filler.bin: rejected as a zip bomb"),
    ("nul_bytes.json", "nul_bytes.json, line 1: contains a NUL byte"),
    ("nul_bytes.jsonl", "nul_bytes.jsonl, line 2: contains a NUL byte"),
    ("not_utf8_invalid.jsonl", "not_utf8_invalid.jsonl: not a text file: no text encoding fits its bytes"),
])
def test_a_bad_file_fails_its_version_and_spares_the_earlier_one(bad_files, name, message, upload, ingested, acme,
                                                                 earlier, client_for, alice):
    version = ingested(upload(acme.dataset, [(name, bad_files[name].read_bytes())]))
    event = assert_failed_cleanly(client_for(alice), version, earlier, message)
    assert event.data["source"] == name


def test_json_nested_too_deep_fails_its_import_naming_the_file_and_line(bad_files, upload, ingested, acme, earlier,
                                                                       client_for, alice):
    # Was "failed unexpectedly (RecursionError ...)".
    version = ingested(upload(acme.dataset, [("deeply_nested.json", bad_files["deeply_nested.json"].read_bytes())]))
    assert_failed_cleanly(client_for(alice), version, earlier, "deeply_nested.json, line 3: not valid JSON: arrays and "
                                                               "objects nested deeper than 100 levels")


def test_one_bad_file_among_good_ones_fails_the_whole_version(bad_files, upload, ingested, acme, earlier, client_for,
                                                              alice):
    version = ingested(upload(acme.dataset, [("good.jsonl", GOOD_JSONL), ("pdf_named.csv", bad_files["pdf_named.csv"]
                                                                          .read_bytes())]))
    assert_failed_cleanly(client_for(alice), version, earlier, "pdf_named.csv: the file is named as CSV")


def test_an_upload_imports_the_valid_rows_and_lists_every_bad_one_in_its_report(bad_files, upload, ingested, acme,
                                                                                client_for, alice):
    """Issue 15: one bad row no longer fails a whole upload. Nothing is lost: every row of the files
    is in the version's file, listed as invalid with its file, line and reason, or a duplicate."""
    client = client_for(alice)
    version = ingested(upload(acme.dataset, [("good.jsonl", GOOD_JSONL),
                                             ("ragged.csv", bad_files["ragged.csv"].read_bytes()),
                                             ("wrong_types.jsonl", bad_files["wrong_types.jsonl"].read_bytes())]))
    body = client.get(f"/api/v1/dataset-versions/{version.pk}/").json()
    assert body["status"] == "ready", body["error"]
    expected = [
        {"line": 3, "field": "row", "reason": "ragged row: 3 fields where the header has 2", "source": "ragged.csv",
         "location": "line 3"},
        {"line": 2, "field": "output", "reason": "field 'output' holds a list, expected text",
         "source": "wrong_types.jsonl", "location": "line 2"},
    ]
    stats, stored = body["stats"], body["validation_report"]
    assert stored["invalid"] == expected and stored["invalid_count"] == 2
    assert stats["records_read"] == 6 + 2 + 3 == stats["examples_written"] + stats["skipped_count"] \
        + stats["exact_duplicates"] + stats["near_duplicates"]
    assert body["row_count"] == stored["valid_rows"] == stats["examples_written"] == 6 + 1 + 2
    assert stored["total_rows"] == stored["valid_rows"] + stored["invalid_count"]
    download = client.get(f"/api/v1/dataset-versions/{version.pk}/download/")
    assert len(b"".join(download.streaming_content).splitlines()) == body["row_count"]
    # A report computed afresh (another context length) lists them as well.
    again = client.get(f"/api/v1/dataset-versions/{version.pk}/report/", {"max_seq_length": 64}).json()
    assert again["invalid"] == expected and again["total_rows"] == stored["total_rows"]
    warning = Event.all_teams.get(dataset_version=version, level="warning", message__contains="ragged.csv, line 3")
    assert "ragged row" in warning.message


def test_stop_at_the_first_bad_row_is_kept_for_those_who_want_it(bad_files, upload, ingested, acme, earlier,
                                                                 client_for, alice):
    for name, message in (("ragged.csv", "ragged.csv, line 3: ragged row: 3 fields where the header has 2"),
                          ("wrong_types.jsonl", "wrong_types.jsonl, line 2: field 'output' holds a list, expected text")):
        version = ingested(upload(acme.dataset, [(name, bad_files[name].read_bytes())], skip_bad_records=False))
        assert_failed_cleanly(client_for(alice), version, earlier, message)


def test_text_in_another_encoding_is_detected_not_refused(upload, ingested, acme):
    csv = "question,answer\nCafé au lait?,Oui, s'il vous plaît\nNaïve?,Très\n".replace(
        "Oui, s'il", "\"Oui, s'il").replace("plaît", "plaît\"")
    version = ingested(upload(acme.dataset, [("menu.csv", csv.encode("cp1252"))]))
    assert version.status == "ready", version.error
    assert "Très" in storage.path(version.storage_key).read_text(encoding="utf-8")


def test_rows_that_cannot_become_examples_are_skipped_or_name_their_line_when_asked_to_stop(upload, ingested, acme,
                                                                                          earlier, client_for, alice):
    data = GOOD_JSONL + b'{"instruction": "no answer here"}\n'
    failed = ingested(upload(acme.dataset, [("partial.jsonl", data)], skip_bad_records=False))
    assert_failed_cleanly(client_for(alice), failed, earlier, "partial.jsonl, line 7")
    skipped = ingested(upload(acme.dataset, [("partial.jsonl", data)]))
    assert skipped.status == "ready" and skipped.row_count == 6
    assert skipped.stats["skipped_count"] == 1 and skipped.stats["sources"][0]["skipped"][0]["location"] == "line 7"
    warning = Event.all_teams.get(dataset_version=skipped, level="warning", message__startswith="skipped")
    assert "partial.jsonl, line 7" in warning.message


# -- SQL ----------------------------------------------------------------------------------

@pytest.fixture
def sql_connection(faq_db, acme):
    connection = DataConnection(project=acme.project, name="faq db", kind="sql", options={"dialect": "sqlite"})
    connection.set_credentials({"url": faq_db})
    connection.save()
    return connection


@pytest.mark.parametrize("statement", ["INSERT INTO faq (question, answer) VALUES ('q', 'a')", "DROP TABLE faq"])
def test_sql_that_writes_is_refused_by_the_read_only_session(statement, sql_connection, faq_db, acme, earlier,
                                                             client_for, alice, ingested, start_import):
    client = client_for(alice)
    response = start_import(acme.dataset, "sql", sql_connection, query=statement)
    assert response.status_code == 201, response.content
    version = ingested(response)
    assert_failed_cleanly(client, version, earlier, faq_db, "refused by the read-only session")
    with sqlite3.connect(urlsplit(faq_db).path[1:]) as conn:
        assert conn.execute("SELECT count(*) FROM faq").fetchone() == (30,)


def test_sql_past_the_statement_timeout_is_cancelled(sql_connection, acme, earlier, client_for, alice, ingested,
                                                     start_import):
    client = client_for(alice)
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    version = ingested(start_import(acme.dataset, "sql", sql_connection, query=endless, statement_timeout_s=0.5))
    assert_failed_cleanly(client, version, earlier, "ran past the statement timeout of 0.5 s and was cancelled")


@pytest.fixture
def mariadb_user():
    """A MariaDB/MySQL account with a password (MYSQL_TEST_URL's server, else the local one)."""
    import pymysql

    url = os.environ.get("MYSQL_TEST_URL", "")
    required = bool(url)
    parts = urlsplit(url or "mysql://root@127.0.0.1:3306/")
    try:
        admin = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                                password=parts.password or "", autocommit=True, connect_timeout=5)
    except pymysql.err.OperationalError as exc:
        if required:
            raise
        pytest.skip(f"MariaDB unreachable and MYSQL_TEST_URL unset: {exc}")
    with admin, admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE IF NOT EXISTS tf_datasets")
        cursor.execute("CREATE TABLE IF NOT EXISTS tf_datasets.faq (question text, answer text)")
        cursor.execute("CREATE USER IF NOT EXISTS 'tf_datasets'@'%' IDENTIFIED BY 'right-pass-123'")
        cursor.execute("GRANT SELECT ON tf_datasets.* TO 'tf_datasets'@'%'")
    return urlunsplit(parts._replace(netloc=f"tf_datasets:{{password}}@{parts.hostname}:{parts.port or 3306}",
                                     path="/tf_datasets"))


def test_a_wrong_database_password_is_a_clear_error_that_never_echoes_it(mariadb_user, acme, earlier, client_for,
                                                                          alice, ingested, start_import):
    client = client_for(alice)
    secret = "Wr0ng-Secret-9913"
    created = client.post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "warehouse 2", "kind": "sql",
        "credentials": {"url": mariadb_user.format(password=secret)}}, format="json")
    assert created.status_code == 201, created.content
    assert secret not in created.content.decode()
    connection = DataConnection.all_teams.get(pk=created.json()["id"])
    tested = client.post(f"/api/v1/connections/{connection.pk}/test/", {}, format="json")
    assert tested.status_code == 200 and tested.json()["ok"] is False
    assert "Access denied" in tested.json()["message"] and "tf_datasets:***@" in tested.json()["message"]
    assert secret not in tested.content.decode()
    version = ingested(start_import(acme.dataset, "sql", connection, table="faq"))
    assert_failed_cleanly(client, version, earlier, "could not connect", "Access denied", absent=(secret, "Wr0ng"))
    for url in (f"/api/v1/connections/{connection.pk}/", "/api/v1/connections/", f"/api/v1/events/?dataset_version={version.pk}"):
        assert secret not in client.get(url).content.decode()


# -- Google Docs ------------------------------------------------------------------------------

@pytest.fixture
def google_connection(google_apis, service_account_key, acme, settings):  # noqa: F811
    settings.GOOGLE_API_ROOTS = [google_apis]
    connection = DataConnection(project=acme.project, name="docs", kind="google", options={"api_root": google_apis})
    connection.set_credentials({"service_account_json": json.loads(open(service_account_key).read())})
    connection.save()
    return connection


@pytest.mark.parametrize("document_id, message", [
    ("doc-missing", "gdoc:doc-missing: Google Doc not found: the id is wrong, or it is not shared "
                    "(share it with ingest@tf-test.iam.gserviceaccount.com)"),
    ("doc-private", "gdoc:doc-private: Google Doc not accessible: permission denied"),
])
def test_a_google_doc_that_is_missing_or_not_shared_fails_clearly(document_id, message, google_connection, acme,
                                                                   earlier, client_for, alice, ingested, start_import):
    client = client_for(alice)
    response = start_import(acme.dataset, "google_docs", google_connection, document_ids=[document_id])
    assert response.status_code == 201, response.content
    assert_failed_cleanly(client, ingested(response), earlier, message)
