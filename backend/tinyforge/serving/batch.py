"""Answering many conversations in this process through the engine: evaluations and benchmarks.

The folders are loaded into a ModelPool exactly as `tinyforge serve` loads them (LoRA adapters on a
shared base), and every conversation is submitted to the engines at once, so they are generated in
continuous batches instead of one `generate` call after another. Submissions are held to the pool's
waiting-queue size, so a 10,000-row evaluation never meets the engine's 429 and never queues more
than that in memory.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tinyforge.errors import TinyforgeError

if TYPE_CHECKING:
    from tinyforge.serving.pool import RuntimeOptions


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None  # why there is no answer (the prompt is too long, the engine failed)


def chat_prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation with the generation prompt: the same rendering and tokenization
    as training (tinyforge.ml.formatting), so a model sees the ids it was fine-tuned on."""
    from tinyforge.ml.formatting import render

    return tokenizer(render(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"]


class LocalModels:
    """Model folders (name -> folder) loaded in this process; `answer` generates through their engines.

    Use it as a context manager, or call close(): the engines own threads and memory.
    """

    def __init__(self, models: dict[str, Path], options: RuntimeOptions | None = None):
        # The engine (PyTorch, llguidance) is imported here, not with the module: Answer is what the
        # evaluation's judges and endpoints import from this one, in every Django process.
        from tinyforge.serving.metrics import ServingMetrics
        from tinyforge.serving.pool import ModelPool, RuntimeOptions
        from tinyforge.serving.registry import FolderRegistry

        self.options = options = options or RuntimeOptions()
        self.pool = ModelPool(FolderRegistry(models), options, ServingMetrics())
        try:
            self.pool.sync(self.pool.registry.list_models())
            failed = [m.error for m in self.pool.models.values() if m.state != "ready"]
            if failed:
                raise TinyforgeError("; ".join(failed))
            for name, served in self.pool.models.items():
                if not served.tokenizer.chat_template:
                    raise TinyforgeError(f"model {name!r} ({served.spec.path}) has no chat template")
        except BaseException:
            self.pool.close()
            raise
        self._slots: asyncio.Semaphore | None = None

    def __enter__(self) -> LocalModels:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    async def answer(self, name: str, messages: list[dict[str, str]], *, max_tokens: int) -> Answer:
        """Greedy answer of model `name`, submitted to its engine as soon as the waiting queue has room."""
        from tinyforge.serving.engine import Failed, Finished, QueueFull, SamplingParams, TextDelta

        if self._slots is None:
            self._slots = asyncio.Semaphore(self.options.max_waiting)
        served = self.pool.get(name)
        if served is None or served.engine is None:
            raise TinyforgeError(f"model {name!r} is not loaded here")
        started = time.monotonic()
        prompt_ids = chat_prompt_ids(served.tokenizer, messages)
        context = served.engine.runtime.info.max_context
        if len(prompt_ids) >= context:
            return Answer("", len(prompt_ids), error=f"the prompt is {len(prompt_ids)} tokens; the model's context "
                                                      f"is {context}")
        params = SamplingParams(max_tokens=min(max_tokens, context - len(prompt_ids)), temperature=0.0)
        async with self._slots:
            while True:
                try:
                    generation = served.engine.submit(
                        model=name, adapter_id=served.adapter_id, tokenizer=served.tokenizer, prompt_ids=prompt_ids,
                        params=params, stop_token_ids=served.stop_token_ids, loop=asyncio.get_running_loop())
                    break
                except QueueFull as exc:  # only when something else shares the engine; wait as a client would
                    await asyncio.sleep(exc.retry_after)
            parts: list[str] = []
            async for event in generation:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    return Answer("".join(parts).strip(), event.prompt_tokens, event.completion_tokens,
                                  time.monotonic() - started)
                elif isinstance(event, Failed):
                    return Answer("".join(parts).strip(), len(prompt_ids), error=f"{event.code}: {event.message}",
                                  latency_s=time.monotonic() - started)
        raise AssertionError("the engine ended a generation without Finished or Failed")
