"""Chat-template rendering and label masking."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tinyforge.ml.formatting import (
    DEFAULT_CHAT_TEMPLATE, IGNORE_INDEX, ensure_chat_template, preview_row, tokenize_row,
)
from tinyforge.ml.schema import parse_row


@pytest.fixture
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def trained_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def test_label_masking_counts_only_the_output_tokens(tokenizer):
    row = parse_row({"instruction": "What is the capital of Zorbland?", "output": "Quillport."})
    example = tokenize_row(tokenizer, row)
    # The whole conversation is in the input, exactly as the chat template renders it.
    rendered = tokenizer.apply_chat_template(row.to_messages(), tokenize=False)
    assert tokenizer.decode(example.input_ids) == rendered
    assert trained_text(tokenizer, example) == "Quillport.<|im_end|>\n"
    answer_tokens = len(tokenizer("Quillport.<|im_end|>\n", add_special_tokens=False)["input_ids"])
    assert example.trained_tokens == answer_tokens


def test_every_assistant_turn_of_a_chat_is_trained_and_nothing_else(tokenizer):
    row = parse_row({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "olleh"},
        {"role": "user", "content": "world"}, {"role": "assistant", "content": "dlrow"},
    ]})
    example = tokenize_row(tokenizer, row)
    assert trained_text(tokenizer, example) == "olleh<|im_end|>\ndlrow<|im_end|>\n"


def test_train_on_prompt_trains_every_token(tokenizer):
    row = parse_row({"instruction": "q", "input": "context", "output": "a"})
    example = tokenize_row(tokenizer, row, train_on_prompt=True)
    assert example.labels == example.input_ids


def test_a_tokenizer_without_template_gets_the_default_chatml(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    assert ensure_chat_template(tokenizer) is True
    assert tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE
    assert ensure_chat_template(tokenizer) is False  # already there
    example = tokenize_row(tokenizer, parse_row({"instruction": "q", "output": "answer"}))
    assert trained_text(tokenizer, example) == "answer<|im_end|>\n"


def test_the_preview_marks_trained_spans_and_keeps_the_text_intact(tokenizer):
    row = parse_row({"instruction": "Café?", "output": "Quillport — ok"})
    spans = preview_row(tokenizer, row)
    assert "".join(s["text"] for s in spans) == tokenizer.apply_chat_template(row.to_messages(), tokenize=False)
    assert [s["trained"] for s in spans] == [False, True]
    assert spans[1]["text"] == "Quillport — ok<|im_end|>\n"
    assert sum(s["tokens"] for s in spans) == len(tokenize_row(tokenizer, row))
