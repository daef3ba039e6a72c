"""Time to first token with and without the serving engine's prefix cache.

SmolLM2-135M-Instruct on the PyTorch runtime, one request at a time, in pairs: a "cold" request
whose system prompt of about --prefix tokens starts with a number never sent before (nothing to
reuse: the whole prompt is computed) and a "warm" one with the shared system prompt (after the
first pair, found in the cache the earlier warm request left). Pairs of requests on one engine
see the same load, which matters on a shared machine. Prints the median time from submit to the
first token (max_tokens=1) of each kind and the prompt tokens reused.

    .venv/bin/python bench/prefix_cache.py
    .venv/bin/python bench/prefix_cache.py --prefix 300 --pairs 8 --dtype float32
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

QUESTIONS = ["What is the capital of France?", "Name three primary colours.", "What is 12 times 7?",
             "Translate 'good morning' into Spanish.", "Who wrote Romeo and Juliet?", "What is photosynthesis?",
             "Give a synonym of 'happy'.", "How many days are in a leap year?"]
RUBRIC = ("You grade answers for a quiz. A correct answer names the right fact plainly; a partly correct one gives "
          "part of it or hedges; a wrong one names another fact. Ignore spelling mistakes and style. ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", type=int, default=300, help="system prompt tokens, about")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tinyforge.ml.models import resolve_base_model
    from tinyforge.serving.engine import Engine, Finished, SamplingParams
    from tinyforge.serving.metrics import ServingMetrics
    from tinyforge.serving.runtime import BASE_ADAPTER
    from tinyforge.serving.torch_runtime import TorchRuntime

    base = resolve_base_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    system = RUBRIC
    while len(tokenizer(system)["input_ids"]) < args.prefix:
        system += RUBRIC

    def prompt(system_prompt: str, question: str) -> list[int]:
        return tokenizer.apply_chat_template([{"role": "system", "content": system_prompt},
                                              {"role": "user", "content": question}],
                                             add_generation_prompt=True, tokenize=True, return_dict=False)

    engine = Engine(lambda: TorchRuntime.from_folder(base, max_slots=8, max_context=1024, dtype=args.dtype),
                    name="bench", metrics=ServingMetrics())

    async def one(ids) -> tuple[float, int]:
        started = time.perf_counter()
        handle = engine.submit(model="m", adapter_id=BASE_ADAPTER, tokenizer=tokenizer, prompt_ids=ids,
                               params=SamplingParams(max_tokens=1, temperature=0.0),
                               stop_token_ids=frozenset(), loop=asyncio.get_running_loop())
        async for event in handle:
            if isinstance(event, Finished):
                return time.perf_counter() - started, event.cached_tokens
        raise RuntimeError("the request failed")

    async def go():
        await one(prompt(system, "Warm-up."))  # kernels' first use; it leaves the shared prompt cached
        pairs = []
        for i in range(args.pairs):
            question = QUESTIONS[i % len(QUESTIONS)]
            pairs.append((await one(prompt(f"{1000 + i}. {system}", question)), await one(prompt(system, question))))
        return pairs

    try:
        pairs = asyncio.run(go())
    finally:
        engine.stop()
    length = len(prompt(system, QUESTIONS[0]))
    for name, index in (("cold (computed whole)", 0), ("warm (prefix reused)", 1)):
        seconds = [pair[index][0] for pair in pairs]
        reused = sorted({pair[index][1] for pair in pairs})
        print(f"{name:22s} median {statistics.median(seconds) * 1000:7.1f} ms  (min {min(seconds) * 1000:.1f}, "
              f"max {max(seconds) * 1000:.1f}); prompt tokens reused {reused} of about {length}", flush=True)
    print(f"dtype {args.dtype}, {args.pairs} pairs", flush=True)


if __name__ == "__main__":
    main()
