"""Structured output: answers held to a JSON Schema (OpenAI's `response_format`).

Asked in words for a JSON array, a small model (SmolLM2-135M, the platform's offline teacher)
answers in prose, repeats the request back, or loops inside a string until its token limit; the
knowledge recipe then gets nothing from that chunk. Asked through `response_format`, every answer
parses: before each token is sampled, llguidance computes which tokens keep the text a prefix of
some document the schema accepts, and the engine masks out the others. A model still chooses what
to say, greedy or sampled; it can no longer say it in the wrong shape. `maxLength` on a string
bounds a loop inside it, and the schema can fix what a model only fills in (`const`, `enum`).

The schema is compiled when the request arrives, so an unsupported or broken one is a 400 that
names it, never a failure half-way through an answer. Whitespace between JSON tokens is fixed
(", " and ": "): left free, a small model can spend its whole budget on blank lines that the
grammar allows.
"""

from __future__ import annotations

import threading
import weakref

import llguidance
import llguidance.hf
import llguidance.torch
import numpy as np
import torch

# json.dumps's separators, the ones most JSON a model has read uses (and the knowledge recipe's
# examples): a model forced into another spacing writes worse JSON than it would have.
_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


class SchemaError(ValueError):
    """The schema cannot constrain an answer: not a JSON Schema, or one llguidance does not support."""


def grammar(schema: dict) -> str:
    """The llguidance grammar for `schema`; raises SchemaError with llguidance's reason."""
    if not isinstance(schema, dict):
        raise SchemaError("a JSON Schema is a JSON object")
    try:
        text = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_OPTIONS)
    except (ValueError, TypeError) as exc:
        raise SchemaError(str(exc)) from None
    error = llguidance.LLMatcher.validate_grammar(text)
    if error:
        raise SchemaError(error.strip())
    return text


# Building an LLTokenizer walks the whole vocabulary: once per tokenizer and end-token set, kept
# while the tokenizer lives (a deployment's, loaded once).
_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_tokenizers_lock = threading.Lock()


def prepare(tokenizer, end_token_ids: frozenset[int]) -> None:
    """Build the tokenizer's table now (SmolLM2's 49,152 tokens: about 0.35 s, once), on a worker
    thread, rather than in the first constrained request's submit on the event loop."""
    _ll_tokenizer(tokenizer, end_token_ids)


def _ll_tokenizer(tokenizer, end_token_ids: frozenset[int]):
    with _tokenizers_lock:
        by_ends = _tokenizers.setdefault(tokenizer, {})
        if end_token_ids not in by_ends:
            by_ends[end_token_ids] = llguidance.hf.from_tokenizer(tokenizer, eos_token=sorted(end_token_ids))
        return by_ends[end_token_ids]


class Constraint:
    """One answer's place in the schema's grammar."""

    def __init__(self, tokenizer, end_token_ids: frozenset[int], grammar_text: str):
        ll_tokenizer = _ll_tokenizer(tokenizer, end_token_ids)
        self.vocab_size = ll_tokenizer.vocab_size
        self.matcher = llguidance.LLMatcher(ll_tokenizer, grammar_text)
        if self.matcher.is_error():
            raise SchemaError(self.matcher.get_error())

    def consume(self, token: int) -> bool:
        """Record the sampled token; True once the document is complete (nothing may follow it).
        The engine samples only tokens the mask allowed, so the matcher cannot refuse one."""
        self.matcher.consume_token(token)
        return self.matcher.is_stopped()


def mask(logits: torch.Tensor, rows: list[tuple[int, Constraint]]) -> torch.Tensor:
    """The logits with -inf for every token that its row's constraint does not allow next (a new
    tensor: the runtime's are inference tensors). `rows`: (row of `logits`, constraint); the other
    rows are as they were. Tokens past the tokenizer's vocabulary (the padding rows of a real
    model's embedding) are never allowed."""
    width = logits.shape[-1]
    words = (max(width, *(c.vocab_size for _, c in rows)) + 31) // 32
    bitmask = torch.zeros((len(rows), words), dtype=torch.int32)
    for j, (_, constraint) in enumerate(rows):
        llguidance.torch.fill_next_token_bitmask(constraint.matcher, bitmask, j)
    allowed = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")[:, :width].astype(bool)
    for j, (_, constraint) in enumerate(rows):
        allowed[j, constraint.vocab_size:] = False
    index = torch.tensor([row for row, _ in rows])
    return logits.index_copy(0, index, logits[index].masked_fill(~torch.from_numpy(allowed), float("-inf")))
