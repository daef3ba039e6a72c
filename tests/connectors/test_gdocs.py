"""The Google Docs connector: the real google-api-python-client talking to a local HTTP server
that answers like the OAuth token endpoint and the Docs and Drive APIs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tinyforge.connectors.gdocs import GoogleDocsSource
from tinyforge.connectors.records import SourceError

TOKEN = "ya29.local-test-token"


def paragraph(text, style="NORMAL_TEXT"):
    return {"paragraph": {"elements": [{"textRun": {"content": text + "\n"}}],
                          "paragraphStyle": {"namedStyleType": style}}}


def table(rows):
    return {"table": {"tableRows": [{"tableCells": [{"content": [paragraph(cell)]} for cell in row]}
                                    for row in rows]}}


DOCUMENTS = {
    "doc-handbook": {"documentId": "doc-handbook", "title": "Handbook", "body": {"content": [
        {"sectionBreak": {}},
        paragraph("Handbook", "TITLE"),
        paragraph("Holidays", "HEADING_2"),
        paragraph("Everyone gets 25 days."),
        paragraph(""),
        paragraph("Carry-over", "HEADING_3"),
        paragraph("Up to 5 days carry over."),
        table([["Grade", "Days"], ["A", "25"]]),
        paragraph("Expenses", "HEADING_2"),
        paragraph("Keep receipts."),
    ]}},
    "doc-faq": {"documentId": "doc-faq", "title": "FAQ", "body": {"content": [paragraph("Why? Because.")]}},
}
FOLDER = {"id": "folder-1", "name": "Policies", "mimeType": "application/vnd.google-apps.folder"}


class GoogleApis(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message, reason):
        self.answer(status, {"error": {"code": status, "message": message, "status": reason}})

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = parse_qs(body)
        if self.path == "/token" and form.get("grant_type") in (
                ["urn:ietf:params:oauth:grant-type:jwt-bearer"], ["refresh_token"]):
            self.answer(200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})
        else:
            self.answer(400, {"error": "invalid_grant"})

    def do_GET(self):
        url = urlsplit(self.path)
        GoogleApis.requests.append(url.path)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
        query = parse_qs(url.query)
        if url.path.startswith("/v1/documents/"):
            document_id = url.path.rsplit("/", 1)[1]
            if document_id == "doc-private":
                return self.error(403, "The caller does not have permission", "PERMISSION_DENIED")
            if document_id not in DOCUMENTS:
                return self.error(404, "Requested entity was not found.", "NOT_FOUND")
            return self.answer(200, DOCUMENTS[document_id])
        if url.path == "/drive/v3/files/folder-1":
            return self.answer(200, FOLDER)
        if url.path == "/drive/v3/files/doc-faq":
            return self.answer(200, {"id": "doc-faq", "name": "FAQ", "mimeType": "application/vnd.google-apps.document"})
        if url.path.startswith("/drive/v3/files/"):
            return self.error(404, "File not found.", "NOT_FOUND")
        if url.path == "/drive/v3/files":
            assert "'folder-1' in parents" in query["q"][0]
            # Two pages, so the connector must follow nextPageToken.
            if "pageToken" not in query:
                return self.answer(200, {"files": [{"id": "doc-faq", "name": "FAQ"}], "nextPageToken": "p2"})
            return self.answer(200, {"files": [{"id": "doc-handbook", "name": "Handbook"}]})
        self.error(404, "no such route", "NOT_FOUND")


@pytest.fixture(scope="module")
def google_apis():
    server = ThreadingHTTPServer(("127.0.0.1", 0), GoogleApis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def service_account_key(google_apis, tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path_factory.mktemp("keys") / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "tf-test", "private_key_id": "k1", "private_key": pem,
        "client_email": "ingest@tf-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{google_apis}/token"}))
    return str(path)


def test_it_reads_a_document_with_headings_paragraphs_and_tables(google_apis, service_account_key):
    source = GoogleDocsSource(["doc-handbook"], credentials_file=service_account_key, api_root=google_apis)
    blocks = list(source.records())
    assert [(b.kind, b.text, b.heading_path) for b in blocks] == [
        ("heading", "Handbook", ()),
        ("heading", "Holidays", ("Handbook",)),
        ("paragraph", "Everyone gets 25 days.", ("Handbook", "Holidays")),
        ("heading", "Carry-over", ("Handbook", "Holidays")),
        ("paragraph", "Up to 5 days carry over.", ("Handbook", "Holidays", "Carry-over")),
        ("table", "Grade | Days\nA | 25", ("Handbook", "Holidays", "Carry-over")),
        ("heading", "Expenses", ("Handbook",)),
        ("paragraph", "Keep receipts.", ("Handbook", "Expenses")),
    ]
    assert blocks[2].source == "gdoc:doc-handbook" and blocks[2].location == "paragraph 3"


def test_it_imports_every_document_of_a_drive_folder(google_apis, service_account_key):
    source = GoogleDocsSource(folder_id="folder-1", credentials_file=service_account_key, api_root=google_apis)
    sources = [b.source for b in source.records()]
    assert sources[0] == "gdoc:doc-faq" and sources[-1] == "gdoc:doc-handbook"
    assert source.progress() == 1.0


def test_it_accepts_an_oauth_token_or_an_authorized_user_file(google_apis, tmp_path):
    by_token = GoogleDocsSource(["doc-faq"], access_token=TOKEN, api_root=google_apis)
    assert [b.text for b in by_token.records()] == ["Why? Because."]
    user = tmp_path / "user.json"
    # google-auth always refreshes authorized-user tokens at Google (it ignores a token_uri in
    # the file), so this file carries a current access token, as google-auth-oauthlib saves it.
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                                "refresh_token": "r", "token": TOKEN, "expiry": "2999-01-01T00:00:00Z"}))
    by_refresh = GoogleDocsSource(["doc-faq"], credentials_file=str(user), api_root=google_apis)
    assert [b.text for b in by_refresh.records()] == ["Why? Because."]


@pytest.mark.parametrize("document_id, message", [
    ("doc-missing", "gdoc:doc-missing: Google Doc not found: the id is wrong, or it is not shared "
                    "(share it with ingest@tf-test.iam.gserviceaccount.com)"),
    ("doc-private", "gdoc:doc-private: Google Doc not accessible: permission denied "
                    "(share it with ingest@tf-test.iam.gserviceaccount.com)"),
])
def test_a_missing_or_unshared_document_gives_a_clear_error(google_apis, service_account_key, document_id, message):
    source = GoogleDocsSource(["doc-faq", document_id], credentials_file=service_account_key, api_root=google_apis)
    with pytest.raises(SourceError) as error:
        list(source.records())
    assert str(error.value) == message


def test_bad_folders_tokens_and_credentials_are_named(google_apis, tmp_path):
    with pytest.raises(SourceError, match="drive folder nope: Drive folder not found"):
        list(GoogleDocsSource(folder_id="nope", access_token=TOKEN, api_root=google_apis).records())
    with pytest.raises(SourceError, match="'FAQ' is not a folder"):
        list(GoogleDocsSource(folder_id="doc-faq", access_token=TOKEN, api_root=google_apis).records())
    with pytest.raises(SourceError, match="gdoc:doc-faq: the access token was refused"):
        list(GoogleDocsSource(["doc-faq"], access_token="stale", api_root=google_apis).records())
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"type": "external_account"}')
    with pytest.raises(SourceError, match="credentials of type 'external_account'"):
        list(GoogleDocsSource(["doc-faq"], credentials_file=str(wrong), api_root=google_apis).records())
