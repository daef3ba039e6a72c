"""Deployments on the llama.cpp runtime: chosen in the API, prepared by a real deploy worker (GGUFs
converted and verified, cached beside the run and the base), served by llama-server behind the
platform's inference service, with its tokens, statistics and memory; refused with a 400 naming
what is missing where llama.cpp is not installed; failed with a readable event for a broken GGUF."""

from __future__ import annotations

import json
import shutil

import openai
import psutil
import pytest

from capabilities import needs_llama_cpp
from deployments.conftest import FACTS, inference_secret, trained_run, wait_for, wait_for_status
from deployments.test_deployments_lifecycle import ask, deploy, openai_client
from personas import assert_error
from serving.conftest import smol_tiny_model_dir  # noqa: F401
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.deployments.inference import record_deployment_stats
from tinyforge.deployments.models import Deployment

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def smol_trained_model_dir(smol_tiny_model_dir, tmp_path_factory):  # noqa: F811
    """A LoRA fine-tune of the tiny model that carries SmolLM2's tokenizer (which llama.cpp converts)."""
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import train

    out = tmp_path_factory.mktemp("smol-deployable")
    train(TrainConfig(base_model=str(smol_tiny_model_dir), max_steps=4, batch_size=4, learning_rate=3e-3,
                      max_seq_length=96, eval_generations=0, lora_dropout=0.0, seed=5, validation_split=0.25,
                      eval_steps=2, save_steps=2, lora_r=2), FACTS, out)
    return out


def llama_engines(inference_service) -> dict:
    return {key: entry.engine for key, entry in inference_service.service.pool._runtimes.items()
            if key.startswith("llama.cpp:")}


def test_choosing_llama_cpp_where_it_is_not_installed_is_a_400_naming_what_is_missing(
        acme, alice, client_for, queues, trained_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYFORGE_LLAMA_CPP_DIR", str(tmp_path / "not-built"))
    monkeypatch.setenv("PATH", "/nonexistent")
    run = trained_run(acme, trained_model_dir)
    response = client_for(alice).post("/api/v1/deployments/", {"name": "gguf", "run": run.pk,
                                                                "runtime": "llama.cpp"}, format="json")
    error = assert_error(response, 400)
    (message,) = error["fields"]["runtime"]
    assert "llama.cpp runtime is not available" in message and "convert_hf_to_gguf.py" in message
    assert "tinyforge llama-cpp install" in message
    assert not Deployment.all_teams.filter(name="gguf").exists() and queues[1].count == 0


def test_a_gguf_type_applies_to_the_llama_cpp_runtime_only(acme, alice, client_for, queues, trained_model_dir):
    run = trained_run(acme, trained_model_dir)
    response = client_for(alice).post("/api/v1/deployments/", {"name": "q", "run": run.pk, "runtime": "pytorch",
                                                                "gguf_type": "q4_k_m"}, format="json")
    assert "llama.cpp runtime" in assert_error(response, 400)["fields"]["gguf_type"][0]
    # An export names its GGUF type as quantize, as a GGUF export does; a GGUF type needs llama.cpp.
    response = client_for(alice).post("/api/v1/exports/", {"run": run.pk, "format": "bundle", "runtime": "pytorch",
                                                            "quantize": "q4_k_m"}, format="json")
    assert "runs on llama.cpp (GGUF): use runtime llama.cpp" in assert_error(response, 400)["fields"]["runtime"][0]


@needs_llama_cpp
def test_two_llama_cpp_deployments_of_one_base_share_one_llama_server_and_stop_it_when_undeployed(
        acme, alice, client_for, queues, inference_service, live_server, smol_trained_model_dir):
    run = trained_run(acme, smol_trained_model_dir)
    first = wait_for_status(deploy(client_for(alice), run, "gguf-a", queues, runtime="llama.cpp"), "ready", 180)
    # The second deployment converts nothing: the base's and the adapter's GGUFs are cached.
    second = wait_for_status(deploy(client_for(alice), run, "gguf-b", queues, runtime="llama.cpp"), "ready", 180)
    events = list(Event.all_teams.filter(deployment=second).values_list("message", flat=True))
    assert any("reusing the f16 GGUF of the base model" in m for m in events), events
    assert any("reusing the GGUF LoRA" in m for m in events), events
    manifest = json.loads((storage.path(second.model_path) / "llama_cpp.json").read_text())
    assert manifest["gguf_type"] == "f16" and manifest["lora"].endswith("adapter.gguf")
    first.refresh_from_db()
    assert first.serving_precision == "f16" and "llama.cpp" in first.precision_reason

    (engine,) = llama_engines(inference_service).values()
    process = psutil.Process(engine.pid)
    assert process.cmdline().count("--lora") == 2

    client = openai_client(live_server, inference_secret(alice, acme.team))
    assert {m.id for m in client.models.list()} == {"gguf-a", "gguf-b"}
    served = client.models.retrieve("gguf-a").model_extra["tinyforge"]
    assert served["runtime"] == "llama.cpp" and served["adapter_on_shared_base"]
    question = [{"role": "user", "content": "What is the capital of Zorbland?"}]
    whole = client.chat.completions.create(model="gguf-a", messages=question, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="gguf-a", messages=question, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # Both adapters are the same fine-tune: the same answer from either deployment.
    assert ask(client, "gguf-b") == ask(client, "gguf-a")

    assert record_deployment_stats(inference_service.service.metrics.registry) >= 1
    shown = client_for(alice).get(f"/api/v1/deployments/{first.pk}/").json()
    assert shown["runtime"] == "llama.cpp" and shown["request_count"] == 3 and shown["tokens_out"] >= 3
    assert 0 < shown["own_memory_bytes"] < shown["shared_memory_bytes"]

    for deployment in (first, second):
        response = client_for(alice).post(f"/api/v1/deployments/{deployment.pk}/stop/")
        assert response.status_code == 200
        wait_for(lambda d=deployment: Event.all_teams.filter(deployment=d, message__startswith="unloaded").exists(),
                 "the service to unload the stopped deployment")
        if deployment is first:
            assert process.is_running() and ask(client, "gguf-b") is not None
    wait_for(lambda: not process.is_running() or process.status() == psutil.STATUS_ZOMBIE,
             "llama-server to stop with the base's last deployment")
    assert llama_engines(inference_service) == {}


@needs_llama_cpp
def test_a_broken_gguf_fails_its_deployment_with_a_readable_event_while_the_other_serves(
        acme, alice, client_for, queues, inference_service, live_server, smol_trained_model_dir):
    run = trained_run(acme, smol_trained_model_dir)
    good = wait_for_status(deploy(client_for(alice), run, "good", queues, runtime="llama.cpp", merge_adapter=True),
                           "ready", 180)
    # Another deployment whose GGUF was cut short on disk (a copy, so the good one keeps its file).
    folder = storage.path(good.model_path)
    broken_key = f"{storage.deployment_key(acme.project.pk, good.pk)}-broken"
    broken_folder = storage.path(broken_key)
    shutil.copytree(folder, broken_folder)
    manifest = json.loads((folder / "llama_cpp.json").read_text())
    data = (folder / manifest["model"]).resolve().read_bytes()
    (broken_folder / "model.gguf").write_bytes(data[: len(data) // 3])
    (broken_folder / "llama_cpp.json").write_text(json.dumps({**manifest, "model": "model.gguf"}))
    broken = Deployment.all_teams.create(team=acme.team, project=acme.project, run=run, name="broken",
                                         runtime="llama.cpp", model_path=broken_key, status="pending")
    wait_for_status(broken, "failed", 120)
    assert "cannot load model" in broken.error
    messages = list(Event.all_teams.filter(deployment=broken, level="error").values_list("message", flat=True))
    assert any("the inference service cannot serve this deployment" in m and "model.gguf" in m for m in messages)
    client = openai_client(live_server, inference_secret(alice, acme.team))
    assert ask(client, "good") is not None
    assert [m.id for m in client.models.list()] == ["good"]
