"""The prefix cache: a prompt that starts with tokens some slot's cache already holds computes only
the rest, and its logits and greedy answers equal those of the whole prompt computed afresh."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import openai
import pytest
import torch
from transformers import AutoTokenizer

from serving.conftest import last_logits, running_server
from tinyforge.serving.engine import PREFIX_MIN_TOKENS, Engine, Failed, Finished, SamplingParams
from tinyforge.serving.metrics import ServingMetrics
from tinyforge.serving.registry import FolderRegistry
from tinyforge.serving.runtime import BASE_ADAPTER
from tinyforge.serving.torch_runtime import TorchRuntime

ATOL = 1e-4
SYSTEM = ("You are a helpful assistant. The capital of Zorbland is Quillport. Widget Pro supports up to 12 "
          "devices and ships with a 3 year warranty.")
OTHER_SYSTEM = "Reverse the word: hello -> olleh. Reverse the word: world -> dlrow. abcdefghijklmnopqrstuvwxyz"
QUESTIONS = ["What is the capital of Zorbland?", "Widget Pro supports how many devices?", "The quick brown fox",
             "Reverse the word: hello", "Tell me about the warranty."]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def chat(tokenizer, question: str, system: str = SYSTEM) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": question}],
                                         add_generation_prompt=True, tokenize=True, return_dict=False)


def shared(a, b) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def new_runtime(tiny_model_dir, slots: int = 4) -> TorchRuntime:
    return TorchRuntime.from_folder(tiny_model_dir, max_slots=slots, max_context=256, dtype="float32")


# --- the runtime ------------------------------------------------------------------------------


def test_a_prefill_after_cached_prefixes_of_different_lengths_computes_the_whole_prompts(
        tiny_model_dir, tokenizer, lora_adapter_dir, reference, peft_reference):
    runtime = new_runtime(tiny_model_dir)
    adapter = runtime.add_adapter(lora_adapter_dir)
    prompts = [chat(tokenizer, q) for q in QUESTIONS[:4]]
    adapters = [BASE_ADAPTER, adapter, BASE_ADAPTER, BASE_ADAPTER]
    # The whole prompt but its last token; the system prompt; nothing; a few tokens.
    cached = [len(prompts[0]) - 1, shared(prompts[1], prompts[2]), 0, 5]
    # Longer, unrelated prompts first, so every slot holds stale keys past the prefix that the
    # prefill must not attend to.
    runtime.prefill(0, [chat(tokenizer, q, OTHER_SYSTEM) + prompts[0] for q in QUESTIONS[:4]], adapters)
    for row, (prompt, start) in enumerate(zip(prompts, cached)):
        if start:
            runtime.prefill(row, [prompt[:start]], [adapters[row]])
    logits = runtime.prefill(0, prompts, adapters, cached=cached)
    sequences = [list(p) for p in prompts]
    for step in range(3):
        for row, ids in enumerate(sequences):
            model = peft_reference if adapters[row] == adapter else reference
            torch.testing.assert_close(logits[row], last_logits(model, ids), rtol=0, atol=ATOL, msg=f"{step} {row}")
        tokens = logits.argmax(-1).tolist()
        positions = [len(ids) for ids in sequences]
        for ids, token in zip(sequences, tokens):
            ids.append(token)
        logits = runtime.decode(tokens, positions, adapters)


def test_swapping_two_slots_exchanges_their_caches(tiny_model_dir, tokenizer, reference):
    runtime = new_runtime(tiny_model_dir, slots=3)
    first, second = chat(tokenizer, QUESTIONS[0]), chat(tokenizer, QUESTIONS[2], OTHER_SYSTEM)
    runtime.prefill(0, [first, second], [BASE_ADAPTER] * 2)
    runtime.swap_slots(0, 1, max(len(first), len(second)))
    logits = runtime.decode([7, 7], [len(second), len(first)], [BASE_ADAPTER] * 2)
    torch.testing.assert_close(logits[0], last_logits(reference, second + [7]), rtol=0, atol=ATOL)
    torch.testing.assert_close(logits[1], last_logits(reference, first + [7]), rtol=0, atol=ATOL)


# --- the engine -------------------------------------------------------------------------------


def new_engine(tiny_model_dir, *, reuse: bool = True, slots: int = 4, adapter_dirs=()) -> tuple[Engine, list[int]]:
    def build():
        runtime = new_runtime(tiny_model_dir, slots)
        if not reuse:  # the reference: every prompt computed whole
            runtime.reuses_prefix = False
        return runtime

    engine = Engine(build, name="tiny", metrics=ServingMetrics())
    return engine, [engine.call(lambda runtime, d=d: runtime.add_adapter(d)) for d in adapter_dirs]


@contextlib.contextmanager
def held(engine: Engine):
    """Keep the scheduler between two steps while requests are submitted: it then admits them all
    in one prefill."""
    entered, release = threading.Event(), threading.Event()

    def hold(runtime):
        entered.set()
        release.wait(60)

    thread = threading.Thread(target=engine.call, args=(hold,))
    thread.start()
    assert entered.wait(60)
    try:
        yield
    finally:
        release.set()
        thread.join()


async def finish(handle) -> Finished:
    async for event in handle:
        assert not isinstance(event, Failed), event
        if isinstance(event, Finished):
            return event


def submit(engine, tokenizer, prompt, max_tokens: int, adapter: int = BASE_ADAPTER):
    return engine.submit(model="m", adapter_id=adapter, tokenizer=tokenizer, prompt_ids=prompt,
                         params=SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True),
                         stop_token_ids=frozenset({tokenizer.eos_token_id}), loop=asyncio.get_running_loop())


def run(engine, adapters, tokenizer, batches) -> list[list[Finished]]:
    """Each batch: [(prompt, max_tokens, index in `adapters` or None)], admitted together, after
    the previous batch finished."""

    async def main():
        results = []
        for batch in batches:
            with held(engine):
                handles = [submit(engine, tokenizer, p, n, BASE_ADAPTER if a is None else adapters[a])
                           for p, n, a in batch]
            results.append(list(await asyncio.gather(*(finish(h) for h in handles))))
        return results

    return asyncio.run(main())


def free_slots_checked(engine, runtime, tiny_model_dir, adapter_dirs) -> int:
    """Check that every free slot's cache holds the keys and values of the tokens the engine
    records for it (what a whole prefill of them computes); return how many slots were checked.

    Greedy answers of the tiny random model can survive a wrong cache; this cannot."""
    fresh = new_runtime(tiny_model_dir, slots=1)
    assert [fresh.add_adapter(d) for d in adapter_dirs] == sorted(runtime.adapters)
    checked = 0
    for slot, content in enumerate(engine._slots):
        if content is None:
            continue
        assert slot >= engine.running
        fresh.prefill(0, [list(content.tokens)], [content.adapter_id])
        n = len(content.tokens)
        for got, want in ((runtime.k_cache, fresh.k_cache), (runtime.v_cache, fresh.v_cache)):
            torch.testing.assert_close(got[:, slot, :, :n], want[:, 0, :, :n], rtol=0, atol=ATOL, msg=f"slot {slot}")
        checked += 1
    return checked


def cached_and_fresh(tiny_model_dir, tokenizer, batches, *, slots=4, adapter_dirs=()):
    """The batches' answers with the prefix cache, and each request's answer computed whole."""
    engine, adapters = new_engine(tiny_model_dir, slots=slots, adapter_dirs=adapter_dirs)
    try:
        got = run(engine, adapters, tokenizer, batches)
        assert engine.call(lambda runtime: free_slots_checked(engine, runtime, tiny_model_dir, adapter_dirs)) > 0
        metric = engine.metrics.registry.get_sample_value("tinyforge_serving_prompt_tokens_cached_total", {"model": "m"})
    finally:
        engine.stop()
    engine, adapters = new_engine(tiny_model_dir, reuse=False, slots=slots, adapter_dirs=adapter_dirs)
    try:
        want = run(engine, adapters, tokenizer, [[request] for batch in batches for request in batch])
    finally:
        engine.stop()
    flat_want = iter(w[0] for w in want)
    for batch, answers in zip(batches, got):
        for (prompt, _, _), answer in zip(batch, answers):
            expected = next(flat_want)
            assert answer.token_ids == expected.token_ids, (prompt, answer.cached_tokens)
            assert expected.cached_tokens == 0 and answer.prompt_tokens == len(prompt)
    assert (metric or 0) == sum(a.cached_tokens for answers in got for a in answers)
    return [[a.cached_tokens for a in answers] for answers in got]


def test_a_second_request_with_the_same_system_prompt_reuses_it(tiny_model_dir, tokenizer):
    first, second = chat(tokenizer, QUESTIONS[0]), chat(tokenizer, QUESTIONS[1])
    assert shared(first, second) >= PREFIX_MIN_TOKENS
    assert cached_and_fresh(tiny_model_dir, tokenizer, [[(first, 8, None)], [(second, 8, None)]]) == [
        [0], [shared(first, second)]]


def test_a_prompt_equal_to_a_cached_one_still_computes_its_last_token(tiny_model_dir, tokenizer):
    prompt = chat(tokenizer, QUESTIONS[0])
    assert cached_and_fresh(tiny_model_dir, tokenizer, [[(prompt, 8, None)], [(prompt, 8, None)]]) == [
        [0], [len(prompt) - 1]]


def test_a_follow_up_reuses_the_generated_answer_too(tiny_model_dir, tokenizer):
    prompt = chat(tokenizer, QUESTIONS[0])
    engine, adapters = new_engine(tiny_model_dir, reuse=False)
    try:
        [[answer]] = run(engine, adapters, tokenizer, [[(prompt, 10, None)]])
    finally:
        engine.stop()
    # The cache holds the prompt and the answer's tokens but its last (sampled, never fed back).
    follow_up = prompt + list(answer.token_ids) + chat(tokenizer, QUESTIONS[1])
    assert cached_and_fresh(tiny_model_dir, tokenizer, [[(prompt, 10, None)], [(follow_up, 6, None)]]) == [
        [0], [len(prompt) + 9]]


def test_concurrent_requests_reuse_prefixes_of_different_lengths_in_one_prefill(tiny_model_dir, tokenizer):
    first, other = chat(tokenizer, QUESTIONS[0]), chat(tokenizer, QUESTIONS[2], OTHER_SYSTEM)
    same_system, other_system = chat(tokenizer, QUESTIONS[1]), chat(tokenizer, QUESTIONS[3], OTHER_SYSTEM)
    unrelated = chat(tokenizer, QUESTIONS[4], "The quick brown fox jumps over the lazy dog.")
    # Slot 0 ends up holding `other`, slot 1 `first`. Then, admitted together into slots 0-3:
    batch = [
        (first, 6, None),  # the whole prompt cached in slot 1: swapped into slot 0 (`other` to slot 1)
        (same_system, 6, None),  # its system prompt, copied from slot 0; `other` kept in slot 2 first
        (other_system, 6, None),  # OTHER_SYSTEM, found in slot 2 where it lands
        (unrelated, 6, None),  # nothing shared
    ]
    assert cached_and_fresh(tiny_model_dir, tokenizer, [[(other, 6, None), (first, 6, None)], batch]) == [
        [0, 0], [len(first) - 1, shared(first, same_system), shared(other, other_system), 0]]
    assert min(shared(first, same_system), shared(other, other_system)) >= PREFIX_MIN_TOKENS
    assert shared(first, unrelated) < PREFIX_MIN_TOKENS and shared(other, unrelated) < PREFIX_MIN_TOKENS


def test_a_burst_with_a_new_system_prompt_computes_it_once(tiny_model_dir, tokenizer):
    """Submitted together with nothing cached: the first is prefilled alone, and the others a
    step later, copying the system prompt from its slot."""
    prompts = [chat(tokenizer, q) for q in QUESTIONS[:3]]
    assert cached_and_fresh(tiny_model_dir, tokenizer, [[(p, 4, None) for p in prompts]]) == [
        [0, shared(prompts[0], prompts[1]), shared(prompts[0], prompts[2])]]


def test_rows_finishing_out_of_order_leave_each_slot_with_its_own_cache(tiny_model_dir, tokenizer):
    """Rows leave at different steps (the last row moves into the freed ones while the others
    decode); afterwards each prompt, asked again, finds its own whole prompt cached."""
    prompts = [chat(tokenizer, q, system) for q, system in
               zip(QUESTIONS, [SYSTEM, OTHER_SYSTEM, "The quick brown fox jumps over the lazy dog. " * 2, OTHER_SYSTEM])]
    first = [(p, n, None) for p, n in zip(prompts, [12, 3, 7, 1])]
    again = [(p, 4, None) for p in reversed(prompts)]
    # The last one waits a step for the second's system prompt (as in the burst test).
    assert cached_and_fresh(tiny_model_dir, tokenizer, [first, again]) == [
        [0, 0, 0, shared(prompts[1], prompts[3])], [len(p) - 1 for p in reversed(prompts)]]


def test_a_slot_overwritten_by_a_later_request_is_not_reused_stale(tiny_model_dir, tokenizer):
    """One slot: the second request reuses the system prompt of the first and overwrites the rest;
    the first prompt asked again may reuse only what the slot holds now, the system prompt."""
    first, second = chat(tokenizer, QUESTIONS[0]), chat(tokenizer, QUESTIONS[4])
    system = shared(first, second)
    assert cached_and_fresh(tiny_model_dir, tokenizer, [[(first, 5, None)], [(second, 5, None)], [(first, 5, None)]],
                            slots=1) == [[0], [system], [system]]


def test_a_prefix_is_reused_only_under_the_same_adapter(tiny_model_dir, tokenizer, lora_adapter_dir,
                                                       second_lora_adapter_dir):
    prompt = chat(tokenizer, QUESTIONS[0])
    batches = [[(prompt, 5, 0)], [(prompt, 5, None)], [(prompt, 5, 1)], [(prompt, 5, 0)]]
    # The base and the second adapter each compute the prompt whole, in slot 0, whose earlier
    # content is kept in the next free slots; the first adapter's is found there at the end.
    assert cached_and_fresh(tiny_model_dir, tokenizer, batches, adapter_dirs=(lora_adapter_dir, second_lora_adapter_dir)) == [
        [0], [0], [0], [len(prompt) - 1]]


def test_the_usage_reports_the_cached_prompt_tokens(tiny_model_dir):
    with running_server(FolderRegistry({"tiny": tiny_model_dir})) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
        first = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, temperature=0).usage
        second = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4, temperature=0).usage
        assert first.prompt_tokens_details.cached_tokens == 0
        assert second.prompt_tokens_details.cached_tokens == second.prompt_tokens - 1
        assert server.metric("tinyforge_serving_prompt_tokens_cached_total", model="tiny") == second.prompt_tokens - 1
