"""Time to first token with and without the serving engine's prefix cache.

SmolLM2-135M-Instruct on the PyTorch runtime, one request at a time: a chat prompt whose system
prompt is about --prefix tokens (the same for every request) and whose question differs. The first
request computes the whole prompt; the next ones find the system prompt in the cache the previous
one left and compute only the question. The same requests on a runtime without reuse give the
baseline. Prints the median time from submit to the first token (max_tokens=1) of each.

    .venv/bin/python bench/prefix_cache.py
    .venv/bin/python bench/prefix_cache.py --prefix 300 --requests 8 --dtype float32
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
    parser.add_argument("--requests", type=int, default=8)
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
    prompts = [tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": q}],
                                             add_generation_prompt=True, tokenize=True, return_dict=False)
               for q in (QUESTIONS * args.requests)[: args.requests]]

    def measure(reuse: bool) -> list[tuple[float, int]]:
        def build():
            runtime = TorchRuntime.from_folder(base, max_slots=8, max_context=1024, dtype=args.dtype)
            runtime.reuses_prefix = reuse
            return runtime

        engine = Engine(build, name="bench", metrics=ServingMetrics())

        async def one(prompt):
            started = time.perf_counter()
            handle = engine.submit(model="m", adapter_id=BASE_ADAPTER, tokenizer=tokenizer, prompt_ids=prompt,
                                   params=SamplingParams(max_tokens=1, temperature=0.0),
                                   stop_token_ids=frozenset(), loop=asyncio.get_running_loop())
            async for event in handle:
                if isinstance(event, Finished):
                    return time.perf_counter() - started, event.cached_tokens
            raise RuntimeError("the request failed")

        async def go():
            return [await one(p) for p in prompts]

        try:
            return asyncio.run(go())
        finally:
            engine.stop()

    print(f"prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, the first "
          f"{len(tokenizer.apply_chat_template([{'role': 'system', 'content': system}], tokenize=True, return_dict=False))} "
          f"the same; dtype {args.dtype}", flush=True)
    for reuse in (False, True):
        timings = measure(reuse)
        first, rest = timings[0], timings[1:]
        print(f"prefix cache {'on ' if reuse else 'off'}: first request {first[0] * 1000:7.1f} ms; later ones median "
              f"{statistics.median(t for t, _ in rest) * 1000:7.1f} ms, {min(c for _, c in rest)}-"
              f"{max(c for _, c in rest)} prompt tokens reused", flush=True)


if __name__ == "__main__":
    main()
