"""Saved connections (/api/v1/connections/): credentials encrypted and never returned; test,
preview with a column mapping, and SQL / Google Docs imports as new versions."""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from connectors.test_gdocs import GoogleApis, google_apis, service_account_key  # noqa: F401  (fixtures)
from personas import assert_error
from tinyforge.core import storage
from tinyforge.datasets.models import DataConnection


@pytest.fixture
def faq_connection(client_for, alice, acme, faq_db):
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "faq", "kind": "sql", "credentials": {"url": faq_db}}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_it_saves_credentials_encrypted_and_shows_only_what_is_safe(client_for, alice, acme, sqlite_dir):
    url = "postgresql://reader:pa55-w0rd-x@db.example.com:5432/sales"
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "sales", "kind": "sql", "credentials": {"url": url}}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert "credentials" not in body and "pa55-w0rd-x" not in response.content.decode()
    assert body["options"] == {"dialect": "postgresql", "host": "db.example.com", "port": 5432, "database": "sales",
                               "user": "reader", "url": "postgresql://reader:***@db.example.com:5432/sales"}
    stored = DataConnection.all_teams.get(pk=body["id"])
    assert b"pa55-w0rd-x" not in bytes(stored.encrypted_credentials)
    assert stored.get_credentials() == {"url": url}
    for path in ("/api/v1/connections/", f"/api/v1/connections/{body['id']}/"):
        assert "pa55-w0rd-x" not in client_for(alice).get(path).content.decode()


@pytest.mark.parametrize("kind, credentials, message", [
    ("sql", {"url": "oracle://u:p@h/db"}, "Unsupported database URL scheme 'oracle'"),
    ("sql", {"password": "x"}, 'Give {"url"'),
    ("google", {"service_account_json": "{not json"}, "service_account_json is not valid JSON"),
    ("google", {"service_account_json": {"type": "authorized_user"}}, '"type": "service_account"'),
    ("google", {"oauth_token": "a", "authorized_user_json": {"type": "authorized_user"}}, "exactly one of"),
])
def test_it_refuses_credentials_it_cannot_use(client_for, alice, acme, kind, credentials, message):
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "x", "kind": kind, "credentials": credentials}, format="json")
    assert message in assert_error(response, 400, "invalid")["fields"]["credentials"][0]


def test_it_tests_a_connection_and_reports_the_columns_of_a_query(client_for, alice, faq_connection):
    client = client_for(alice)
    response = client.post(f"/api/v1/connections/{faq_connection['id']}/test/",
                           {"query": "SELECT question, answer FROM faq"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() | {"server_version": "?"} == {
        "ok": True, "message": response.json()["message"], "dialect": "sqlite", "server_version": "?",
        "columns": ["question", "answer"]}
    broken = client.post(f"/api/v1/connections/{faq_connection['id']}/test/", {"table": "nope"}, format="json").json()
    assert broken["ok"] is False and "no such table: nope" in broken["message"]


def test_it_previews_rows_and_their_examples_under_a_mapping(client_for, alice, faq_connection):
    client = client_for(alice)
    url = f"/api/v1/connections/{faq_connection['id']}/preview/"
    body = client.post(url, {"table": "faq", "limit": 3,
                             "mapping": {"instruction": "question", "output": "answer", "metadata": ["team"]}},
                       format="json").json()
    assert body["columns"] == ["id", "question", "answer", "team"] and len(body["rows"]) == 3
    assert body["rows"][0] == {"id": 1, "question": "How do I do task 1?", "answer": "Open panel 1 and press go.",
                               "team": "support"}
    assert body["examples"][0]["instruction"] == "How do I do task 1?"
    assert body["examples"][0]["output"] == "Open panel 1 and press go."
    assert body["examples"][0]["metadata"]["team"] == "support" and body["mapping_error"] is None
    detected = client.post(url, {"query": "SELECT question, answer FROM faq", "limit": 2}, format="json").json()
    assert detected["shape"] == "question_answer" and len(detected["examples"]) == 2
    unmapped = client.post(url, {"query": "SELECT id FROM faq", "limit": 2}, format="json").json()
    assert unmapped["examples"] == [] and "id" in unmapped["mapping_error"]
    bad = client.post(url, {"mapping": {"instruction": "question"}}, format="json")
    assert "output" in assert_error(bad, 400, "invalid")["fields"]["mapping"][0]


def test_a_viewer_cannot_test_and_an_outsider_cannot_see_a_connection(client_for, vic, charlie, globex,
                                                                      faq_connection):
    assert_error(client_for(vic).post(f"/api/v1/connections/{faq_connection['id']}/test/", {}, format="json"), 403)
    assert_error(client_for(charlie).post(f"/api/v1/connections/{faq_connection['id']}/preview/", {},
                                          format="json"), 404)


def test_sqlite_files_outside_the_allowed_folders_are_refused(client_for, alice, acme, settings, tinyforge_data_dir):
    settings.SQLITE_IMPORT_DIRS = []
    platform_db = f"sqlite:///{tinyforge_data_dir}/tinyforge.sqlite3"
    connection = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "own", "kind": "sql", "credentials": {"url": platform_db}},
        format="json").json()
    tested = client_for(alice).post(f"/api/v1/connections/{connection['id']}/test/", {}, format="json").json()
    assert tested["ok"] is False and "TINYFORGE_SQLITE_IMPORT_DIRS" in tested["message"]
    settings.SQLITE_IMPORT_DIRS = [str(tinyforge_data_dir / "imports")]
    preview = client_for(alice).post(f"/api/v1/connections/{connection['id']}/preview/", {"table": "auth_user"},
                                     format="json")
    assert "outside the folders" in assert_error(preview, 400)["message"]


def test_it_imports_a_sql_query_with_a_mapping_as_a_new_version(acme, faq_connection, start_import, ingested,
                                                                ingest_queue):
    response = start_import(acme.dataset, "sql", faq_connection["id"], query="SELECT * FROM faq WHERE id <= 12",
                            mapping={"instruction": "question", "output": "answer"}, row_limit=10)
    assert response.status_code == 201, response.content
    assert ingest_queue.job_ids == [f"ingest-version-{response.json()['id']}"]
    version = ingested(response)
    assert version.status == "ready", version.error
    assert version.row_count == 10 and version.stats["truncated_at_row_limit"] is True
    first = json.loads(storage.path(version.storage_key).read_text().splitlines()[0])
    assert first["instruction"] == "How do I do task 1?" and first["metadata"]["team"] == "support"
    assert "sqlite" in first["metadata"]["source"] and first["metadata"]["location"] == "row 1"


@pytest.mark.parametrize("config, field", [
    ({}, "source_config.query"),
    ({"query": "SELECT 1", "table": "faq"}, "source_config.query"),
    ({"table": "faq", "row_limit": 0}, "source_config.row_limit"),
    ({"query": "SELECT 1", "mapping": {"output": "a"}}, "source_config.mapping"),
])
def test_a_bad_sql_import_is_refused_before_anything_is_queued(client_for, alice, acme, faq_connection, config, field,
                                                               ingest_queue):
    response = client_for(alice).post("/api/v1/dataset-versions/", {
        "dataset": acme.dataset.pk, "source_kind": "sql", "connection": faq_connection["id"], "source_config": config},
        format="json")
    assert field in assert_error(response, 400, "invalid")["fields"]
    assert ingest_queue.count == 0


def test_an_import_needs_a_connection_of_its_kind(client_for, alice, acme, faq_connection):
    response = client_for(alice).post("/api/v1/dataset-versions/", {
        "dataset": acme.dataset.pk, "source_kind": "google_docs", "connection": faq_connection["id"],
        "source_config": {"document_ids": ["doc-faq"]}}, format="json")
    assert "connection" in assert_error(response, 400)["fields"]


def test_it_imports_google_docs_with_headings_as_sections(client_for, alice, acme, google_apis,  # noqa: F811
                                                         service_account_key, ingested, ingest_queue,  # noqa: F811
                                                         settings):
    settings.GOOGLE_API_ROOTS = [google_apis + "/"]  # compared without a trailing slash
    client = client_for(alice)
    created = client.post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google", "options": {"api_root": google_apis},
        "credentials": {"service_account_json": open(service_account_key).read()}}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["options"] == {"api_root": google_apis, "auth": "service_account",
                               "client_email": "ingest@tf-test.iam.gserviceaccount.com"}
    assert "PRIVATE KEY" not in created.content.decode()
    preview = client.post(f"/api/v1/connections/{body['id']}/preview/", {"document_ids": ["doc-handbook"]},
                          format="json").json()
    assert preview["rows"][1] == {"location": "gdoc:doc-handbook, paragraph 2", "kind": "heading",
                                  "heading_path": ["Handbook"], "text": "Holidays"}
    assert client.post(f"/api/v1/connections/{body['id']}/test/", {"folder_id": "folder-1"},
                       format="json").json()["ok"] is True
    version = ingested(client.post("/api/v1/dataset-versions/", {
        "dataset": acme.dataset.pk, "source_kind": "google_docs", "connection": body["id"],
        "source_config": {"folder_id": "folder-1", "recipe": "sections"}}, format="json"))
    assert version.status == "ready", version.error
    rows = [json.loads(line) for line in storage.path(version.storage_key).read_text().splitlines()]
    assert any(r["output"] == "Everyone gets 25 days." and "Holidays" in r["instruction"] for r in rows)


def test_it_refuses_a_google_api_root_that_is_not_allowed_naming_the_setting(client_for, alice, acme,
                                                                             service_account_key):  # noqa: F811
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google",
        "options": {"api_root": "http://169.254.169.254/latest"},
        "credentials": {"service_account_json": open(service_account_key).read()}}, format="json")
    (reason,) = assert_error(response, 400, "invalid")["fields"]["options.api_root"]
    assert "http://169.254.169.254/latest is not an API root this platform may send Google credentials to" in reason
    assert "TINYFORGE_GOOGLE_API_ROOTS" in reason
    assert not DataConnection.all_teams.filter(name="docs").exists()


def test_googles_own_api_root_is_allowed_by_default(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google",
        "options": {"api_root": "HTTPS://www.googleapis.com/"}, "credentials": {"oauth_token": "t"}}, format="json")
    assert response.status_code == 201, response.content


def test_the_job_checks_the_google_api_root_again_when_it_was_removed_from_the_list(
        client_for, alice, acme, google_apis, service_account_key, ingested, settings):  # noqa: F811
    settings.GOOGLE_API_ROOTS = [google_apis]
    client = client_for(alice)
    created = client.post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google", "options": {"api_root": google_apis},
        "credentials": {"service_account_json": open(service_account_key).read()}}, format="json")
    assert created.status_code == 201, created.content
    started = client.post("/api/v1/dataset-versions/", {
        "dataset": acme.dataset.pk, "source_kind": "google_docs", "connection": created.json()["id"],
        "source_config": {"document_ids": ["doc-faq"]}}, format="json")
    settings.GOOGLE_API_ROOTS = []
    GoogleApis.requests.clear()
    tested = client.post(f"/api/v1/connections/{created.json()['id']}/test/", {"document_ids": ["doc-faq"]},
                         format="json").json()
    assert tested["ok"] is False and "TINYFORGE_GOOGLE_API_ROOTS" in tested["message"]
    version = ingested(started)
    assert version.status == "failed" and "TINYFORGE_GOOGLE_API_ROOTS" in version.error
    assert GoogleApis.requests == []


class RecordingTokenEndpoint(GoogleApis):
    """GoogleApis on a second port, noting each token request it is sent."""
    posts: list[str] = []

    def do_POST(self):
        RecordingTokenEndpoint.posts.append(self.path)
        super().do_POST()


@pytest.fixture
def token_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    RecordingTokenEndpoint.posts.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def google_key(kind: str, token_uri: str, service_account_key: str) -> dict:  # noqa: F811
    if kind == "service_account_json":
        return json.loads(open(service_account_key).read()) | {"token_uri": token_uri}
    return {"type": "authorized_user", "client_id": "c", "client_secret": "s3cr3t-client", "refresh_token": "s3cr3t-refresh",
            "token_uri": token_uri}


@pytest.mark.parametrize("kind", ["service_account_json", "authorized_user_json"])
@pytest.mark.parametrize("token_uri", [
    "http://169.254.169.254/latest/api/token",
    "https://google-proxy.internal:8443/token",  # an allowed host, another port
    "https://google-proxy.internal@169.254.169.254/token",
    "https://oauth2.googleapis.com.evil.example/token",
    "http://oauth2.googleapis.com/token",
])
def test_it_refuses_a_google_token_uri_that_is_not_allowed_naming_the_setting(client_for, alice, acme, settings, kind,
                                                                             token_uri, service_account_key):  # noqa: F811
    settings.GOOGLE_API_ROOTS = ["https://google-proxy.internal"]
    key = google_key(kind, token_uri, service_account_key)
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google", "credentials": {kind: key}}, format="json")
    (reason,) = assert_error(response, 400, "invalid")["fields"][f"credentials.{kind}.token_uri"]
    assert f"token_uri {token_uri!r} is not a token endpoint this platform may send Google credentials to" in reason
    assert "TINYFORGE_GOOGLE_API_ROOTS (allowed now: https://google-proxy.internal)" in reason
    for secret in ("PRIVATE KEY", "s3cr3t"):
        assert secret not in response.content.decode()
    assert not DataConnection.all_teams.filter(name="docs").exists()


@pytest.mark.parametrize("token_uri", ["https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token",
                                       "https://www.googleapis.com/oauth2/v4/token",
                                       "HTTPS://Google-Proxy.internal:443/oauth2/token"])
def test_googles_token_uris_and_those_on_allowed_api_root_hosts_are_accepted(client_for, alice, acme, settings,
                                                                            token_uri, service_account_key):  # noqa: F811
    settings.GOOGLE_API_ROOTS = ["https://google-proxy.internal/apis"]
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google",
        "credentials": {"service_account_json": google_key("service_account_json", token_uri, service_account_key)}},
        format="json")
    assert response.status_code == 201, response.content


def test_the_job_checks_the_token_uri_again_when_its_host_was_removed_from_the_list(
        client_for, alice, acme, google_apis, token_endpoint, service_account_key, ingested, settings):  # noqa: F811
    settings.GOOGLE_API_ROOTS = [google_apis, token_endpoint]
    client = client_for(alice)
    created = client.post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "docs", "kind": "google", "options": {"api_root": google_apis},
        "credentials": {"service_account_json": google_key("service_account_json", f"{token_endpoint}/token",
                                                           service_account_key)}}, format="json")
    assert created.status_code == 201, created.content
    test_url = f"/api/v1/connections/{created.json()['id']}/test/"
    assert client.post(test_url, {"document_ids": ["doc-faq"]}, format="json").json()["ok"] is True
    assert RecordingTokenEndpoint.posts == ["/token"]  # while allowed, google-auth signs in there
    started = client.post("/api/v1/dataset-versions/", {
        "dataset": acme.dataset.pk, "source_kind": "google_docs", "connection": created.json()["id"],
        "source_config": {"document_ids": ["doc-faq"]}}, format="json")
    settings.GOOGLE_API_ROOTS = [google_apis]
    RecordingTokenEndpoint.posts.clear()
    tested = client.post(test_url, {"document_ids": ["doc-faq"]}, format="json")
    assert tested.json()["ok"] is False and "TINYFORGE_GOOGLE_API_ROOTS" in tested.json()["message"]
    assert "PRIVATE KEY" not in tested.content.decode()
    version = ingested(started)
    assert version.status == "failed" and f"token_uri '{token_endpoint}/token'" in version.error
    assert RecordingTokenEndpoint.posts == []
