"""The issue's journey: a run trained by a real worker, deployed by a real worker, served by the
platform's inference service, and used with the official `openai` client through the platform's
own URL (the web process passes /v1/ on to the service, as `make demo` does without nginx)."""

from __future__ import annotations

import openai
import pytest

from deployments.conftest import inference_secret, wait_for, wait_for_status, work_off
from tinyforge.deployments.inference import record_deployment_stats
from tinyforge.deployments.models import Deployment
from tinyforge.training.models import RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_trains_deploys_and_answers_the_openai_client(acme, alice, make_run, queues, inference_service, live_server,
                                                          client_for):
    # Rank 2 on the tiny model's 64 dimensions is the proportion of rank 16 on SmolLM2's 576: at
    # rank 16 the tiny model's adapter would weigh as much as its base.
    run = make_run(name="zorbland", lora_r=2)
    work_off(queues)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error

    response = client_for(alice).post("/api/v1/deployments/", {"name": "zorbland-bot", "run": run.pk}, format="json")
    assert response.status_code == 201, response.content
    deployment = Deployment.all_teams.get(pk=response.json()["id"])
    assert deployment.status == "pending"
    assert deployment.checkpoint == run.best_checkpoint()
    work_off(queues)
    wait_for_status(deployment, "ready")

    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=inference_secret(alice, acme.team), max_retries=0)
    assert [m.id for m in client.models.list()] == ["zorbland-bot"]
    assert client.models.retrieve("zorbland-bot").id == "zorbland-bot"

    question = [{"role": "user", "content": "What is the capital of Zorbland?"}]
    whole = client.chat.completions.create(model="zorbland-bot", messages=question, max_tokens=8, temperature=0)
    assert whole.model == "zorbland-bot"
    assert whole.choices[0].message.content and whole.usage.completion_tokens >= 1

    chunks = list(client.chat.completions.create(model="zorbland-bot", messages=question, max_tokens=8,
                                                 temperature=0, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content  # greedy: the same answer either way
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # token by token
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    completion = client.completions.create(model="zorbland-bot", prompt="Zorbland", max_tokens=4, temperature=0)
    assert completion.choices[0].text is not None and completion.model == "zorbland-bot"

    # The deployment shows what the service measured.
    assert record_deployment_stats(inference_service.service.metrics.registry) >= 1
    shown = client_for(alice).get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert shown["request_count"] == 3 and shown["error_count"] == 0
    assert shown["tokens_out"] >= 3 and shown["tokens_in"] > 0
    assert shown["latency_p50_ms"] > 0 and shown["latency_p95_ms"] >= shown["latency_p50_ms"]
    assert shown["stats_updated_at"]
    # The run is a LoRA fine-tune served on its base's shared weights: its own memory is the
    # adapter, far below the base and KV cache it shares (which ten adapters would not repeat).
    served = client.models.retrieve("zorbland-bot").model_extra["tinyforge"]
    assert served["adapter_on_shared_base"]
    parts = served["memory_bytes_by_part"]
    assert shown["own_memory_bytes"] == served["own_memory_bytes"] == parts["adapter"] > 0
    assert shown["shared_memory_bytes"] == served["shared_memory_bytes"] == parts["shared_base"] + parts["kv_cache"]
    assert 5 * shown["own_memory_bytes"] < parts["shared_base"]  # 8x here, 9x for SmolLM2 at rank 16

    events = [e["message"] for e in client_for(alice).get(f"/api/v1/events/?deployment={deployment.pk}").json()["results"]]
    assert any("model prepared" in m for m in events) and any(m.startswith("ready") for m in events)


def test_the_proxy_says_when_the_inference_service_is_down(acme, alice, live_server, settings):
    settings.INFERENCE_URL = "http://127.0.0.1:9"  # nothing listens there
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=inference_secret(alice, acme.team), max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.models.list()
    assert info.value.status_code == 503
    assert "tinyforge serve-platform" in info.value.message
