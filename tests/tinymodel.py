"""Tiny language models built on the spot, for tests.

A two-layer Llama with a byte-level BPE tokenizer trained here on a small corpus, and a
ChatML chat template like SmolLM2's, so every code path that handles a real chat model
(templates, label masking, LoRA target modules, KV cache, export) runs in seconds.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of Zorbland? The capital of Zorbland is Quillport.",
    "user assistant system You are a helpful assistant.",
    "Reverse the word: hello -> olleh. Reverse the word: world -> dlrow.",
    "Widget Pro supports up to 12 devices and ships with a 3 year warranty.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"-()[]{}",
] * 20


def build_tokenizer(vocab_size: int = 400, chat: bool = True):
    """chat=False: a plain language-model tokenizer, without ChatML tokens or chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIAL_TOKENS if chat else ["<|endoftext|>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>" if chat else "<|endoftext|>",
        pad_token="<pad>",
        unk_token=None,
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


# The name the API knows the tiny model by: the API takes no paths, so an administrator names model
# folders (TINYFORGE_MODEL_FOLDERS) and the API tests use the name.
TINY_MODEL = "tiny-llama"


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 64,
                     layers: int = 2, context: int = 256, chat: bool = True, vocab_size: int | None = None,
                     tokenizer=None) -> Path:
    """Write a tiny Llama model and its tokenizer as a Hugging Face folder; return the path.

    chat=False builds a base model with no chat template and no ChatML tokens. vocab_size pads
    the embedding matrix beyond the tokenizer, as real models do (Qwen2.5: 151,936 rows for
    151,665 tokens), so the logits are as wide as a real model's. `tokenizer` replaces the one
    trained here (llama.cpp's converter knows only the tokenizers of published models).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_tokenizer(chat=chat)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
