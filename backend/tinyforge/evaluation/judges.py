"""LLM-as-judge: a model behind an OpenAI-compatible API grades answers.

Pointwise: one answer against the reference, a score from 1 to 5 following a rubric, with the
judge's reasoning kept. Pairwise: two targets' answers to the same question, asked in both orders
(A/B, then B/A) to cancel the judge's preference for a position; when the two orders disagree the
row is a tie. A reply without a readable verdict is "unscored", never a pass and never a fail, and
its raw text is kept so a person can see what the judge said.

The prompts are templates with {question}, {reference}, {answer} (pointwise) or {answer_a} and
{answer_b} (pairwise) and {rubric}; an evaluation may replace them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.endpoints import ChatEndpoint
from tinyforge.evaluation.sets import EvalRow

DEFAULT_RUBRIC = ("5: correct and complete, agrees with the reference; 4: correct with a small omission or "
                  "extra; 3: partly correct; 2: mostly wrong; 1: wrong, empty or off topic.")

# The fixed text (instructions, rubric, verdict format) comes first and what changes per row last:
# every call of an evaluation then starts with the same tokens, which the serving engine's prefix
# cache (and llama-server's) computes once. With the rows' text first, consecutive SmolLM2 judge
# prompts shared 43 of about 170 tokens; this way about 125.
POINTWISE_PROMPT = """You grade an answer to a question against a reference answer.

Rubric: {rubric}

Explain your reasoning in one to three sentences. Then write, on the last line, "Score: N" with N a whole number from 1 to 5.

Question:
{question}

Reference answer:
{reference}

Answer to grade:
{answer}"""

PAIRWISE_PROMPT = """Two assistants answered the same question. Decide which answer is better: more correct, more complete, closer to the reference answer.

Explain your reasoning in one to three sentences. Then write, on the last line, "Winner: A", "Winner: B" or "Winner: tie".

Question:
{question}

Reference answer:
{reference}

Answer A:
{answer_a}

Answer B:
{answer_b}"""

JUDGE_MODES = ("pointwise", "pairwise")
PASS_SCORE = 4  # a pointwise score from which a row passes
_SCORE = re.compile(r"score\W{0,3}\s*[:=]?\s*\**\s*([1-5])\b", re.IGNORECASE)
_WINNER = re.compile(r"winner\W{0,3}\s*[:=]?\s*\**\s*\[?(A|B|tie)\b", re.IGNORECASE)
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True)
class JudgeConfig:
    mode: str = "pointwise"
    prompt: str = ""  # empty: the default prompt of the mode
    rubric: str = DEFAULT_RUBRIC
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if self.mode not in JUDGE_MODES:
            raise TinyforgeError(f"judge mode {self.mode!r}: it is pointwise or pairwise")
        needed = ("{answer}",) if self.mode == "pointwise" else ("{answer_a}", "{answer_b}")
        missing = [name for name in needed if name not in self.template]
        if missing:
            raise TinyforgeError(f"the {self.mode} judge prompt must contain {' and '.join(missing)}")
        if self.max_tokens < 16:
            raise TinyforgeError("the judge needs at least 16 tokens to answer")

    @property
    def template(self) -> str:
        return self.prompt or (POINTWISE_PROMPT if self.mode == "pointwise" else PAIRWISE_PROMPT)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "prompt": self.template, "rubric": self.rubric, "max_tokens": self.max_tokens}


def _fill(template: str, **values: str) -> str:
    # Plain replacement, not str.format: a user's prompt may hold braces (JSON examples).
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


@dataclass
class PointwiseVerdict:
    score: int | None  # 1-5; None: unscored
    reasoning: str
    raw: str

    @property
    def passed(self) -> bool | None:
        return None if self.score is None else self.score >= PASS_SCORE

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "reasoning": self.reasoning, "raw": self.raw, "unscored": self.score is None}


@dataclass
class PairwiseVerdict:
    """`winner` is "a" (the first target), "b", "tie", or None (unscored). `orders` holds what each
    order said in terms of the targets, `raw` each reply."""

    winner: str | None
    orders: list[str | None] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "orders": self.orders, "raw": self.raw, "reasoning": self.reasoning,
                "unscored": self.winner is None}


def _json_field(reply: str, *names: str):
    match = _JSON_OBJECT.search(reply)
    if not match:
        return None, None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    value = next((data[n] for n in names if n in data), None)
    return value, str(data.get("reasoning") or data.get("explanation") or "")


def parse_score(reply: str) -> tuple[int | None, str]:
    """(score 1-5 or None, reasoning) of a pointwise judge's reply; the last "Score: N" counts, or a
    JSON object's "score"."""
    matches = list(_SCORE.finditer(reply))
    if matches:
        last = matches[-1]
        return int(last.group(1)), reply[: last.start()].strip()
    value, reasoning = _json_field(reply, "score", "rating")
    if isinstance(value, int | float) and not isinstance(value, bool) and value == int(value) and 1 <= value <= 5:
        return int(value), reasoning or ""
    if isinstance(value, str) and value.strip() in "12345" and value.strip():
        return int(value.strip()), reasoning or ""
    return None, ""


def parse_winner(reply: str) -> tuple[str | None, str]:
    """("A", "B", "tie" or None, reasoning) of a pairwise judge's reply."""
    matches = list(_WINNER.finditer(reply))
    if matches:
        last = matches[-1]
        value = last.group(1)
        return ("tie" if value.lower() == "tie" else value.upper()), reply[: last.start()].strip()
    value, reasoning = _json_field(reply, "winner", "better")
    if isinstance(value, str) and value.strip().lower() in ("a", "b", "tie"):
        value = value.strip()
        return ("tie" if value.lower() == "tie" else value.upper()), reasoning or ""
    return None, ""


def _reference(row: EvalRow) -> str:
    return row.reference or "(none given: judge by correctness and helpfulness)"


class Judge:
    """A judge model at an endpoint, with the evaluation's judge settings."""

    def __init__(self, endpoint: ChatEndpoint, config: JudgeConfig):
        self.endpoint = endpoint
        self.config = config

    async def _ask(self, prompt: str) -> str:
        reply = await self.endpoint.chat([{"role": "user", "content": prompt}], max_tokens=self.config.max_tokens)
        # A request the server refused is kept as what the judge "said": unscored, with the reason.
        return reply.text if reply.error is None else f"[no reply: {reply.error}]"

    async def pointwise(self, row: EvalRow, answer: str) -> PointwiseVerdict:
        prompt = _fill(self.config.template, question=row.prompt_text(), reference=_reference(row),
                       answer=answer, rubric=self.config.rubric)
        raw = await self._ask(prompt)
        score, reasoning = parse_score(raw)
        return PointwiseVerdict(score, reasoning, raw)

    async def pairwise(self, row: EvalRow, first: str, second: str) -> PairwiseVerdict:
        """`first` is the answer of the first target (the baseline), `second` the other's."""
        import asyncio

        def prompt(a: str, b: str) -> str:
            return _fill(self.config.template, question=row.prompt_text(), reference=_reference(row),
                         answer_a=a, answer_b=b, rubric=self.config.rubric)

        raw = list(await asyncio.gather(self._ask(prompt(first, second)), self._ask(prompt(second, first))))
        (straight, why_1), (swapped, why_2) = parse_winner(raw[0]), parse_winner(raw[1])
        orders = [{"A": "a", "B": "b", "tie": "tie"}.get(straight), {"A": "b", "B": "a", "tie": "tie"}.get(swapped)]
        if None in orders:
            winner = None
        else:
            winner = orders[0] if orders[0] == orders[1] else "tie"
        return PairwiseVerdict(winner, orders, raw, [why_1, why_2])
