"""Continuous batching: one scheduler thread per runtime, requests joining and leaving between steps.

The thread loops: admit waiting requests into free cache slots (one batched prefill), then run
one decode step for every running request, sample each row with that request's own settings,
turn new tokens into text, and hand the text to the request's asyncio queue. A request leaves
the batch when it stops, runs out of tokens, times out, or its client goes away; the last row
takes its slot so the running rows stay packed in slots 0..B-1.

Prefix cache: a slot a request leaves keeps its KV cache (the finished row is swapped with the
last running one rather than overwritten by it), and the engine remembers which tokens that
cache holds and under which adapter. An admitted prompt that starts with at least
PREFIX_MIN_TOKENS of the tokens some slot holds (a free one, or a running one's) under the same
adapter gets that prefix brought into its slot and prefills only the rest, at least its last
token, whose logits are needed. A judge's rubric or a chat app's system prompt is then computed
once, not once per request; the reused tokens count in prompt_tokens_cached and in the usage.

The waiting queue is bounded: past `max_waiting`, submit() raises QueueFull and the API answers
429 with Retry-After, so a burst costs a fixed amount of memory instead of growing without end.

Every piece of tensor work of a runtime happens on its scheduler thread: building it (loading
the weights), adding and removing adapters (`call`), and the steps. PyTorch's CPU kernels run on
an OpenMP thread team owned by the thread that calls them, and GNU OpenMP stops its workers from
spin-waiting between kernels as soon as the teams of all threads together outnumber the cores. A
model loaded on another thread that stays alive (the registry's) left a second team behind and
made every decode step about 40% slower (28 ms -> 40 ms per SmolLM2 token on 2 cores).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from tinyforge.serving import structured
from tinyforge.serving.runtime import Runtime

log = logging.getLogger(__name__)

# Prompt tokens prefilled together at most in one step, so a burst of long prompts does not
# stall the running requests for seconds.
PREFILL_TOKEN_BUDGET = 2048
# A shared prefix shorter than this is computed again: every chat prompt shares a few tokens of
# its template, and bringing a slot's cache over for them would cost more than computing them.
PREFIX_MIN_TOKENS = 16


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # generate max_tokens whatever the model says (benchmarks)
    # The llguidance grammar of a JSON Schema the answer must follow (structured.grammar), or None.
    grammar: str | None = None
    json_schema: str | None = None  # that schema as JSON text, for runtimes that take the schema itself


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" (end token or stop string) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int
    token_ids: tuple[int, ...] = ()  # what was generated, the end token excluded
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache (included in prompt_tokens)


@dataclass(frozen=True)
class Failed:
    code: str  # "timeout", "model_unloaded", "engine_error", "engine_unavailable" (llama-server restarting)
    message: str


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class Generation:
    """The caller's handle on a submitted request: iterate it for events, cancel() to stop it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        self.done = False

    def cancel(self) -> None:
        """Stop generating (the client went away); the engine frees the slot at its next step."""
        self.cancelled = True

    def _emit(self, event) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)

    async def __aiter__(self):
        while True:
            event = await self.events.get()
            yield event
            if isinstance(event, (Finished, Failed)):
                self.done = True
                return


@dataclass(frozen=True)
class _SlotContent:
    """What a slot's KV cache holds: positions 0..len(tokens)-1 are the KV of `tokens` under the
    adapter; anything after them is garbage."""

    adapter_id: int
    tokens: tuple[int, ...]
    left_at: int = 0  # when its request left the batch (a count of rows that left): older goes first


@dataclass(eq=False)
class _Sequence:
    handle: Generation
    model: str
    adapter_id: int
    tokenizer: object
    prompt_ids: list[int]
    params: SamplingParams
    stop_token_ids: frozenset[int]
    deadline: float
    submitted_at: float = field(default_factory=time.monotonic)
    generator: torch.Generator | None = None
    constraint: structured.Constraint | None = None
    output_ids: list[int] = field(default_factory=list)
    position: int = 0  # cached positions of this sequence's slot
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache, not computed
    next_token: int = 0  # sampled, not yet fed to the model
    text: str = ""
    sent: int = 0  # characters of text already handed to the client
    prefix_offset: int = 0
    read_offset: int = 0


class Engine:
    """Batches the requests of every deployment that runs on one runtime (a base and its adapters)."""

    def __init__(self, build: Callable[[], Runtime], *, name: str, metrics, max_waiting: int = 64,
                 request_timeout: float = 300.0):
        """Start the scheduler thread, which first builds the runtime with `build()`; returns once
        it is built, or raises what `build` raised (the thread is gone then)."""
        self.runtime: Runtime | None = None
        self.name = name
        self.metrics = metrics
        self.max_waiting = max_waiting
        self.request_timeout = request_timeout
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._active: list[_Sequence] = []
        self._control: list = []  # callables run by the scheduler thread between steps
        self._cond = threading.Condition()
        self._stopping = False
        self._recent_seconds = collections.deque(maxlen=32)
        # What each free slot's cache holds (None: nothing known); None for the running rows,
        # whose content their _Sequence tells. Only the scheduler thread reads or writes it.
        self._slots: list[_SlotContent | None] = []
        self._rows_left = 0
        built: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(build, built), name=f"engine:{name}", daemon=True)
        self._thread.start()
        built.result()

    # --- called from the event loop ---------------------------------------------------------

    def submit(self, *, model: str, adapter_id: int, tokenizer, prompt_ids: list[int],
               params: SamplingParams, stop_token_ids: frozenset[int],
               loop: asyncio.AbstractEventLoop) -> Generation:
        handle = Generation(loop)
        sequence = _Sequence(
            handle=handle, model=model, adapter_id=adapter_id, tokenizer=tokenizer,
            prompt_ids=prompt_ids, params=params, stop_token_ids=stop_token_ids,
            deadline=time.monotonic() + self.request_timeout,
        )
        seed = params.seed if params.seed is not None else random.getrandbits(63)
        if params.temperature > 0:
            sequence.generator = torch.Generator().manual_seed(seed)
        if params.grammar is not None:
            sequence.constraint = structured.Constraint(tokenizer, stop_token_ids, params.grammar)
        with self._cond:
            if self._stopping:
                raise QueueFull(self.retry_after())
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(self.retry_after())
            self._waiting.append(sequence)
            self.metrics.waiting.labels(model).inc()
            self._cond.notify()
        return handle

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the recent request time, scaled by the backlog."""
        typical = sum(self._recent_seconds) / len(self._recent_seconds) if self._recent_seconds else 1.0
        backlog = 1 + len(self._waiting) / max(1, self.runtime.info.max_slots)
        return max(1, min(60, math.ceil(typical * backlog)))

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def remove_model(self, model: str, message: str, then=None) -> None:
        """Fail the model's requests (waiting and running) at the next step boundary, then call
        `then` on the scheduler thread (to free the adapter once nothing uses it)."""

        def remove():
            with self._cond:
                dropped = [s for s in self._waiting if s.model == model]
                for sequence in dropped:
                    self._waiting.remove(sequence)
                    self.metrics.waiting.labels(model).dec()
                    sequence.handle._emit(Failed("model_unloaded", message))
            self._finish_rows([i for i, s in enumerate(self._active) if s.model == model],
                              Failed("model_unloaded", message))
            if then is not None:
                then()
            # The free slots may hold the KV of the adapter just removed.
            self._forget_free_slots()

        self._call_between_steps(remove)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def call(self, function: Callable[[Runtime], object], timeout: float = 600.0):
        """Run `function(runtime)` on the scheduler thread between two steps (adding an adapter,
        for instance) and return its result or raise its exception. It must not write the KV
        cache: the prefix cache would take what it left for a finished request's."""
        result: concurrent.futures.Future = concurrent.futures.Future()

        def action():
            try:
                result.set_result(function(self.runtime))
            except BaseException as exc:  # handed to the caller, who decides
                result.set_exception(exc)

        self._call_between_steps(action)
        return result.result(timeout=timeout)

    def _call_between_steps(self, action) -> None:
        with self._cond:
            self._control.append(action)
            self._cond.notify()

    # --- the scheduler thread ---------------------------------------------------------------

    def _run(self, build: Callable[[], Runtime], built: concurrent.futures.Future) -> None:
        try:
            self.runtime = build()
        except BaseException as exc:
            built.set_exception(exc)
            return
        self._slots = [None] * self.runtime.info.max_slots
        built.set_result(None)
        while True:
            with self._cond:
                while not (self._stopping or self._waiting or self._active or self._control):
                    self._cond.wait()
                if self._stopping:
                    break
                control, self._control = self._control, []
            for action in control:
                action()
            admitted = self._admit()
            try:
                if admitted:
                    self._prefill(admitted)
                self._drop_cancelled_and_late()
                if self._active:
                    self._decode()
            except Exception as exc:  # a bug or an out-of-memory: fail what ran, keep serving
                log.exception("engine %s: step failed", self.name)
                self._finish_rows(list(range(len(self._active))),
                                  Failed("engine_error", f"generation failed: {type(exc).__name__}: {exc}"))
                # A step that failed half-way leaves caches half-written.
                self._forget_free_slots()
        self._finish_rows(list(range(len(self._active))), Failed("model_unloaded", "the server is shutting down"))
        with self._cond:
            for sequence in self._waiting:
                self.metrics.waiting.labels(sequence.model).dec()
                sequence.handle._emit(Failed("model_unloaded", "the server is shutting down"))
            self._waiting.clear()

    def _admit(self) -> list[_Sequence]:
        admitted: list[_Sequence] = []
        free = self.runtime.info.max_slots - len(self._active)
        budget = PREFILL_TOKEN_BUDGET
        now = time.monotonic()
        with self._cond:
            while self._waiting and len(admitted) < free:
                sequence = self._waiting[0]
                if sequence.handle.cancelled or now > sequence.deadline:
                    self._waiting.popleft()
                    self.metrics.waiting.labels(sequence.model).dec()
                    if not sequence.handle.cancelled:
                        self._time_out(sequence)
                    continue
                # What is cached now is a good guess of what this prompt will not compute.
                reused = self._best_prefix(sequence, range(len(self._slots)))[1]
                cost = len(sequence.prompt_ids) - reused
                if admitted and cost > budget:
                    break
                if admitted and self._shares_more_with(admitted, sequence, reused):
                    break  # next step, after the prefix that one of these computes now
                self._waiting.popleft()
                self.metrics.waiting.labels(sequence.model).dec()
                budget -= cost
                admitted.append(sequence)
        return admitted

    def _prefill(self, admitted: list[_Sequence]) -> None:
        first_slot = len(self._active)
        for sequence in admitted:
            self.metrics.running.labels(sequence.model).inc()
            self._active.append(sequence)
        cached = self._bring_prefixes(first_slot, admitted)
        prompts, adapters = [s.prompt_ids for s in admitted], [s.adapter_id for s in admitted]
        if any(cached):
            logits = self.runtime.prefill(first_slot, prompts, adapters, cached=cached)
        else:
            logits = self.runtime.prefill(first_slot, prompts, adapters)
        now = time.monotonic()
        for sequence, reused in zip(admitted, cached):
            sequence.position = len(sequence.prompt_ids)
            sequence.cached_tokens = reused
            self.metrics.ttft.labels(sequence.model).observe(now - sequence.submitted_at)
            self.metrics.prompt_tokens.labels(sequence.model).inc(len(sequence.prompt_ids))
            if reused:
                self.metrics.prompt_tokens_cached.labels(sequence.model).inc(reused)
        self._after_sampling(first_slot, self._sample(logits, admitted))

    # --- the prefix cache -------------------------------------------------------------------

    def _content(self, slot: int) -> _SlotContent | None:
        """What slot `slot` holds: a running row's tokens so far, or a free slot's record."""
        if slot < len(self._active) and self._slots[slot] is None:
            sequence = self._active[slot]
            if sequence.position == 0:  # admitted this step, not prefilled yet
                return None
            return _SlotContent(sequence.adapter_id, tuple((sequence.prompt_ids + sequence.output_ids)[:sequence.position]))
        return self._slots[slot]

    def _best_prefix(self, sequence: _Sequence, slots) -> tuple[int | None, int]:
        """(slot, length) of the longest cached prefix of the sequence's prompt among `slots`
        ((None, 0) when none reaches PREFIX_MIN_TOKENS). At least the last prompt token is left to
        compute: its logits give the first answer token."""
        if not self.runtime.reuses_prefix:
            return None, 0
        prompt, limit = sequence.prompt_ids, len(sequence.prompt_ids) - 1
        best_slot, best = None, PREFIX_MIN_TOKENS - 1
        for slot in slots:
            content = self._content(slot)
            if content is None or content.adapter_id != sequence.adapter_id:
                continue
            length = _shared_prefix(content.tokens, prompt, limit)
            if length > best:
                best_slot, best = slot, length
        return (best_slot, best) if best_slot is not None else (None, 0)

    def _shares_more_with(self, admitted: list[_Sequence], sequence: _Sequence, reused: int) -> bool:
        """Whether `sequence` shares a longer prefix with one of `admitted` than the cache gives it
        now (by PREFIX_MIN_TOKENS at least): admitted next step, it copies that prefix from the
        running row. A burst of requests with one new system prompt computes it once, not once
        per request."""
        if not self.runtime.reuses_prefix:
            return False
        limit = len(sequence.prompt_ids) - 1
        return any(other.adapter_id == sequence.adapter_id and
                   _shared_prefix(other.prompt_ids, sequence.prompt_ids, limit) >= reused + PREFIX_MIN_TOKENS
                   for other in admitted)

    def _bring_prefixes(self, first_slot: int, admitted: list[_Sequence]) -> list[int]:
        """Bring each admitted sequence's longest cached prefix into its slot (first_slot + i);
        return the prefix lengths.

        Sources are the running rows (copied from) and the free slots. A free slot after the
        target is swapped with it, so what the target held moves on to that slot instead of being
        lost; a target of an earlier admitted sequence (it holds what was swapped into it until
        the prefill) is copied from, as is a running row. What a target holds and does not reuse
        is copied to a later slot holding nothing or something older (_keep), so the free slots
        keep the most recent prompts, not only the one in the first free slot."""
        if not self.runtime.reuses_prefix:
            return [0] * len(admitted)
        # Running rows are read through their sequences; the admitted ones (position 0 until the
        # prefill) through self._slots, which tells what their slots hold until then.
        cached = []
        for i, sequence in enumerate(admitted):
            target = first_slot + i
            source, length = self._best_prefix(sequence, range(len(self._slots)))
            here = self._slots[target]
            if source is not None and here is not None and here.adapter_id == sequence.adapter_id and \
                    _shared_prefix(here.tokens, sequence.prompt_ids, length) == length:
                source = target  # as good, and nothing to move
            if source is not None and source > target:
                moved = self._slots[source]
                self.runtime.swap_slots(source, target, max(len(moved.tokens), len(here.tokens) if here else 0))
                self._slots[source], self._slots[target] = here, moved
            elif source != target:
                if here is not None:
                    self._keep(target)
                if source is not None:
                    content = self._content(source)
                    self.runtime.move_slot(source, target, length)
                    self._slots[target] = _SlotContent(content.adapter_id, content.tokens[:length])
            cached.append(length)
        # The prefill writes the admitted slots, which are running rows from now on.
        for i in range(len(admitted)):
            self._slots[first_slot + i] = None
        return cached

    def _keep(self, slot: int) -> None:
        """Copy what `slot` holds to the later slot holding nothing or the oldest content, unless
        everything there is more recent."""
        later = range(slot + 1, len(self._slots))
        victim = min(later, key=lambda s: -1 if self._slots[s] is None else self._slots[s].left_at, default=None)
        content = self._slots[slot]
        if victim is None or (self._slots[victim] is not None and self._slots[victim].left_at >= content.left_at):
            return
        self.runtime.move_slot(slot, victim, len(content.tokens))
        self._slots[victim] = content

    def _forget_free_slots(self) -> None:
        self._slots = [None] * len(self._slots)

    def _decode(self) -> None:
        rows = self._active
        logits = self.runtime.decode([s.next_token for s in rows], [s.position for s in rows],
                                     [s.adapter_id for s in rows])
        for sequence in rows:
            sequence.position += 1
        self._after_sampling(0, self._sample(logits, rows))

    def _after_sampling(self, first_row: int, tokens: list[int]) -> None:
        finished: list[tuple[int, Finished]] = []
        for offset, token in enumerate(tokens):
            row = first_row + offset
            reason = self._append(self._active[row], token)
            if reason:
                sequence = self._active[row]
                finished.append((row, Finished(reason, len(sequence.prompt_ids), len(sequence.output_ids),
                                                tuple(sequence.output_ids), sequence.cached_tokens)))
        for row, event in reversed(finished):
            self._finish_rows([row], event)

    def _drop_cancelled_and_late(self) -> None:
        now = time.monotonic()
        gone = [i for i, s in enumerate(self._active) if s.handle.cancelled]
        if gone:
            self._finish_rows(gone, None)
        late = [i for i, s in enumerate(self._active) if now > s.deadline]
        for row in reversed(late):
            self._time_out(self._active[row])
            self._finish_rows([row], None)

    def _time_out(self, sequence: _Sequence) -> None:
        self.metrics.rejected.labels(sequence.model, "timeout").inc()
        sequence.handle._emit(Failed("timeout", f"the request did not finish within {self.request_timeout:g} s"))

    def _finish_rows(self, rows: list[int], event) -> None:
        """Take rows out of the batch (highest first, so moving the last row keeps indices valid).

        With the prefix cache, the leaving row's cache stays: it is swapped with the last row's
        and recorded as the last slot's content once that slot is free."""
        reuses = self.runtime.reuses_prefix
        for row in sorted(rows, reverse=True):
            sequence = self._active[row]
            last = len(self._active) - 1
            left = self._content(row) if reuses else None
            if row != last:
                mover = self._active[last]
                if left is not None and len(left.tokens) >= PREFIX_MIN_TOKENS:
                    self.runtime.swap_slots(last, row, max(sequence.position, mover.position))
                else:  # nothing worth keeping: the last slot keeps a copy of the mover's tokens
                    self.runtime.move_slot(last, row, mover.position)
                    left = self._content(last) if reuses else None
                self._active[row] = mover
            self._rows_left += 1
            self._slots[last] = replace(left, left_at=self._rows_left) if left is not None else None
            self._active.pop()
            self.metrics.running.labels(sequence.model).dec()
            self.metrics.completion_tokens.labels(sequence.model).inc(len(sequence.output_ids))
            if event is not None:
                if isinstance(event, Finished):
                    self._flush(sequence)
                    self._recent_seconds.append(time.monotonic() - sequence.submitted_at)
                sequence.handle._emit(event)

    # --- sampling and text ------------------------------------------------------------------

    def _sample(self, logits: torch.Tensor, sequences: list[_Sequence]) -> list[int]:
        constrained = [(i, s.constraint) for i, s in enumerate(sequences) if s.constraint is not None]
        if constrained:
            logits = structured.mask(logits, constrained)
        tokens = logits.argmax(dim=-1).tolist()
        sampled = [i for i, s in enumerate(sequences) if s.params.temperature > 0]
        if not sampled:
            return tokens
        temperatures = torch.tensor([sequences[i].params.temperature for i in sampled])
        probs = (logits[sampled] / temperatures[:, None]).softmax(dim=-1)
        nucleus = [j for j, i in enumerate(sampled) if sequences[i].params.top_p < 1.0]
        if nucleus:
            top_p = torch.tensor([sequences[sampled[j]].params.top_p for j in nucleus])
            part = probs[nucleus]
            sorted_probs, order = part.sort(dim=-1, descending=True)
            # Keep the smallest set of tokens whose mass reaches top_p (always the first one).
            outside = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p[:, None]
            sorted_probs[outside] = 0.0
            probs[nucleus] = torch.zeros_like(part).scatter_(-1, order, sorted_probs)
        for j, i in enumerate(sampled):
            # argmax(p / E) with E ~ Exp(1) draws from p; each request has its own generator, so
            # a seed gives the same answer whatever else shares the batch.
            noise = torch.empty_like(probs[j]).exponential_(generator=sequences[i].generator)
            tokens[i] = int((probs[j] / noise).argmax())
        return tokens

    def _append(self, sequence: _Sequence, token: int) -> str | None:
        """Record a sampled token; return the finish reason when the sequence is done."""
        if token in sequence.stop_token_ids and not sequence.params.ignore_eos:
            return "stop"
        sequence.output_ids.append(token)
        sequence.next_token = token
        self._detokenize(sequence)
        params = sequence.params
        if params.stop and self._cut_at_stop(sequence):
            return "stop"
        if sequence.constraint is not None and sequence.constraint.consume(token):
            return "stop"  # the document is complete: only an end token could follow
        if len(sequence.output_ids) >= params.max_tokens:
            return "length"
        visible = len(sequence.text) - _held_back(sequence.text, params.stop)
        if visible > sequence.sent:
            sequence.handle._emit(TextDelta(sequence.text[sequence.sent:visible]))
            sequence.sent = visible
        return None

    def _detokenize(self, sequence: _Sequence) -> None:
        """Incremental decoding (as in TGI and vLLM): decode a short window of recent tokens and
        wait while the last ones form an incomplete UTF-8 character."""
        ids, tokenizer = sequence.output_ids, sequence.tokenizer
        before = tokenizer.decode(ids[sequence.prefix_offset:sequence.read_offset], skip_special_tokens=True)
        after = tokenizer.decode(ids[sequence.prefix_offset:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            sequence.text += after[len(before):]
            sequence.prefix_offset = sequence.read_offset
            sequence.read_offset = len(ids)

    def _cut_at_stop(self, sequence: _Sequence) -> bool:
        longest = max(len(s) for s in sequence.params.stop)
        start = max(0, sequence.sent - longest)
        hits = [i for i in (sequence.text.find(s, start) for s in sequence.params.stop) if i >= 0]
        if not hits:
            return False
        sequence.text = sequence.text[:min(hits)]
        return True

    def _flush(self, sequence: _Sequence) -> None:
        if len(sequence.text) > sequence.sent:
            sequence.handle._emit(TextDelta(sequence.text[sequence.sent:]))
            sequence.sent = len(sequence.text)


def _shared_prefix(cached: tuple[int, ...], prompt: list[int], limit: int) -> int:
    """How many first tokens of `prompt` (at most `limit`) equal those of `cached`."""
    limit = min(limit, len(cached))
    count = 0
    while count < limit and cached[count] == prompt[count]:
        count += 1
    return count


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of `text` that could be the start of a stop string: not sent yet."""
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:size]):
                held = size
                break
    return held
