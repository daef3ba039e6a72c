"""Under concurrency nothing is dropped or cut short, and greedy answers equal each request alone."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from serving.conftest import make_lora_adapter, running_server
from tinyforge.errors import TinyforgeError
from tinyforge.serving.engine import Engine, Finished, SamplingParams, TextDelta
from tinyforge.serving.metrics import ServingMetrics
from tinyforge.serving.registry import FolderRegistry
from tinyforge.serving.runtime import BASE_ADAPTER
from tinyforge.serving.torch_runtime import TorchRuntime

QUESTIONS = [
    "What is the capital of Zorbland?", "Reverse the word: hello", "Widget Pro supports how many devices?",
    "The quick brown fox", "abc", "Tell me about the warranty.", "Reverse the word: world", "Hi",
    "What does Widget Pro ship with?", "lazy dog", "0123456789", "You are a helpful assistant.",
    "capital", "Quillport", "jumps over", "What is Zorbland?",
]
# Float noise between a row computed alone and in a batch of 16 (different matmul kernels).
NOISE = 1e-4


async def generate(engine, tokenizer, prompt_ids, max_tokens, adapter=BASE_ADAPTER):
    handle = engine.submit(model="m", adapter_id=adapter, tokenizer=tokenizer, prompt_ids=prompt_ids,
                           params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
                           stop_token_ids=frozenset({tokenizer.eos_token_id}), loop=asyncio.get_running_loop())
    text = []
    async for event in handle:
        if isinstance(event, TextDelta):
            text.append(event.text)
        else:
            assert isinstance(event, Finished), event
            return "".join(text), event


def test_greedy_answers_in_a_batch_equal_each_request_alone(tiny_model_dir, lora_adapter_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    engine = Engine(lambda: TorchRuntime.from_folder(tiny_model_dir, max_slots=16, max_context=128, dtype="float32"),
                    name="tiny", metrics=ServingMetrics())
    adapter = engine.call(lambda runtime: runtime.add_adapter(lora_adapter_dir))
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                             tokenize=True, return_dict=False) for q in QUESTIONS]
    adapters = [adapter if i % 3 == 0 else BASE_ADAPTER for i in range(len(prompts))]
    # Different lengths, so requests leave the batch at different steps and others move slots.
    lengths = [20 + 5 * (i % 4) for i in range(len(prompts))]

    async def alone():
        return [await generate(engine, tokenizer, p, n, a) for p, n, a in zip(prompts, lengths, adapters)]

    async def together():
        return await asyncio.gather(*(generate(engine, tokenizer, p, n, a) for p, n, a in zip(prompts, lengths, adapters)))

    try:
        expected = asyncio.run(alone())
        got = asyncio.run(together())
    finally:
        engine.stop()
    models = {BASE_ADAPTER: AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()}
    for i, ((text, done), (want_text, want)) in enumerate(zip(got, expected)):
        assert done.reason == want.reason and done.prompt_tokens == want.prompt_tokens
        if done.token_ids == want.token_ids:
            assert text == want_text
            continue
        # Where they differ, the two best candidates must have tied within float noise.
        first = next(k for k, (a, b) in enumerate(zip(done.token_ids, want.token_ids)) if a != b)
        model = models.get(adapters[i]) or _peft(tiny_model_dir, lora_adapter_dir)
        with torch.no_grad():
            logits = model(torch.tensor([prompts[i] + list(want.token_ids[:first])])).logits[0, -1]
        top = logits.topk(2).values
        assert top[0] - top[1] < NOISE, f"request {i} differs at token {first} with a clear winner"
    assert all(done.completion_tokens == n or done.reason == "stop" for (_, done), n in zip(got, lengths))


def _peft(base_dir, adapter_dir):
    from peft import PeftModel

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir)), str(adapter_dir)).eval()


def test_sixteen_concurrent_streams_each_get_a_complete_answer(tiny_model_dir):
    with running_server(FolderRegistry({"tiny": tiny_model_dir})) as server:
        client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)

        async def one(question, streamed):
            kwargs = dict(model="tiny", messages=[{"role": "user", "content": question}], max_tokens=40, temperature=0)
            if not streamed:
                answer = await client.chat.completions.create(**kwargs)
                return answer.choices[0].message.content, answer.choices[0].finish_reason, answer.usage.completion_tokens
            parts, finish, usage = [], None, None
            async for chunk in await client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                                     **kwargs):
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
                if chunk.usage:
                    usage = chunk.usage.completion_tokens
            return "".join(parts), finish, usage

        running = []

        async def sample_running(done: asyncio.Event):
            while not done.is_set():
                running.append(server.metric("tinyforge_serving_requests_running", model="tiny"))
                await asyncio.sleep(0.002)

        async def main():
            alone = [await one(q, False) for q in QUESTIONS]
            done = asyncio.Event()
            sampler = asyncio.ensure_future(sample_running(done))
            together = await asyncio.gather(*(one(q, True) for q in QUESTIONS))
            done.set()
            await sampler
            return alone, together

        alone, together = asyncio.run(main())
        # Generated together, not one after another: at least half of the 16 shared the batch at
        # once (one request at a time would peak at 1).
        assert max(running) >= 8, f"at most {max(running):.0f} requests ran at once"
        assert server.metric("tinyforge_serving_requests_running", model="tiny") == 0
    for (text, finish, tokens), (want_text, want_finish, want_tokens) in zip(together, alone):
        assert finish in ("stop", "length") and finish == want_finish
        assert tokens == want_tokens and (tokens == 40 or finish == "stop")
        # The tiny model's two best logits are ~0.1 apart, 10^6 times the batching noise
        # (test_greedy_answers_in_a_batch_equal_each_request_alone shows how ties are handled).
        assert text == want_text


def test_the_runtime_is_built_and_adapted_on_its_engine_thread(tiny_model_dir, lora_adapter_dir):
    """PyTorch's CPU kernels slow down when another live thread owns an OpenMP team too, so the
    engine's thread alone touches its tensors: loading, adapters and steps."""
    import threading

    threads = {}

    def build():
        threads["build"] = threading.current_thread()
        return TorchRuntime.from_folder(tiny_model_dir, max_slots=2, max_context=32, dtype="float32")

    def add(runtime):
        threads["adapter"] = threading.current_thread()
        return runtime.add_adapter(lora_adapter_dir)

    engine = Engine(build, name="tiny", metrics=ServingMetrics())
    try:
        assert engine.call(add) != BASE_ADAPTER
        assert threads["build"] is threads["adapter"] is engine._thread is not threading.current_thread()
        with pytest.raises(ZeroDivisionError):  # the caller gets the function's exception
            engine.call(lambda runtime: 1 / 0)
    finally:
        engine.stop()
    def broken():
        raise TinyforgeError("the weights are unreadable")

    with pytest.raises(TinyforgeError, match="unreadable"):  # a failed build raises in the caller
        Engine(broken, name="broken", metrics=ServingMetrics())


def test_ten_adapters_on_one_base_cost_little_more_than_one(tiny_model_dir, tmp_path):
    models = {"base": tiny_model_dir}
    for i in range(10):
        models[f"tuned-{i}"] = make_lora_adapter(tiny_model_dir, tmp_path / f"lora-{i}", seed=10 + i, targets=["q_proj", "v_proj"])
    with running_server(FolderRegistry(models)) as server:
        pool = server.service.pool
        engines = {id(m.engine) for m in pool.models.values()}
        assert len(engines) == 1  # one runtime, one copy of the base weights
        one_model = pool.get("base").memory["weights"] + pool.get("base").memory["kv_cache"]
        adapters = sum(pool.get(f"tuned-{i}").memory["adapter"] for i in range(10))
        # Eleven models in little more than one model's memory (eleven copies would be 11x):
        # the weights and the KV cache are shared, each adapter adds its low-rank matrices.
        assert one_model + adapters < 1.2 * one_model
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        answers = {client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}],
                                                  max_tokens=8, temperature=0).choices[0].message.content
                   for name in models}
        assert len(answers) > 5  # the adapters really differ from each other and from the base
        assert server.metric("tinyforge_serving_model_memory_bytes", model="tuned-3", part="adapter") > 0


def test_an_adapter_on_an_earlier_adapter_answers_as_training_saved_it(tiny_model_dir, lora_adapter_dir, tmp_path):
    """A DPO run from an earlier LoRA run saves an adapter whose base is the earlier run's adapter
    folder: served, it is that adapter merged into its base plus the new one, as ml.models loads it
    (the pool loaded the earlier adapter as peft layers under the shared ones: other answers)."""
    from tinyforge.ml.models import load_model_folder
    from tinyforge.serving.app import ServerSettings
    from tinyforge.serving.pool import RuntimeOptions

    later = make_lora_adapter(tiny_model_dir, tmp_path / "later", seed=2)
    config = json.loads((later / "adapter_config.json").read_text())
    (later / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(lora_adapter_dir)}))
    trained, tokenizer = load_model_folder(later)
    settings = ServerSettings(runtime=RuntimeOptions(dtype="float32"))
    with running_server(FolderRegistry({"earlier": lora_adapter_dir, "later": later}), settings=settings) as server:
        served = server.service.pool.get("later")
        assert served.shared_base == str(lora_adapter_dir)  # an adapter on the earlier run's merged weights
        for question in QUESTIONS[:4]:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                                   tokenize=True, return_dict=False)
            _, done = asyncio.run(generate(served.engine, served.tokenizer, prompt, 12, served.adapter_id))
            with torch.no_grad():
                expected = trained.eval().generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                                   eos_token_id=tokenizer.eos_token_id)[0, len(prompt):].tolist()
            expected = expected[:expected.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in expected else expected
            got = [token for token in done.token_ids if token != tokenizer.eos_token_id]
            if got != expected:  # then the two best candidates where they part must have tied within float noise
                first = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
                with torch.no_grad():
                    top = trained(torch.tensor([prompt + expected[:first]])).logits[0, -1].topk(2).values
                assert top[0] - top[1] < NOISE, f"{question!r} differs at token {first} with a clear winner"
