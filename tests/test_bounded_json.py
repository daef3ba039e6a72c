import json
import random

import pytest

from tinyforge.bounded_json import MAX_DEPTH, NestingScanner, TooDeeplyNested, loads


def nested(depth: int) -> str:
    return '{"a": ' * (depth // 2) + "[" * (depth - depth // 2) + "1" + "]" * (depth - depth // 2) + "}" * (depth // 2)


def test_it_parses_json_up_to_the_bound():
    assert loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    assert loads(b'{"messages": [{"role": "user", "content": "[[[{{{"}]}') == {
        "messages": [{"role": "user", "content": "[[[{{{"}]}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_it_refuses_deeper_json_with_where_before_decoding(depth):
    with pytest.raises(TooDeeplyNested) as caught:
        loads("[" * depth + "]" * depth)
    assert caught.value.pos == MAX_DEPTH  # the first bracket past the bound
    with pytest.raises(TooDeeplyNested):
        loads(nested(depth))
    assert f"deeper than {MAX_DEPTH} levels" in str(caught.value)
    assert isinstance(caught.value, json.JSONDecodeError)  # callers' existing handling applies


def test_brackets_inside_strings_do_not_count():
    text = json.dumps(["[" * 500, "{" * 500, 'quote \\" [[[', "\\" * 3 + "[[["])
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize("text,message", [
    ('["\\ud800"]', "half of a surrogate pair"),
    ('{"\\udfff": 1}', "half of a surrogate pair"),
    ("1" * 5000, "4300 digits"),
    ('{"lr": 1e400}', "out of range"),
    (b"\xff[]", "not UTF-8"),
])
def test_it_refuses_values_nothing_downstream_can_hold(text, message):
    with pytest.raises(json.JSONDecodeError, match=message):
        loads(text)


def test_it_keeps_escaped_backslashes_and_surrogate_pairs():
    assert loads('["\\\\ud800", "\\ud83d\\ude00"]') == ["\\ud800", "\U0001F600"]


def test_the_scanner_follows_strings_and_escapes_across_pieces():
    """A file read in pieces gives the same depths as the whole text, wherever it is cut."""
    text = json.dumps([{"a": ['x\\"[[', "\\\\", "{{"]}, [[[r'q\\\"]]]']]]])
    whole = NestingScanner(max_depth=3)
    assert whole.feed(text) is not None
    offset = text.index('[[["q') + 2
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 12)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        scanner, found, consumed = NestingScanner(max_depth=3), None, 0
        for piece in pieces:
            at = scanner.feed(piece)
            if at is not None:
                found = consumed + at
                break
            consumed += len(piece)
        assert found == offset, pieces
    balanced = NestingScanner(max_depth=4)
    for piece in (text[:9], text[9:]):
        assert balanced.feed(piece) is None
    assert balanced.depth == 0

