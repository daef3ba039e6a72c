"""Running an evaluation: targets answer the rows, scorers and the judge grade the answers, and
the aggregates get bootstrap intervals.

Rows go through in chunks: every (row, target) of a chunk is submitted at once (local targets to
their engines' continuous batches, remote ones through the endpoint's pool), then the chunk is
scored and judged and handed to `on_chunk`, which the platform uses to write results as they come.
Memory stays bounded by the chunk size, whatever the size of the set, and a failure keeps the
chunks already handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.endpoints import ChatEndpoint, Endpoint
from tinyforge.evaluation.judges import Judge, JudgeConfig, PairwiseVerdict, PointwiseVerdict
from tinyforge.evaluation.scorers import Scorer, bootstrap
from tinyforge.evaluation.sets import EvalRow
from tinyforge.serving.batch import Answer

JUDGE_KEY = "judge"  # the pointwise judge's score (1-5) among a row's scores
WIN_KEY = "win_rate"  # a target's pairwise result against the first target: win 1, tie 0.5, loss 0
WIN_VALUES = {"b": 1.0, "tie": 0.5, "a": 0.0}


@dataclass(frozen=True)
class Target:
    """What answers: a model folder loaded in this process, or a model behind an OpenAI-compatible API."""

    name: str
    folder: Path | None = None
    endpoint: Endpoint | None = None

    def __post_init__(self) -> None:
        if (self.folder is None) == (self.endpoint is None):
            raise TinyforgeError(f"target {self.name!r}: give either a model folder or an endpoint")


@dataclass(frozen=True)
class EvalConfig:
    scorers: tuple[Scorer, ...] = ()
    judge: JudgeConfig | None = None
    judge_endpoint: Endpoint | None = None
    max_tokens: int = 128
    chunk_rows: int = 256
    # Positions per batch slot of a local target (prompt + answer): every slot holds a KV cache this
    # long, so the model's own context (8,192 for SmolLM2) would cost gigabytes for nothing.
    max_context: int = 2048

    def __post_init__(self) -> None:
        if (self.judge is None) != (self.judge_endpoint is None):
            raise TinyforgeError("a judge needs both its settings and its endpoint")
        if not self.scorers and self.judge is None:
            raise TinyforgeError("choose at least one scorer or a judge")
        if len({s.key for s in self.scorers}) != len(self.scorers):
            raise TinyforgeError("a scorer is listed twice")
        if not 1 <= self.max_tokens <= 4096:
            raise TinyforgeError("max_tokens must be between 1 and 4096")

    @property
    def score_keys(self) -> list[str]:
        return [s.key for s in self.scorers] + ([JUDGE_KEY] if self.judge and self.judge.mode == "pointwise" else [])


@dataclass
class RowResult:
    """One row answered by one target."""

    index: int  # position of the row in the set
    target: str
    answer: Answer
    scores: dict[str, float | None]
    passed: dict[str, bool | None]
    judge: PointwiseVerdict | None = None


@dataclass
class PairResult:
    index: int
    first: str  # the baseline: the first target
    second: str
    verdict: PairwiseVerdict


@dataclass
class Summary:
    """Aggregates per target (per score: mean with a 95% interval, scored rows, unscored rows) and per
    pair (win / tie / loss rates of the second target against the first)."""

    rows: int = 0
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    pairs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "targets": self.targets, "pairs": self.pairs}


class _Totals:
    def __init__(self, config: EvalConfig, targets: Sequence[Target]):
        self.values = {t.name: {k: [] for k in config.score_keys} for t in targets}
        self.unscored = {t.name: {k: 0 for k in config.score_keys} for t in targets}
        self.errors = {t.name: 0 for t in targets}
        self.tokens = {t.name: [0, 0] for t in targets}
        self.latency = {t.name: 0.0 for t in targets}
        self.answered = {t.name: 0 for t in targets}
        self.pairs = {(targets[0].name, t.name): {"a": 0, "b": 0, "tie": 0, "unscored": 0, "values": []}
                      for t in targets[1:]}

    def add(self, results: list[RowResult], pairs: list[PairResult]) -> None:
        for r in results:
            self.answered[r.target] += 1
            self.errors[r.target] += r.answer.error is not None
            self.tokens[r.target][0] += r.answer.prompt_tokens
            self.tokens[r.target][1] += r.answer.completion_tokens
            self.latency[r.target] += r.answer.latency_s
            for key, value in r.scores.items():
                if value is None:
                    self.unscored[r.target][key] += 1
                else:
                    self.values[r.target][key].append(value)
        for p in pairs:
            counts = self.pairs[(p.first, p.second)]
            if p.verdict.winner is None:
                counts["unscored"] += 1
            else:
                counts[p.verdict.winner] += 1
                counts["values"].append(WIN_VALUES[p.verdict.winner])

    def summary(self, rows: int) -> Summary:
        summary = Summary(rows=rows)
        for name, by_key in self.values.items():
            n = max(self.answered[name], 1)
            summary.targets[name] = {
                "scores": {key: {**bootstrap(values).to_dict(), "unscored": self.unscored[name][key]}
                           for key, values in by_key.items()},
                "answered": self.answered[name], "errors": self.errors[name],
                "prompt_tokens": self.tokens[name][0], "completion_tokens": self.tokens[name][1],
                "mean_latency_s": self.latency[name] / n,
            }
        for (first, second), counts in self.pairs.items():
            judged = counts["a"] + counts["b"] + counts["tie"]
            rate = (lambda k: counts[k] / judged if judged else None)
            summary.pairs.append({
                "first": first, "second": second, "judged": judged, "unscored": counts["unscored"],
                "second_wins": rate("b"), "ties": rate("tie"), "first_wins": rate("a"),
                WIN_KEY: bootstrap(counts["values"]).to_dict(),
            })
        return summary


async def _answer(target: Target, row: EvalRow, local, endpoints: dict[str, ChatEndpoint], max_tokens: int) -> Answer:
    if target.folder is not None:
        return await local.answer(target.name, row.messages(), max_tokens=max_tokens)
    return await endpoints[target.name].chat(row.messages(), max_tokens=max_tokens)


def _score(config: EvalConfig, row: EvalRow, answer: Answer) -> tuple[dict, dict]:
    scores: dict[str, float | None] = {}
    passed: dict[str, bool | None] = {}
    for scorer in config.scorers:
        # A row the target could not answer (the prompt did not fit, the server refused it) is unscored.
        value = None if answer.error is not None else scorer.score(row, answer.text)
        scores[scorer.key], passed[scorer.key] = value, scorer.passed(value)
    return scores, passed


class _Run:
    """One evaluation's endpoints, models and totals; `chunk` answers, scores and judges some rows."""

    def __init__(self, rows: Sequence[EvalRow], targets: Sequence[Target], config: EvalConfig):
        if not targets:
            raise TinyforgeError("choose at least one target")
        if len({t.name for t in targets}) != len(targets):
            raise TinyforgeError("two targets have the same name")
        if config.judge and config.judge.mode == "pairwise" and len(targets) < 2:
            raise TinyforgeError("a pairwise judge compares two targets or more; add another target")
        if not rows:
            raise TinyforgeError("the eval set has no rows")
        self.rows, self.targets, self.config = rows, list(targets), config
        self.endpoints: dict[str, ChatEndpoint] = {}
        self.judge: Judge | None = None
        self.local = None
        self.totals = _Totals(config, targets)
        self.done = 0

    async def open(self, say: Callable[[str], None]) -> None:
        self.endpoints = {t.name: ChatEndpoint(t.endpoint) for t in self.targets if t.endpoint is not None}
        if self.config.judge:
            self.judge = Judge(ChatEndpoint(self.config.judge_endpoint), self.config.judge)
        # Before any row is answered: an endpoint that cannot be used fails the evaluation now.
        if self.judge is not None:
            await self.judge.endpoint.check()
        for endpoint in self.endpoints.values():
            await endpoint.check()
        folders = {t.name: t.folder for t in self.targets if t.folder is not None}
        if folders:
            from tinyforge.serving.batch import LocalModels
            from tinyforge.serving.pool import RuntimeOptions
            from tinyforge.serving.precision import float_precision

            say(f"loading {', '.join(folders)}")
            # In float: an evaluation measures the model, not int8's rounding of it (serving's auto).
            options = RuntimeOptions(max_context=self.config.max_context, dtype=float_precision())
            self.local = await asyncio.to_thread(LocalModels, folders, options)
            say(f"loaded {', '.join(folders)}")

    async def close(self) -> None:
        if self.local is not None:
            await asyncio.to_thread(self.local.close)
        for endpoint in [*self.endpoints.values(), *([self.judge.endpoint] if self.judge else [])]:
            with contextlib.suppress(Exception):
                await endpoint.close()

    async def chunk(self, start: int) -> tuple[list[RowResult], list[PairResult]]:
        rows, targets, config, judge = self.rows, self.targets, self.config, self.judge
        chunk = list(enumerate(rows[start:start + config.chunk_rows], start=start))
        answers = await asyncio.gather(*(_answer(t, row, self.local, self.endpoints, config.max_tokens)
                                         for _, row in chunk for t in targets))
        by_target: dict[tuple[int, str], Answer] = {}
        results = []
        for (index, row), group in zip(chunk, _groups(answers, len(targets))):
            for target, answer in zip(targets, group):
                scores, passed = _score(config, row, answer)
                by_target[(index, target.name)] = answer
                results.append(RowResult(index, target.name, answer, scores, passed))
        pairs: list[PairResult] = []
        if judge is not None and judge.config.mode == "pointwise":
            verdicts = await asyncio.gather(*(_pointwise(judge, rows[r.index], r.answer) for r in results))
            for result, verdict in zip(results, verdicts):
                result.judge = verdict
                result.scores[JUDGE_KEY] = None if verdict is None else verdict.score
                result.passed[JUDGE_KEY] = None if verdict is None else verdict.passed
        elif judge is not None:
            first = targets[0].name
            jobs = [(index, t.name) for index, _ in chunk for t in targets[1:]]
            verdicts = await asyncio.gather(*(
                judge.pairwise(rows[index], by_target[(index, first)].text, by_target[(index, name)].text)
                for index, name in jobs))
            pairs = [PairResult(index, first, name, verdict) for (index, name), verdict in zip(jobs, verdicts)]
        self.totals.add(results, pairs)
        self.done += len(chunk)
        return results, pairs


async def evaluate_async(rows: Sequence[EvalRow], targets: Sequence[Target], config: EvalConfig, *,
                         on_chunk: Callable[[list[RowResult], list[PairResult]], None] | None = None,
                         should_stop: Callable[[], bool] | None = None,
                         on_progress: Callable[[str], None] | None = None) -> Summary:
    """The evaluation inside a running event loop (the callbacks are called in it)."""
    say = on_progress or (lambda message: None)
    run = _Run(rows, targets, config)
    try:
        await run.open(say)
        for start in range(0, len(rows), config.chunk_rows):
            if should_stop is not None and should_stop():
                break
            results, pairs = await run.chunk(start)
            if on_chunk is not None:
                on_chunk(results, pairs)
            say(f"{run.done}/{len(rows)} rows")
        return run.totals.summary(run.done)
    finally:
        await run.close()


async def _pointwise(judge: Judge, row: EvalRow, answer: Answer) -> PointwiseVerdict | None:
    # A row the target did not answer has nothing to judge: unscored, not a score of 1.
    return None if answer.error is not None else await judge.pointwise(row, answer.text)


def _groups(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def evaluate(rows: Sequence[EvalRow], targets: Sequence[Target], config: EvalConfig, *,
             on_chunk: Callable[[list[RowResult], list[PairResult]], None] | None = None,
             should_stop: Callable[[], bool] | None = None,
             on_progress: Callable[[str], None] | None = None) -> Summary:
    """The evaluation for callers without an event loop (the CLI, jobs). The callbacks are called
    between chunks, outside the loop, so they may block (a job writes results to its database)."""
    say = on_progress or (lambda message: None)
    run = _Run(rows, targets, config)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run.open(say))
        for start in range(0, len(rows), config.chunk_rows):
            if should_stop is not None and should_stop():
                break
            results, pairs = loop.run_until_complete(run.chunk(start))
            if on_chunk is not None:
                on_chunk(results, pairs)
            say(f"{run.done}/{len(rows)} rows")
        return run.totals.summary(run.done)
    finally:
        try:
            loop.run_until_complete(run.close())
        finally:
            loop.close()
