"""The engine's structured output below the API (tinyforge.serving.structured): the mask a row's
constraint puts on its logits. The API's contract is in test_openai_api.py, its bad input in
test_bad_input.py, on every runtime."""

from __future__ import annotations

import json

import pytest
import torch

from tinyforge.serving import structured
from tinymodel import build_tokenizer

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}, "tag": {"enum": ["red", "blue"]}},
          "required": ["n", "tag"], "additionalProperties": False}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(chat=True)


def test_the_mask_allows_exactly_the_tokens_the_grammar_takes_and_only_in_its_own_rows(tokenizer):
    ends = frozenset({tokenizer.eos_token_id})
    grammar = structured.grammar(SCHEMA)
    first, partway = structured.Constraint(tokenizer, ends, grammar), structured.Constraint(tokenizer, ends, grammar)
    for token in tokenizer('{"n": 12, "tag": "b', add_special_tokens=False)["input_ids"]:
        assert not partway.consume(token)
    # Logits as wide as a real model's padded embedding: the rows past the tokenizer are never allowed.
    width = len(tokenizer) + 16
    logits = torch.randn(4, width)
    before = logits
    logits = structured.mask(logits, [(1, first), (3, partway)])
    assert torch.equal(logits[0], before[0]) and torch.equal(logits[2], before[2])
    for row, constraint in ((1, first), (3, partway)):
        allowed = {t for t in range(width) if logits[row, t] != float("-inf")}
        # Asked token by token, without consuming: which ones the matcher would take next.
        expected = {t for t in range(len(tokenizer)) if constraint.matcher.validate_tokens([t]) == 1}
        assert allowed == expected and expected
        assert all(logits[row, t] == before[row, t] for t in allowed)
    # What the only document of each row can go on with: its first characters, and the rest of "blue".
    for row, rest in ((1, '{"n": '), (3, 'lue"}')):
        assert all(rest.startswith(tokenizer.decode([t])) for t in range(len(tokenizer)) if logits[row, t] != float("-inf"))

def test_a_complete_document_ends_the_answer(tokenizer):
    constraint = structured.Constraint(tokenizer, frozenset({tokenizer.eos_token_id}), structured.grammar(SCHEMA))
    ids = tokenizer(json.dumps({"n": 7, "tag": "red"}), add_special_tokens=False)["input_ids"]
    assert [constraint.consume(t) for t in ids] == [False] * (len(ids) - 1) + [True]


@pytest.mark.parametrize("schema, says", [
    ({"type": "strin"}, "strin"),
    ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "missing"),
    ({"type": "string", "pattern": "(("}, "unclosed group"),
    ([], "a JSON Schema is a JSON object"),
])
def test_a_schema_that_cannot_constrain_says_why(schema, says):
    with pytest.raises(structured.SchemaError, match=says.replace("$", r"\$")):
        structured.grammar(schema)
