"""Every bad input of the serving issue gets a clear OpenAI-shaped error, and the server keeps serving,
on every runtime that serves a model and its adapter (PyTorch, llama.cpp)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import httpx
import openai
import psutil
import pytest

from serving.conftest import copy_model, llama_cpp_folder, running_server
from tinyforge.serving.app import ServerSettings
from tinyforge.serving.pool import RuntimeOptions
from tinyforge.serving.registry import FolderRegistry
from tinymodel import build_tiny_model

USER = [{"role": "user", "content": "What is the capital of Zorbland?"}]
# With ignore_eos a generation lasts exactly max_tokens: something to interrupt, time out or
# fill the queue with.
ENDLESS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def long_context_model(runtime_models, tmp_path_factory):
    """Room for thousands of tokens, so a generation lasts long enough to interrupt."""
    if runtime_models["runtime"] == "torch":
        return build_tiny_model(tmp_path_factory.mktemp("long-context"), context=4096)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(runtime_models["tokenizer_dir"])
    long = build_tiny_model(tmp_path_factory.mktemp("long-context"), context=4096, tokenizer=tokenizer)
    return llama_cpp_folder(long, tmp_path_factory.mktemp("served") / "long-gguf", runtime_models["gguf_caches"])


@pytest.fixture(scope="module")
def server(runtime_models):
    with running_server(FolderRegistry({"tiny": runtime_models["tiny"]})) as running:
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)


def post(server, path, body, **kwargs):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(f"{server.base_url}{path}", content=content, headers={"content-type": "application/json"},
                      timeout=60, **kwargs)


def assert_openai_error(response, status, code=None, param=None, says=""):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    if param:
        assert error["param"] == param
    assert says.lower() in error["message"].lower()
    return error


def test_an_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=USER)
    assert info.value.body["code"] == "model_not_found" and "nope" in info.value.body["message"]


@pytest.mark.parametrize("messages, param, says", [
    ([], "messages", "at least 1"),
    ([{"role": "wizard", "content": "hi"}], "messages.0.role", "unknown role 'wizard'"),
    ([{"role": "user"}], "messages.0.content", "field required"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages.0.content", ""),
])
def test_bad_messages_are_400s_naming_the_field(server, messages, param, says):
    response = post(server, "/v1/chat/completions", {"model": "tiny", "messages": messages})
    assert_openai_error(response, 400, param=param, says=says)


@pytest.mark.parametrize("field, value, param", [
    ("max_tokens", 0, "max_tokens"),
    ("max_tokens", -5, "max_tokens"),
    ("temperature", 2.5, "temperature"),
    ("temperature", -0.1, "temperature"),
    ("top_p", 0, "top_p"),
    ("n", 3, "n"),
    ("stop", ["a", "b", "c", "d", "e"], "stop"),
    ("logprobs", True, "logprobs"),
    ("tools", [], "tools"),
])
def test_out_of_range_settings_are_400s(server, field, value, param):
    response = post(server, "/v1/chat/completions", {"model": "tiny", "messages": USER, field: value})
    assert_openai_error(response, 400, param=param)


@pytest.mark.parametrize("response_format, param, says", [
    ({"type": "xml"}, "response_format.type", "json_schema"),
    ({"type": "json_schema"}, "response_format", 'needs a "json_schema" object'),
    ({"type": "json_object", "json_schema": {"name": "x"}}, "response_format", 'goes with type "json_schema"'),
    ({"type": "json_schema", "json_schema": {"name": "has spaces", "schema": {}}}, "response_format.json_schema.name",
     "pattern"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": ["a list"]}},
     "response_format.json_schema.schema", "dictionary"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}, "response_format",
     "strin"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/definitions/nowhere"}}},
     "response_format", "/definitions/nowhere"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(("}}},
     "response_format", "unclosed group"),
])
def test_a_response_format_that_cannot_constrain_is_a_400_naming_it(server, response_format, param, says):
    response = post(server, "/v1/chat/completions", {"model": "tiny", "messages": USER,
                                                     "response_format": response_format})
    assert_openai_error(response, 400, param=param, says=says)
    assert post(server, "/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 2}).status_code == 200


def test_max_tokens_far_over_the_context_is_a_400_with_the_numbers(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=USER, max_tokens=100_000)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "256" in info.value.body["message"] and "100000 in the completion" in info.value.body["message"]


def test_a_1mb_prompt_is_a_400_and_a_larger_body_a_413(server):
    huge = "Reverse the word: hello. " * 42_000  # ~1 MB
    response = post(server, "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": huge}]})
    assert_openai_error(response, 400, code="context_length_exceeded", says="maximum context length is 256")
    response = post(server, "/v1/completions", {"model": "tiny", "prompt": huge * 5})
    assert_openai_error(response, 413, code="request_too_large")
    assert post(server, "/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("body, says", [
    (b'{"model": "tiny", "messages": [', "malformed JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b'["a list"]', "JSON object"),
    # 2 KB that was a RecursionError (500) before the depth was bounded
    (b'{"model": "tiny", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested deeper than 100 levels"),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "\\ud800"}]}', "half of a surrogate pair"),
    (b'{"model": "tiny", "max_tokens": ' + b"9" * 5000 + b"}", "4300 digits"),
])
def test_malformed_bodies_are_400s(server, body, says):
    for path in ("/v1/chat/completions", "/v1/completions", "/predict"):
        assert_openai_error(post(server, path, body), 400, code="invalid_json" if says != "JSON object" else None,
                            says=says)


def test_unknown_paths_and_methods_get_openai_errors(server):
    assert_openai_error(httpx.get(f"{server.base_url}/v1/nothing"), 404, code="not_found")
    assert_openai_error(httpx.get(f"{server.base_url}/v1/chat/completions"), 405)


def test_a_client_that_disconnects_mid_stream_stops_the_generation(long_context_model):
    with running_server(FolderRegistry({"long": long_context_model})) as server:
        body = {"model": "long", "messages": ENDLESS, "max_tokens": 4000, "temperature": 0, "stream": True,
                "ignore_eos": True}
        with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
            assert server.metric("tinyforge_serving_requests_running", model="long") == 1
        # Closed: the engine must free the slot long before 4000 tokens.
        deadline = time.monotonic() + 20
        while server.metric("tinyforge_serving_requests_running", model="long") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.metric("tinyforge_serving_requests_running", model="long") == 0
        generated = server.metric("tinyforge_serving_completion_tokens_total", model="long")
        assert 0 < generated < 4000
        time.sleep(0.5)
        assert server.metric("tinyforge_serving_completion_tokens_total", model="long") == generated
        assert server.metric("tinyforge_serving_requests_total", model="long", endpoint="/v1/chat/completions",
                             status="499") == 1

        # Without streaming too: the client gives up waiting and the server stops.
        body["stream"] = False
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=0.5)
        deadline = time.monotonic() + 20
        while server.metric("tinyforge_serving_requests_running", model="long") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.metric("tinyforge_serving_requests_running", model="long") == 0
        assert server.metric("tinyforge_serving_completion_tokens_total", model="long") < 8000


def test_a_request_over_its_time_limit_is_stopped_with_a_504(long_context_model):
    settings = ServerSettings(runtime=RuntimeOptions(request_timeout=0.5))
    with running_server(FolderRegistry({"long": long_context_model}), settings=settings) as server:
        response = post(server, "/v1/chat/completions", {"model": "long", "messages": ENDLESS, "max_tokens": 4000,
                                                          "temperature": 0, "ignore_eos": True})
        assert_openai_error(response, 504, code="timeout", says="within 0.5 s")
        assert server.metric("tinyforge_serving_requests_running", model="long") == 0
        assert server.metric("tinyforge_serving_rejected_requests_total", model="long", reason="timeout") == 1


def test_three_times_the_queue_limit_gets_429s_without_crashing(long_context_model):
    settings = ServerSettings(runtime=RuntimeOptions(max_slots=2, max_waiting=4))
    with running_server(FolderRegistry({"long": long_context_model}), settings=settings) as server:
        process = psutil.Process()
        rss_before = process.memory_info().rss

        async def burst():
            async with httpx.AsyncClient(timeout=120) as http:
                body = {"model": "long", "messages": ENDLESS, "max_tokens": 300, "temperature": 0,
                        "ignore_eos": True}
                return await asyncio.gather(*(http.post(f"{server.base_url}/v1/chat/completions", json=body)
                                              for _ in range(18)))

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        # At least the queue's worth is accepted; past slots + queue everything is refused.
        assert statuses.count(200) >= 4 and statuses.count(429) >= 18 - 6
        for response in responses:
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert_openai_error(response, 429, code="rate_limit_exceeded")
            else:
                assert response.json()["usage"]["completion_tokens"] == 300
        assert server.metric("tinyforge_serving_rejected_requests_total", model="long",
                             reason="queue_full") == statuses.count(429)
        assert process.memory_info().rss - rss_before < 200 * 2**20
        assert httpx.get(f"{server.base_url}/health").status_code == 200
        again = post(server, "/v1/chat/completions", {"model": "long", "messages": USER, "max_tokens": 3})
        assert again.status_code == 200


class RecordingRegistry(FolderRegistry):
    """A folder registry that keeps what the server told it, as the platform's records it on deployments."""

    def __init__(self, models):
        super().__init__(models, refresh_seconds=0.2)
        self.states: list[tuple[str, str, str]] = []

    def model_state_changed(self, name, state, detail=""):
        self.states.append((name, state, detail))


def wait_for(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_model_whose_files_were_deleted_fails_clearly_while_others_serve(runtime_models, tmp_path):
    # A served folder of llama.cpp names its GGUFs relative to itself: its copy sits beside it.
    doomed = copy_model(runtime_models["tiny"], runtime_models["tiny"].parent / f"doomed-{tmp_path.name}")
    registry = RecordingRegistry({"doomed": doomed, "tiny": runtime_models["tiny"],
                                  "tiny-lora": runtime_models["tiny-lora"]})
    with running_server(registry) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        assert client.chat.completions.create(model="doomed", messages=USER, max_tokens=2).choices
        shutil.rmtree(doomed)
        wait_for(lambda: server.service.pool.get("doomed").state == "failed")
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="doomed", messages=USER, max_tokens=2)
        assert info.value.status_code == 503 and "were deleted" in info.value.body["message"]
        assert ("doomed", "failed", server.service.pool.get("doomed").error) in registry.states
        assert {m.id for m in client.models.list()} == {"tiny", "tiny-lora"}
        assert "deleted" in httpx.get(f"{server.base_url}/readyz").json()["models"]["doomed"]["error"]
        for name in ("tiny", "tiny-lora"):
            assert client.chat.completions.create(model=name, messages=USER, max_tokens=3).choices[0].message


def test_models_appear_and_disappear_without_a_restart(runtime_models, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    registry = RecordingRegistry({"tiny": runtime_models["tiny"]})
    with running_server(registry) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        registry.models["added"] = runtime_models["tiny-lora"]
        registry.models["broken"] = broken
        wait_for(lambda: getattr(server.service.pool.get("broken"), "state", "") == "failed")
        assert client.chat.completions.create(model="added", messages=USER, max_tokens=2).choices
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="broken", messages=USER)
        assert "cannot load model 'broken'" in info.value.body["message"]
        del registry.models["added"]
        wait_for(lambda: server.service.pool.get("added") is None)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="added", messages=USER, max_tokens=2)
        assert ("added", "unloaded", "") in registry.states
        assert client.chat.completions.create(model="tiny", messages=USER, max_tokens=2).choices
