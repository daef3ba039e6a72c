"""The official `openai` client against a real uvicorn server serving the tiny model and an adapter, on
every runtime that serves both (PyTorch, llama.cpp): a client sees the same contract whichever serves."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from transformers import AutoTokenizer

from serving.conftest import running_server
from tinyforge.ml.formatting import tokenize_messages
from tinyforge.serving.api import ChatCompletionRequest
from tinyforge.serving.app import ServerSettings
from tinyforge.serving.auth import APIKeyAuthenticator
from tinyforge.serving.registry import FolderRegistry

KEY = "test-key-0123456789"
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Zorbland?"},
    {"role": "assistant", "content": "The capital of Zorbland is Quillport."},
    {"role": "user", "content": "Reverse the word: hello"},
]


METRICS_TOKEN = "metrics-token-9876"
ORDER = [{"role": "user", "content": "Order?"}]
ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "item": {"type": "string", "maxLength": 12},
        "count": {"type": "integer", "minimum": 1, "maximum": 99},
        "size": {"enum": ["small", "large"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 2},
    },
    "required": ["item", "count", "size", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server(runtime_models):
    registry = FolderRegistry({"tiny": runtime_models["tiny"], "tiny-lora": runtime_models["tiny-lora"]})
    with running_server(registry, APIKeyAuthenticator(KEY), ServerSettings(metrics_token=METRICS_TOKEN)) as running:
        running.models = runtime_models
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0)


def test_it_lists_the_models_with_their_memory(client, server):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny", "tiny-lora"}
    assert {m.model_extra["tinyforge"]["runtime"] for m in models.values()} == {server.models["runtime"]}
    lora = models["tiny-lora"].model_extra["tinyforge"]
    assert lora["adapter_on_shared_base"] is True
    parts = lora["memory_bytes_by_part"]
    # Its own memory is the adapter; the base and KV cache it runs on are shared, reported apart.
    assert lora["own_memory_bytes"] == parts["adapter"] > 0
    assert lora["shared_memory_bytes"] == parts["shared_base"] + parts["kv_cache"]
    full = models["tiny"].model_extra["tinyforge"]
    assert full["own_memory_bytes"] == full["memory_bytes_by_part"]["weights"] == parts["shared_base"]
    assert full["shared_memory_bytes"] == parts["kv_cache"]  # the same runtime: one KV cache for both
    assert client.models.retrieve("tiny").id == "tiny"


def test_it_chats_without_streaming(client):
    answer = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=12, temperature=0)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens <= 12 and answer.usage.prompt_tokens > 20
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streaming_gives_the_same_text_and_usage_at_the_end(client):
    expected = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=15, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=15, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == expected.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == expected.usage.completion_tokens


def test_the_sse_stream_ends_with_done(server):
    with httpx.stream("POST", f"{server.base_url}/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "tiny", "prompt": "The quick brown", "max_tokens": 5, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_completions_with_and_without_streaming(client):
    answer = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=8, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="The quick brown", max_tokens=8, temperature=0, stream=True))
    assert answer.choices[0].text == streamed
    assert answer.usage.completion_tokens == 8 or answer.choices[0].finish_reason == "stop"


def test_the_adapter_changes_the_answer(client):
    base = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=10, temperature=0)
    tuned = client.chat.completions.create(model="tiny-lora", messages=CONVERSATION, max_tokens=10, temperature=0)
    assert base.choices[0].message.content != tuned.choices[0].message.content


def test_a_seed_gives_the_same_sample_and_stop_strings_cut_the_text(client):
    kwargs = dict(model="tiny", messages=CONVERSATION, max_tokens=20, temperature=1.0, top_p=0.9)
    first = client.chat.completions.create(seed=7, **kwargs).choices[0].message.content
    assert client.chat.completions.create(seed=7, **kwargs).choices[0].message.content == first
    assert len({client.chat.completions.create(seed=s, **kwargs).choices[0].message.content for s in range(4)}) > 1
    greedy = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=20, temperature=0)
    text = greedy.choices[0].message.content
    stop = text[3:5]
    cut = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=20, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=CONVERSATION, max_tokens=20, temperature=0, stop=stop, stream=True))
    assert streamed == text[: text.index(stop)]


def test_a_conversation_becomes_the_token_ids_of_training(server, client):
    tokenizer = AutoTokenizer.from_pretrained(str(server.models["tokenizer_dir"]))
    served = server.service.pool.get("tiny")
    request = ChatCompletionRequest.model_validate({"model": "tiny", "messages": CONVERSATION})
    ids = server.service._prompt_ids(served, request, "chat")
    assert ids == list(tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=True,
                                                     return_dict=False))
    # Training's tokenization of the conversation with a reply starts with exactly these ids.
    trained = tokenize_messages(tokenizer, CONVERSATION + [{"role": "assistant", "content": "olleh"}])
    assert trained.input_ids[: len(ids)] == ids
    usage = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=1).usage
    assert usage.prompt_tokens == len(ids)


def test_predict_health_readiness_and_metrics(server):
    headers = {"Authorization": f"Bearer {KEY}"}
    answer = httpx.post(f"{server.base_url}/predict", json={"input": "Reverse the word: hello", "model": "tiny",
                                                            "max_tokens": 6}, headers=headers)
    assert answer.status_code == 200 and isinstance(answer.json()["output"], str)
    health = httpx.get(f"{server.base_url}/health").json()
    assert health["status"] == "alive" and health["uptime_seconds"] > 0
    ready = httpx.get(f"{server.base_url}/readyz").json()
    assert ready["ready"] and ready["models"]["tiny-lora"]["state"] == "ready"
    page = httpx.get(f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    for name in ("tinyforge_serving_requests_total", "tinyforge_serving_prompt_tokens_total",
                 "tinyforge_serving_completion_tokens_total", "tinyforge_serving_time_to_first_token_seconds_bucket",
                 "tinyforge_serving_request_duration_seconds_bucket", "tinyforge_serving_requests_running",
                 "tinyforge_serving_requests_waiting", "tinyforge_serving_model_memory_bytes"):
        assert name in page
    assert server.metric("tinyforge_serving_requests_total", model="tiny", endpoint="/predict", status="200") >= 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": f"Bearer {KEY}"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": f"Basic {METRICS_TOKEN}"}])
def test_metrics_answer_only_the_metrics_token_while_health_stays_open(server, headers):
    """The models' API key does not open them: the metrics name every model and its traffic."""
    refused = httpx.get(f"{server.base_url}/metrics", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_metrics_token"
    assert "tinyforge_serving" not in refused.text
    assert httpx.get(f"{server.base_url}/health").status_code == 200


def test_without_a_metrics_token_the_port_serves_no_metrics(tiny_model_dir):
    with running_server(FolderRegistry({"tiny": tiny_model_dir}), APIKeyAuthenticator(KEY)) as bare:
        for headers in ({}, {"Authorization": f"Bearer {KEY}"}):
            answer = httpx.get(f"{bare.base_url}/metrics", headers=headers)
            assert answer.status_code == 404 and "TINYFORGE_METRICS_TOKEN" in answer.json()["error"]["message"]
        assert httpx.get(f"{bare.base_url}/health").status_code == 200


def test_a_wrong_or_missing_key_is_refused(server):
    bad = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{server.base_url}/v1/models").status_code == 401


def test_response_format_holds_every_answer_to_its_json_schema(client):
    """The untrained model writes no JSON by itself; held to a schema, every answer parses and
    validates, sampled or greedy, streamed or not, on the base and on its adapter."""
    free = client.chat.completions.create(model="tiny", messages=ORDER, max_tokens=40, temperature=0)
    with pytest.raises(json.JSONDecodeError):
        json.loads(free.choices[0].message.content)
    response_format = {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER_SCHEMA, "strict": True}}
    answers = []
    for model in ("tiny", "tiny-lora"):
        for seed in range(3):
            answer = client.chat.completions.create(model=model, messages=ORDER, max_tokens=160, temperature=1.0,
                                                    seed=seed, response_format=response_format)
            assert answer.choices[0].finish_reason == "stop"
            document = json.loads(answer.choices[0].message.content)
            jsonschema.validate(document, ORDER_SCHEMA)
            answers.append(document)
    assert len({json.dumps(a, sort_keys=True) for a in answers}) > 1  # the model still chooses what to say
    greedy = client.chat.completions.create(model="tiny", messages=ORDER, max_tokens=160, temperature=0,
                                            response_format=response_format)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="tiny", messages=ORDER, max_tokens=160, temperature=0, response_format=response_format, stream=True))
    assert streamed == greedy.choices[0].message.content
    jsonschema.validate(json.loads(streamed), ORDER_SCHEMA)


def test_json_object_mode_answers_an_object_and_a_short_limit_cuts_it(client):
    # Any object: nothing bounds its size, so some samples run to max_tokens (an object cut short).
    answers = [client.completions.create(model="tiny", prompt="The quick brown", max_tokens=100, temperature=1.0,
                                         seed=seed, extra_body={"response_format": {"type": "json_object"}}).choices[0]
               for seed in range(6)]
    assert all(a.text.startswith("{") for a in answers)
    complete = [json.loads(a.text) for a in answers if a.finish_reason == "stop"]
    assert complete and all(isinstance(c, dict) for c in complete)
    cut = client.chat.completions.create(model="tiny", messages=ORDER, max_tokens=3, temperature=0,
                                         response_format={"type": "json_schema", "json_schema": {
                                             "name": "order", "schema": ORDER_SCHEMA}})
    # As OpenAI does: the answer stops at max_tokens, an incomplete document, and says so.
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content.startswith("{")
    text = client.chat.completions.create(model="tiny", messages=ORDER, max_tokens=20, temperature=0,
                                          response_format={"type": "text"})
    assert text.choices[0].message.content == client.chat.completions.create(
        model="tiny", messages=ORDER, max_tokens=20, temperature=0).choices[0].message.content
