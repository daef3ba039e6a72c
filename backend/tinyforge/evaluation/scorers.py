"""Plain scorers and the bootstrap interval of their mean.

Each scorer turns (row, answer) into a value in [0, 1], or None when it cannot score that row
(no reference to compare with, no facts to look for): an unscored row counts neither as a pass nor
as a fail. A row passes a scorer when its value reaches the scorer's `pass_at` (1 for the yes/no
scorers, 0.5 for the overlap ones); "regressions" are rows one target passed and a later one fails.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.sets import EvalRow

SCORERS = ("exact_match", "must_include", "rouge_l", "token_f1", "regex", "json_valid", "json_schema")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```$", re.DOTALL)


def fold(text: str) -> str:
    """Case and whitespace folded: what exact match and must_include compare."""
    return " ".join(text.casefold().split())


def included(terms: list[str], answer: str) -> list[str]:
    """The terms that `answer` contains as whole words, case and whitespace folded: what must_include
    counts (and what the knowledge recipe asks of a training answer about a fact)."""
    folded = fold(answer)
    return [term for term in terms if re.search(rf"(?<!\w){re.escape(fold(term))}(?!\w)", folded)]


def _tokens(text: str) -> list[str]:
    # SQuAD's answer normalisation: lower case, no punctuation, no articles.
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


@dataclass(frozen=True)
class Scorer:
    """One scorer of an evaluation. `pattern` is regex's, `schema` json_schema's."""

    name: str
    pattern: str | None = None
    schema: dict | None = field(default=None, hash=False, compare=False)
    threshold: float | None = None  # where a row passes, instead of the scorer's own (OpenAI's pass_threshold)

    def __post_init__(self) -> None:
        if self.name not in SCORERS:
            raise TinyforgeError(f"unknown scorer {self.name!r}; the scorers are {', '.join(SCORERS)}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise TinyforgeError(f"{self.name}: the pass threshold must be between 0 and 1")
        if self.name == "regex":
            if not self.pattern:
                raise TinyforgeError("the regex scorer needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise TinyforgeError(f"regex scorer: {self.pattern!r} is not a regular expression: {exc}") from None
        if self.name == "json_schema":
            from jsonschema import Draft202012Validator, SchemaError

            if not isinstance(self.schema, dict):
                raise TinyforgeError("the json_schema scorer needs a JSON Schema object")
            try:
                Draft202012Validator.check_schema(self.schema)
            except SchemaError as exc:
                raise TinyforgeError(f"json_schema scorer: the schema is not valid: {exc.message}") from None

    @property
    def key(self) -> str:
        """The name results are stored under (a regex scorer is named by its pattern too)."""
        return f"regex:{self.pattern}" if self.name == "regex" else self.name

    @property
    def pass_at(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return 0.5 if self.name in ("rouge_l", "token_f1") else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **({"pattern": self.pattern} if self.pattern else {}),
                **({"schema": self.schema} if self.schema is not None else {}),
                **({"threshold": self.threshold} if self.threshold is not None else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scorer:
        return cls(data["name"], pattern=data.get("pattern"), schema=data.get("schema"), threshold=data.get("threshold"))

    @cached_property
    def _regex(self):
        return re.compile(self.pattern)

    @cached_property
    def _validator(self):
        from jsonschema import Draft202012Validator

        return Draft202012Validator(self.schema)

    @cached_property
    def _rouge(self):
        from rouge_score import rouge_scorer

        return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def score(self, row: EvalRow, answer: str) -> float | None:
        if self.name == "exact_match":
            return None if row.reference is None else float(fold(answer) == fold(row.reference))
        if self.name == "must_include":
            if not row.must_include:
                return None
            return len(included(row.must_include, answer)) / len(row.must_include)
        if self.name == "rouge_l":
            return None if row.reference is None else self._rouge.score(row.reference, answer)["rougeL"].fmeasure
        if self.name == "token_f1":
            return None if row.reference is None else token_f1(answer, row.reference)
        if self.name == "regex":
            return float(self._regex.search(answer) is not None)
        document = _json_document(answer)
        if self.name == "json_valid":
            return float(document is not _INVALID)
        return float(document is not _INVALID and self._validator.is_valid(document))

    def passed(self, value: float | None) -> bool | None:
        return None if value is None else value >= self.pass_at - 1e-9


_INVALID = object()


def _json_document(answer: str):
    text = answer.strip()
    fenced = _FENCE.match(text)  # models often wrap JSON in a code fence; the content is what counts
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except (json.JSONDecodeError, ValueError):
        return _INVALID


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = _tokens(prediction), _tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def parse_scorer(text: str) -> Scorer:
    """`name`, `regex=PATTERN` or `json_schema=FILE` (the command line's --scorer)."""
    name, sep, argument = text.partition("=")
    name = name.strip()
    if name == "regex":
        return Scorer("regex", pattern=argument if sep else None)
    if name == "json_schema":
        if not sep:
            raise TinyforgeError("--scorer json_schema=FILE: name the JSON Schema file")
        try:
            schema = json.loads(open(argument).read())
        except OSError as exc:
            raise TinyforgeError(f"--scorer json_schema={argument}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise TinyforgeError(f"--scorer json_schema={argument}: not JSON: {exc.msg} at line {exc.lineno}") from None
        return Scorer("json_schema", schema=schema)
    if sep:
        raise TinyforgeError(f"--scorer {text}: only regex and json_schema take a value")
    return Scorer(name)


@dataclass(frozen=True)
class Interval:
    mean: float | None
    low: float | None
    high: float | None
    n: int  # scored rows

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def bootstrap(values: list[float], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of `values` with a percentile bootstrap interval (seeded: the same values give the
    same interval, so a result page does not change when it is reloaded)."""
    import numpy as np

    if not values:
        return Interval(None, None, None, 0)
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    # In blocks, so 10,000 rows x 2,000 resamples never sits in memory at once.
    block = max(1, 2_000_000 // len(data))
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = data[rng.integers(0, len(data), size=(stop - start, len(data)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(data.mean()), float(low), float(high), len(data))
