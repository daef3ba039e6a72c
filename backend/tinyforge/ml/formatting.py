"""Rendering rows as the model sees them, and deciding which tokens are trained on.

Rows go through the base model's chat template (`tokenizer.apply_chat_template`). A tokenizer
without one gets DEFAULT_CHAT_TEMPLATE (ChatML, the format SmolLM2, Qwen and many small models
use), and that template is saved with the fine-tuned model, so serving and export render
prompts exactly as training did.

Label masking: by default only the assistant's tokens (its text and the end-of-turn marker that
teaches the model to stop) carry labels; system and user tokens get -100 and cost nothing.
`train_on_prompt=True` trains on every token.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyforge.errors import TinyforgeError
from tinyforge.ml.schema import Row

IGNORE_INDEX = -100

# ChatML. Used only when the base tokenizer has no chat template of its own.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DEFAULT_TEMPLATE_TOKENS = ["<|im_start|>", "<|im_end|>"]


def ensure_chat_template(tokenizer) -> bool:
    """Give `tokenizer` the default template (and its marker tokens) if it has none.

    Returns True when the default was installed; the caller must then resize the model's
    embeddings to len(tokenizer) if tokens were added.
    """
    if tokenizer.chat_template:
        return False
    tokenizer.add_special_tokens({"additional_special_tokens": DEFAULT_TEMPLATE_TOKENS})
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or "<|im_end|>"
    return True


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _trained_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans of each assistant turn in it.

    A turn's span is what the template adds after the generation prompt: the reply and its
    end-of-turn marker. This needs the template to render conversations incrementally (each
    prefix of the text is the rendering of a prefix of the conversation), true of ChatML,
    Llama, Mistral, Gemma and Phi templates.
    """
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not full.startswith(upto) or not upto.startswith(prompt):
            raise TinyforgeError(
                "this model's chat template does not render a conversation as a sequence of turns, "
                "so assistant tokens cannot be located for label masking; use train_on_prompt=True "
                "or a base model with a standard chat template"
            )
        spans.append((len(prompt), len(upto)))
    return full, spans


def _tokenize_with_offsets(tokenizer, messages, train_on_prompt):
    full, spans = _trained_spans(tokenizer, messages)
    if not getattr(tokenizer, "is_fast", False):
        raise TinyforgeError("label masking needs a fast (Rust) tokenizer; this model only has a slow one")
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(encoded["input_ids"])
    offsets = list(encoded["offset_mapping"])
    if train_on_prompt:
        return full, offsets, TokenizedExample(input_ids, list(input_ids))
    labels = [IGNORE_INDEX] * len(input_ids)
    span_index = 0
    for position, (start, end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and start >= spans[span_index][1]:
            span_index += 1
        if span_index == len(spans):
            break
        span_start, span_end = spans[span_index]
        if start >= span_start and end > start:
            labels[position] = input_ids[position]
    return full, offsets, TokenizedExample(input_ids, labels)


def tokenize_messages(tokenizer, messages: list[dict[str, str]], train_on_prompt: bool = False) -> TokenizedExample:
    """Token ids of the rendered conversation and labels (-100 where no loss is taken).

    The whole text is tokenized at once (as serving will), and character offsets decide which
    tokens fall inside an assistant turn.
    """
    return _tokenize_with_offsets(tokenizer, messages, train_on_prompt)[2]


def tokenize_row(tokenizer, row: Row, train_on_prompt: bool = False) -> TokenizedExample:
    return tokenize_messages(tokenizer, row.to_messages(), train_on_prompt)


def tokenize_completion(tokenizer, prompt: list[dict[str, str]], completion: str) -> TokenizedExample:
    """The prompt followed by one assistant answer, with labels on the answer only (its text and
    end-of-turn marker): a sequence whose log-probability a preference objective scores. Earlier
    assistant turns of a conversational prompt are context, not labelled."""
    messages = prompt + [{"role": "assistant", "content": completion}]
    _full, offsets, example = _tokenize_with_offsets(tokenizer, messages, False)
    answer_start = len(render(tokenizer, prompt, add_generation_prompt=True))
    labels = [label if start >= answer_start else IGNORE_INDEX for (start, _end), label in zip(offsets, example.labels)]
    return TokenizedExample(example.input_ids, labels)


def count_tokens(tokenizer, row: Row) -> int:
    """Tokens of the row as trained; for a preference pair, of its longer sequence."""
    answers = [row.chosen_text(), row.rejected_text()] if hasattr(row, "chosen_text") else None
    if answers:
        prompt = row.prompt_messages()
        return max(len(tokenizer(render(tokenizer, prompt + [{"role": "assistant", "content": a}]),
                                 add_special_tokens=False)["input_ids"]) for a in answers)
    return len(tokenizer(render(tokenizer, row.to_messages()), add_special_tokens=False)["input_ids"])


def prompt_messages(row: Row) -> list[dict[str, str]]:
    """The conversation up to (not including) the last assistant turn: what a user would send."""
    messages = row.to_messages()
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def expected_reply(row: Row) -> str:
    return row.to_messages()[-1]["content"] if row.to_messages()[-1]["role"] == "assistant" else ""


def preview_row(tokenizer, row: Row, train_on_prompt: bool = False) -> list[dict]:
    """The row as the model sees it, as spans of text marked trained or not.

    For the dataset preview: [{"text": "<|im_start|>user\\n...", "trained": False}, ...],
    consecutive tokens with the same flag merged into one span.
    """
    return preview_messages(tokenizer, row.to_messages(), train_on_prompt)


def preview_messages(tokenizer, messages: list[dict[str, str]], train_on_prompt: bool = False) -> list[dict]:
    """preview_row's spans for a conversation (a preference pair's prompt with its rejected answer)."""
    full, offsets, example = _tokenize_with_offsets(tokenizer, messages, train_on_prompt)
    spans: list[dict] = []
    previous_end = 0
    for (start, end), label in zip(offsets, example.labels):
        trained = label != IGNORE_INDEX
        # Slicing the rendered text (not decoding tokens one by one) keeps multi-byte characters
        # that span two byte-level tokens intact; the gap before a token belongs to it.
        text = full[previous_end:end]
        previous_end = max(previous_end, end)
        if spans and spans[-1]["trained"] == trained:
            spans[-1]["text"] += text
            spans[-1]["tokens"] += 1
        else:
            spans.append({"text": text, "trained": trained, "tokens": 1})
    return spans
