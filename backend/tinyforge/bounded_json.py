"""JSON parsing with a bound on nesting depth, checked before the parser recurses.

Python's decoder recurses once per nested array or object, so a 2 KB body of a thousand `[`
ends in RecursionError (a 500 in a web server, "failed unexpectedly" in an import). Every JSON
text the product reads from outside (API bodies, inference requests, dataset files) goes
through `loads` here, or through `NestingScanner` where a file is decoded piece by piece.

No Django: the control plane, the inference service, the connectors and the engine share it.
Errors are `json.JSONDecodeError`s (a ValueError), so callers that already report malformed
JSON with its line and column report these the same way.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate

# Real data nests a handful of levels (a chat row: object > messages > message > content parts);
# 100 leaves ample room and stays far below the interpreter's recursion limit (1000), which every
# recursive walk of the parsed value (validation, NUL checks, rendering) also shares.
MAX_DEPTH = 100

# One pass deletes every complete string and everything that is not a bracket, leaving only the
# brackets outside strings, and after them, when the text ends inside a string (a piece of a file
# cut mid-string), that string's opening quote (and whatever follows it, which is discarded).
_STRING = r'"[^"\\]*+(?:\\.[^"\\]*+)*+'  # up to its closing quote; the unrolled form is the fastest
_NOT_BRACKETS = re.compile(_STRING + r'"|[^\[\]{}"]++', re.DOTALL)
_STRING_REST = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_TOKENS = re.compile(_STRING + r'"|[\[\]{}]', re.DOTALL)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# A \u escape of half a surrogate pair: only then can a decoded string hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile("\\\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[\\ud800-\\udfff]")


class TooDeeplyNested(json.JSONDecodeError):
    """Arrays and objects nested deeper than the bound."""


class NestingScanner:
    """Follows the nesting depth of one JSON text fed in consecutive pieces.

    `feed` returns the offset in the piece where the depth first passes `max_depth`, or None.
    Brackets inside strings do not count, also when a string spans two pieces.
    """

    def __init__(self, max_depth: int = MAX_DEPTH):
        self.max_depth = max_depth
        self.depth = 0
        self._in_string = False
        self._escape_pending = False  # the last piece ended on the backslash of an escape

    def feed(self, piece: str) -> int | None:
        start = 0
        if self._in_string:
            start = 1 if self._escape_pending else 0
            rest = _STRING_REST.match(piece, start) if start <= len(piece) else None
            if rest is None:  # the string goes on past this piece too
                self._escape_pending = self._ends_inside_escape(piece, start)
                return None
            self._in_string = self._escape_pending = False
            start = rest.end()
        brackets = _NOT_BRACKETS.sub("", piece[start:])
        open_string = brackets.find('"')
        if open_string >= 0:
            self._in_string = True
            self._escape_pending = self._ends_inside_escape(piece, start)
            brackets = brackets[:open_string]
        depth_before = self.depth
        depths = list(accumulate(map(_STEP.get, brackets), initial=depth_before))
        self.depth = depths[-1]
        if max(depths) <= self.max_depth:
            return None
        return self._offset_past_bound(piece, start, depth_before)

    @staticmethod
    def _ends_inside_escape(piece: str, start: int) -> bool:
        # Inside a string, backslashes pair up from the left: an odd run at the end leaves one open.
        tail = piece[start:]
        return (len(tail) - len(tail.rstrip("\\"))) % 2 == 1

    def _offset_past_bound(self, piece: str, start: int, depth: int) -> int:
        # Only on refusal: walk the tokens again to say where the bound was passed.
        for token in _TOKENS.finditer(piece, start):
            depth += _STEP.get(token.group(), 0)
            if depth > self.max_depth:
                return token.start()
        raise AssertionError("the bound was passed, so a token passed it")


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise TooDeeplyNested if arrays and objects in `text` nest deeper than `max_depth`."""
    offset = NestingScanner(max_depth).feed(text)
    if offset is not None:
        raise TooDeeplyNested(f"arrays and objects nested deeper than {max_depth} levels", text, offset)


def loads(text: str | bytes, max_depth: int = MAX_DEPTH, **options):
    """`json.loads` that refuses, as JSONDecodeError: nesting deeper than `max_depth` (before
    decoding), numbers nothing can hold (integers over 4300 digits, floats past 1.8e308), and
    strings with half a surrogate pair (no UTF-8 text, database or tokenizer can take them)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"not UTF-8 text ({exc.reason})", "", exc.start) from None
    check_depth(text, max_depth)
    options.setdefault("parse_float", _finite_float)
    try:
        value = json.loads(text, **options)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # int() refusing a number of thousands of digits
        raise json.JSONDecodeError(str(exc).split(";")[0], text, 0) from None
    surrogate = _SURROGATE_ESCAPE.search(text)
    if surrogate is not None and _holds_lone_surrogate(value):
        raise json.JSONDecodeError("a \\u escape is half of a surrogate pair, not a character", text,
                                   surrogate.start())
    return value


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e400: valid JSON syntax, no number any consumer can hold
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _holds_lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
