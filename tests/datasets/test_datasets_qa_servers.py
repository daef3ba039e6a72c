"""The qa recipe through the API may only call model servers an administrator allowed
(settings.QA_BASE_URLS: the platform's inference service and TINYFORGE_QA_BASE_URLS), each with its key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest

from connectors.chat_model import ChatCompletions
from personas import assert_error
from tinyforge.core import storage

NOTES = b"# Boilers\n\nThe boiler runs at 80 degrees. It is serviced yearly.\n"


class KeyedChatCompletions(ChatCompletions):
    """The literal model of the connector tests, behind an API key; remembers the keys it was sent."""

    keys_seen: list[str] = []

    def do_POST(self):
        self.keys_seen.append(self.headers.get("Authorization", ""))
        if self.headers.get("Authorization") != "Bearer s3cret":
            self.rfile.read(int(self.headers["Content-Length"]))
            return self.reply(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        return super().do_POST()


@pytest.fixture
def keyed_server():
    KeyedChatCompletions.keys_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeyedChatCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_it_refuses_a_qa_server_that_is_not_allowed_naming_the_setting(upload, acme, ingest_queue):
    response = upload(acme.dataset, [("notes.md", NOTES)], recipe="qa",
                      qa={"base_url": "http://169.254.169.254/latest", "model": "m"})
    error = assert_error(response, 400, "invalid")
    (reason,) = error["fields"]["options.qa.base_url"]
    assert "http://169.254.169.254/latest is not a model server this platform may call" in reason
    assert "TINYFORGE_QA_BASE_URLS" in reason
    assert ingest_queue.count == 0


def test_the_platforms_inference_service_is_allowed_by_default(upload, acme, settings, ingest_queue):
    base_url = settings.INFERENCE_URL.upper().replace("HTTP://", "http://") + "/v1/"  # case and a slash do not matter
    response = upload(acme.dataset, [("notes.md", NOTES)], recipe="qa", qa={"base_url": base_url, "model": "m"})
    assert response.status_code == 201, response.content
    assert ingest_queue.count == 1


def test_an_allowed_server_is_called_with_its_key_from_the_settings(upload, ingested, acme, settings, keyed_server):
    settings.QA_BASE_URLS = {keyed_server + "/": "s3cret"}
    version = ingested(upload(acme.dataset, [("notes.md", NOTES)], recipe="qa",
                              qa={"base_url": keyed_server, "model": "qa-writer", "questions_per_chunk": 1}))
    assert version.status == "ready", version.error
    (row,) = [json.loads(line) for line in storage.path(version.storage_key).read_text().splitlines()]
    assert row["output"] == "The boiler runs at 80 degrees." and row["metadata"]["generator_model"] == "qa-writer"
    assert KeyedChatCompletions.keys_seen == ["Bearer s3cret"]
    assert "s3cret" not in json.dumps(version.source_config)  # keys stay in the settings


def test_the_job_checks_again_when_the_server_was_removed_from_the_list(upload, ingested, acme, settings,
                                                                        keyed_server):
    settings.QA_BASE_URLS = {keyed_server: "s3cret"}
    created = upload(acme.dataset, [("notes.md", NOTES)], recipe="qa", qa={"base_url": keyed_server, "model": "qa-writer"})
    settings.QA_BASE_URLS = {}
    version = ingested(created)
    assert version.status == "failed" and "TINYFORGE_QA_BASE_URLS" in version.error
    assert KeyedChatCompletions.keys_seen == []


def test_the_setting_reads_urls_and_keys_from_the_environment(tmp_path):
    (tmp_path / "key").write_text("from-a-file\n")
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tinyforge.settings", "TINYFORGE_DATA_DIR": str(tmp_path),
                   "TINYFORGE_INFERENCE_URL": "http://inference:8001",
                   "TINYFORGE_QA_BASE_URLS": "http://vllm:8000/v1, https://api.example.com/v1",
                   "TINYFORGE_QA_API_KEY_1_FILE": str(tmp_path / "key"), "TINYFORGE_QA_API_KEY_2": "sk-two"}
    for name in ("TINYFORGE_QA_API_KEY_1", "TINYFORGE_QA_API_KEY_2_FILE", "TINYFORGE_QA_INFERENCE_API_KEY",
                 "TINYFORGE_QA_INFERENCE_API_KEY_FILE"):
        environment.pop(name, None)
    shown = subprocess.run([sys.executable, "-c", "import json; from django.conf import settings; "
                            "print(json.dumps(settings.QA_BASE_URLS))"],
                           env=environment, capture_output=True, text=True, check=True)
    assert json.loads(shown.stdout) == {"http://inference:8001/v1": None, "http://vllm:8000/v1": "from-a-file",
                                        "https://api.example.com/v1": "sk-two"}
