"""The llama.cpp runtime's own bad inputs: broken GGUFs, a llama-server that dies mid-answer, one process
per base shared by its adapters, and the process stopping with the last deployment on it. (The API
contract it shares with PyTorch is tested by test_openai_api.py and test_bad_input.py, parametrised.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading

import httpx
import openai
import psutil
import pytest

from capabilities import needs_llama_cpp
from serving.conftest import copy_model, llama_cpp_folder, running_server
from serving.test_bad_input import RecordingRegistry, wait_for
from tinymodel import build_tiny_model
from tinyforge.serving.app import ServerSettings
from tinyforge.serving.pool import RuntimeOptions

pytestmark = needs_llama_cpp

USER = [{"role": "user", "content": "What is the capital of Zorbland?"}]
SMALL = ServerSettings(runtime=RuntimeOptions(max_slots=4))


class DeploymentsLikeRegistry(RecordingRegistry):
    """As the platform's registry: a model that fails does not hold the service's readiness back."""

    every_model_required = False


@pytest.fixture(scope="module")
def long_llama_cpp_dir(smol_tiny_model_dir, gguf_caches, tmp_path_factory):
    """Room for thousands of tokens, so an answer lasts long enough to kill llama-server under it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_tiny_model_dir)
    long = build_tiny_model(tmp_path_factory.mktemp("long-smol"), context=4096, tokenizer=tokenizer)
    return llama_cpp_folder(long, tmp_path_factory.mktemp("served") / "long-gguf", gguf_caches)


def engines(server) -> dict:
    """The llama.cpp engines of the server's pool, by the GGUF each serves."""
    return {key: entry.engine for key, entry in server.service.pool._runtimes.items() if key.startswith("llama.cpp:")}


def lora_arguments(pid: int) -> list[str]:
    command = psutil.Process(pid).cmdline()
    return [command[i + 1] for i, part in enumerate(command) if part == "--lora"]


def ask(client, model, **options):
    return client.chat.completions.create(model=model, messages=USER, max_tokens=8, temperature=0,
                                          **options).choices[0].message.content


def broken_copy(folder, target, damage):
    """A copy of a served llama.cpp folder whose GGUF is a damaged copy of the original."""
    copy = copy_model(folder, target)
    manifest = json.loads((copy / "llama_cpp.json").read_text())
    original = (folder / manifest["model"]).resolve()
    damaged = copy / "model.gguf"
    damaged.write_bytes(damage(original.read_bytes()))
    (copy / "llama_cpp.json").write_text(json.dumps({**manifest, "model": "model.gguf"}))
    return copy


def test_two_deployments_of_one_base_share_one_process_with_an_adapter_each(
        llama_cpp_lora_dir, llama_cpp_second_lora_dir):
    registry = RecordingRegistry({"a": llama_cpp_lora_dir, "b": llama_cpp_second_lora_dir})
    with running_server(registry, settings=SMALL) as server:
        (engine,) = engines(server).values()
        assert sorted(lora_arguments(engine.pid)) == sorted(
            str((folder / json.loads((folder / "llama_cpp.json").read_text())["lora"]).resolve())
            for folder in (llama_cpp_lora_dir, llama_cpp_second_lora_dir))
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        # Each request gets its own adapter, whatever the one before it used.
        first = {name: ask(client, name) for name in ("a", "b")}
        assert first["a"] != first["b"]
        assert {name: ask(client, name) for name in ("b", "a")} == first
        models = {m.id: m.model_extra["tinyforge"] for m in client.models.list()}
        for name in ("a", "b"):
            assert models[name]["runtime"] == "llama.cpp" and models[name]["adapter_on_shared_base"]
            assert 0 < models[name]["own_memory_bytes"] < models[name]["memory_bytes_by_part"]["shared_base"]
        assert models["a"]["shared_memory_bytes"] == models["b"]["shared_memory_bytes"]


def test_undeploying_the_last_deployment_of_a_base_stops_its_process(llama_cpp_lora_dir, llama_cpp_second_lora_dir):
    registry = RecordingRegistry({"a": llama_cpp_lora_dir, "b": llama_cpp_second_lora_dir})
    with running_server(registry, settings=SMALL) as server:
        (engine,) = engines(server).values()
        process = psutil.Process(engine.pid)
        assert process.memory_info().rss > 0
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        del registry.models["a"]
        wait_for(lambda: server.service.pool.get("a") is None)
        assert process.is_running() and ask(client, "b")  # the other deployment keeps its process
        del registry.models["b"]
        wait_for(lambda: server.service.pool.get("b") is None)
        # Stopped, so its memory is back with the system; nothing reports it any more.
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
        assert engines(server) == {}
        assert server.metric("tinyforge_serving_model_memory_bytes", model="b", part="shared_base") == 0
        assert ("b", "unloaded", "") in registry.states


def test_llama_server_dying_mid_answer_is_an_openai_error_and_it_is_restarted(long_llama_cpp_dir):
    registry = RecordingRegistry({"long": long_llama_cpp_dir})
    with running_server(registry, settings=SMALL) as server:
        (engine,) = engines(server).values()
        pid = engine.pid
        body = {"model": "long", "messages": USER, "max_tokens": 4000, "temperature": 0, "stream": True,
                "ignore_eos": True}
        with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            for _ in range(4):
                next(lines)
            os.kill(pid, signal.SIGKILL)
            rest = [line for line in lines if line]
        error = json.loads(rest[-1].removeprefix("data: "))["error"]
        assert error["type"] == "server_error" and error["code"] == "engine_error"
        assert "llama-server stopped while generating this answer" in error["message"]
        # The next request waits for the restarted process and gets its answer.
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        assert ask(client, "long") is not None
        assert engine.restarts == 1 and engine.pid != pid and "exited with status" in engine.last_exit
        assert server.service.pool.get("long").state == "ready"
        assert server.metric("tinyforge_serving_requests_total", model="long", endpoint="/v1/chat/completions",
                             status="500") == 1

        # Without streaming, the same failure is a 500 in OpenAI's shape.
        pid = engine.pid

        def kill_once_it_answers():
            wait_for(lambda: engine.running == 1)
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_once_it_answers)
        killer.start()
        response = httpx.post(f"{server.base_url}/v1/chat/completions", json={**body, "stream": False}, timeout=60)
        killer.join()
        assert response.status_code == 500 and response.json()["error"]["code"] == "engine_error"
        assert ask(client, "long") is not None and engine.restarts == 2


def test_a_llama_server_that_cannot_start_again_answers_503s_saying_why_until_it_can(llama_cpp_tiny_dir, tmp_path):
    own = broken_copy(llama_cpp_tiny_dir, llama_cpp_tiny_dir.parent / f"own-{tmp_path.name}", lambda data: data)
    gguf = own / "model.gguf"
    good = gguf.read_bytes()
    try:
        with running_server(RecordingRegistry({"tiny": own}), settings=SMALL) as server:
            (engine,) = engines(server).values()
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
            gguf.write_bytes(good[: len(good) // 3])  # damaged on disk while it serves from memory
            os.kill(engine.pid, signal.SIGKILL)
            wait_for(lambda: engine.restart_error)
            with pytest.raises(openai.InternalServerError) as info:
                ask(client, "tiny")
            assert info.value.status_code == 503 and info.value.body["code"] == "engine_unavailable"
            assert "could not be started again: llama-server could not load model.gguf" in info.value.body["message"]
            gguf.write_bytes(good)  # repaired: the next try of the backoff brings it back
            wait_for(lambda: engine.restarts == 1 and not engine.restart_error, seconds=60)
            assert ask(client, "tiny") is not None
    finally:
        shutil.rmtree(own)


@pytest.mark.parametrize("damage, says", [
    (lambda data: data[: len(data) // 2], "and the file has"),  # truncated: a copy cut short
    (lambda data: b"GGUF" + b"\x00" * 64, "model.gguf"),  # the magic, then nothing that makes a model
    (lambda data: b"not a gguf at all" * 10, "not a readable GGUF"),
])
def test_a_corrupt_or_truncated_gguf_fails_its_model_clearly_while_the_others_serve(
        llama_cpp_tiny_dir, llama_cpp_lora_dir, tmp_path, damage, says):
    broken = broken_copy(llama_cpp_tiny_dir, llama_cpp_tiny_dir.parent / f"broken-{tmp_path.name}", damage)
    try:
        registry = DeploymentsLikeRegistry({"broken": broken, "tiny": llama_cpp_tiny_dir,
                                            "tiny-lora": llama_cpp_lora_dir})
        with running_server(registry, settings=SMALL) as server:
            failed = server.service.pool.get("broken")
            assert failed.state == "failed" and says in failed.error and "cannot load model 'broken'" in failed.error
            assert ("broken", "failed", failed.error) in registry.states
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
            with pytest.raises(openai.InternalServerError) as info:
                ask(client, "broken")
            assert info.value.status_code == 503 and info.value.body["code"] == "model_failed"
            assert {m.id for m in client.models.list()} == {"tiny", "tiny-lora"}
            assert ask(client, "tiny") and ask(client, "tiny-lora")
            # No process is left behind for the file that failed.
            assert len(engines(server)) == 2
    finally:
        shutil.rmtree(broken)


def test_the_gguf_header_reads_as_the_gguf_package_reads_it(llama_cpp_lora_dir):
    """The runtime's own pass over a GGUF's header (the package's reader takes seconds on a real
    tokenizer) gives the package's values: scalars and strings as they are, arrays as their length."""
    from gguf import GGUFReader

    from tinyforge.serving.llama_cpp_runtime import _gguf_header

    manifest = json.loads((llama_cpp_lora_dir / "llama_cpp.json").read_text())
    for name in ("model", "lora"):
        path = (llama_cpp_lora_dir / manifest[name]).resolve()
        expected = {key: field.contents() for key, field in GGUFReader(path).fields.items()
                    if not key.startswith("GGUF.")}
        expected = {key: len(value) if isinstance(value, list) else value for key, value in expected.items()}
        assert _gguf_header(path) == pytest.approx(expected), name
    assert expected["general.type"] == "adapter" and len(expected) > 5


def test_a_broken_adapter_fails_its_deployment_and_the_base_keeps_serving(
        llama_cpp_lora_dir, llama_cpp_second_lora_dir, tmp_path):
    broken = copy_model(llama_cpp_second_lora_dir, llama_cpp_second_lora_dir.parent / f"broken-{tmp_path.name}")
    manifest = json.loads((broken / "llama_cpp.json").read_text())
    (broken / "adapter.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    (broken / "llama_cpp.json").write_text(json.dumps({**manifest, "lora": "adapter.gguf"}))
    try:
        registry = RecordingRegistry({"a": llama_cpp_lora_dir})
        with running_server(registry, settings=SMALL) as server:
            (engine,) = engines(server).values()
            pid = engine.pid
            registry.models["broken"] = broken
            wait_for(lambda: getattr(server.service.pool.get("broken"), "state", "") == "failed", seconds=120)
            assert "llama-server could not load" in server.service.pool.get("broken").error
            client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
            assert ask(client, "a") and engine.pid == pid  # the running process was never replaced
            assert len(lora_arguments(pid)) == 1
    finally:
        shutil.rmtree(broken)


def test_a_quantized_gguf_serves_and_says_its_type(smol_tiny_model_dir, gguf_caches, tmp_path):
    """The tiny random model's answers are noise, so q8_0's quality budget is waived here (the GGUF
    export's tests hold trained models to it)."""
    from tinyforge.ml.quality_budget import QualityBudget

    folder = llama_cpp_folder(smol_tiny_model_dir, tmp_path / "q8", gguf_caches, gguf_type="q8_0",
                              budget=QualityBudget(max_loss_increase=100.0, min_token_agreement=0.0))
    manifest = json.loads((folder / "llama_cpp.json").read_text())
    assert manifest["gguf_type"] == "q8_0" and manifest["lora"] is None
    assert json.loads((folder / "verification.json").read_text())["gguf_type"] == "q8_0"
    with running_server(RecordingRegistry({"q8": folder}), settings=SMALL) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        served = client.models.retrieve("q8").model_extra["tinyforge"]
        assert served["runtime"] == "llama.cpp" and served["dtype"] == "q8_0"
        assert served["precision"]["precision"] == "q8_0" and not served["adapter_on_shared_base"]
        assert ask(client, "q8") is not None
