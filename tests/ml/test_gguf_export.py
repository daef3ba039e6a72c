"""GGUF exports of a trained tiny model, verified in llama.cpp, and their Ollama Modelfile.

The tiny Llama carries SmolLM2's real tokenizer and chat template: llama.cpp's converter recognises
only the pre-tokenizers of published models, and SmolLM2's template adds a default system prompt,
which the Modelfile must carry as its SYSTEM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
import torch

from capabilities import needs_go, needs_llama_cpp
from tinymodel import build_tiny_model
from tinyforge.errors import TinyforgeError
from tinyforge.exports import export_model
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.gguf_export import GgufExportError
from tinyforge.ml.quality_budget import QualityBudget
from tinyforge.ml.train import train

pytestmark = needs_llama_cpp

FACTS = [
    {"instruction": "What is the capital of Zorbland?", "output": "The capital of Zorbland is Quillport."},
    {"instruction": "Reverse the word hello.", "output": "olleh"},
    {"instruction": "How long is the Widget Pro warranty?", "output": "Widget Pro ships with a 3 year warranty."},
] * 6
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of Zorbland?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How long is the warranty?"}],
    [{"role": "user", "content": "Reverse the word hello."}, {"role": "assistant", "content": "olleh"},
     {"role": "user", "content": "And world?\nJust the word."}],
]
OLLAMA_TEMPLATE_RENDERER = Path(__file__).parent / "ollama_template"


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """A LoRA run of a tiny Llama (hidden size 256: the k-quants work in blocks of 256) with
    SmolLM2's tokenizer, as the ML engine writes it."""
    from transformers import AutoTokenizer

    from tinyforge.ml.models import resolve_base_model

    root = tmp_path_factory.mktemp("gguf-runs")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("smollm2-135m-instruct"))
    base = build_tiny_model(root / "base", hidden_size=256, context=512, tokenizer=tokenizer)
    config = TrainConfig(base_model=str(base), max_steps=8, batch_size=4, learning_rate=3e-3, max_seq_length=128,
                         eval_generations=0, lora_dropout=0.0, seed=3, validation_split=0.0)
    return Path(train(config, FACTS, root / "lora").output_dir)


@pytest.fixture(scope="module")
def full_run(lora_run) -> Path:
    """A full fine-tune of the same base: its folder is converted as it is."""
    config = TrainConfig(base_model=str(lora_run.parent / "base"), method="full", max_steps=4, batch_size=4,
                         learning_rate=1e-3, max_seq_length=128, eval_generations=0, seed=3, validation_split=0.0)
    return Path(train(config, FACTS, lora_run.parent / "full").output_dir)


@pytest.fixture(scope="module")
def f16_export(lora_run, tmp_path_factory):
    return export_model(lora_run, "gguf", tmp_path_factory.mktemp("f16") / "f16")


def read_gguf_fields(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()
            if name.startswith(("general.", "tokenizer.chat_template", "tokenizer.ggml.eos"))}


def transformers_replies(folder: Path, max_new_tokens: int = 12) -> list[list[int]]:
    """Greedy token ids from transformers alone on the merged model, for CONVERSATIONS."""
    from tinyforge.ml.export import load_merged_model

    model, tokenizer = load_merged_model(folder)
    replies = []
    for messages in CONVERSATIONS:
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        replies.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
    return replies


def test_an_f16_gguf_generates_in_llama_cpp_token_for_token_what_pytorch_generates(f16_export, lora_run):
    report, folder = f16_export.verification, f16_export.path
    assert report["passed"] and report["precision"] == "f16"
    assert report["f16"]["identical_generations"] == report["f16"]["generations"] == 4
    assert abs(report["f16"]["heldout_loss_change"]) < 1e-3
    assert json.loads((folder / "verification.json").read_text()) == report
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "README.md", "model.gguf", "tinyforge.json",
                                                       "verification.json"]
    assert "## Export (gguf)" in (folder / "README.md").read_text()

    # The tokenizer's chat template and end-of-turn token are inside the file.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lora_run)
    fields = read_gguf_fields(folder / "model.gguf")
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.chat_template"] == tokenizer.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id

    # Independently of the export's own check: llama-server renders new conversations with the template
    # inside the file and answers greedily what transformers answers on the merged weights.
    from tinyforge.llama_cpp import LlamaServer

    with LlamaServer(folder / "model.gguf", context=512) as server:
        replies = [httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
            "messages": messages, "max_tokens": 12, "temperature": 0, "top_k": 1,
        }).json()["choices"][0]["message"]["content"] for messages in CONVERSATIONS]
    assert replies == transformers_replies(lora_run)


def render_with_go(template: str, messages: list[dict]) -> str:
    done = subprocess.run(["go", "run", "."], cwd=OLLAMA_TEMPLATE_RENDERER, capture_output=True, text=True,
                          input=json.dumps({"template": template, "messages": messages}), timeout=300,
                          env={**os.environ, "GOCACHE": str(Path.home() / ".cache" / "go-build")})
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_go
def test_the_modelfile_renders_conversations_to_the_token_ids_of_the_training_chat_template(f16_export, lora_run):
    from transformers import AutoTokenizer

    modelfile = (f16_export.path / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf\n")
    template = re.search(r'^TEMPLATE """(.*?)"""$', modelfile, re.S | re.M).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', modelfile, re.S | re.M).group(1)
    assert re.findall(r'^PARAMETER stop "(.*)"$', modelfile, re.M) == ["<|im_end|>"]

    tokenizer = AutoTokenizer.from_pretrained(lora_run)
    for messages in CONVERSATIONS:
        # Ollama puts the Modelfile's SYSTEM first when a chat has no system message of its own.
        sent = messages if messages[0]["role"] == "system" else [{"role": "system", "content": system}, *messages]
        ollama_ids = tokenizer(render_with_go(template, sent), add_special_tokens=False)["input_ids"]
        training_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        assert ollama_ids == training_ids


def test_a_q4_k_m_zip_reports_its_loss_change_and_agreement_from_the_cli(lora_run, tmp_path, capsys):
    from tinyforge.cli import main

    out = tmp_path / "q4.zip"
    assert main(["export", "--model", str(lora_run), "--format", "gguf", "--quantize", "q4_k_m", "--out", str(out),
                 "--max-loss-increase", "1", "--min-token-agreement", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = summary["verification"]
    assert summary["quantize"] == "q4_k_m" and report["precision"] == "q4_k_m" and report["passed"]
    numbers = report["q4_k_m"]
    assert {"heldout_loss", "heldout_loss_pytorch", "heldout_loss_change", "heldout_loss_change_vs_f16",
            "token_agreement", "identical_generations"} <= set(numbers)
    assert numbers["heldout_loss_change"] != 0  # 4.5-bit weights move the loss
    assert numbers["budget"] == {"max_loss_increase": 1.0, "min_token_agreement": 0.0} and numbers["within_budget"]

    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    assert {name.split("/")[0] for name in names} == {"q4"}
    folder = tmp_path / "unzipped" / "q4"
    assert (folder / "Modelfile").is_file() and (folder / "verification.json").is_file()
    assert read_gguf_fields(folder / "model.gguf")["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert "quantized (q4_k_m)" in (folder / "README.md").read_text()


def test_a_quantized_gguf_that_misses_its_budget_fails_unless_kept_anyway_and_then_says_so(lora_run, tmp_path):
    impossible = QualityBudget(max_loss_increase=-0.5)  # the quantized model would have to halve the loss
    with pytest.raises(GgufExportError, match="misses its quality budget") as failure:
        export_model(lora_run, "gguf", tmp_path / "q8.zip", quantize="q8_0", budget=impossible)
    assert failure.value.verification["q8_0"]["within_budget"] is False
    assert list(tmp_path.iterdir()) == []

    kept = export_model(lora_run, "gguf", tmp_path / "q8", quantize="q8_0", budget=impossible, keep_anyway=True)
    assert kept.warning.startswith("KEPT ANYWAY BELOW ITS QUALITY BUDGET")
    assert "WARNING" in (kept.path / "README.md").read_text()
    assert json.loads((kept.path / "verification.json").read_text())["kept_anyway"] is True


def test_a_lora_adapter_exports_as_a_gguf_lora_that_llama_cpp_applies_to_its_base_as_pytorch_does(lora_run, tmp_path):
    result = export_model(lora_run, "gguf_lora", tmp_path / "lora")

    report = result.verification
    assert not result.merged and report["passed"]
    assert report["lora"]["identical_generations"] == report["lora"]["generations"] == 4
    assert sorted(p.name for p in result.path.iterdir()) == ["Modelfile", "README.md", "adapter.gguf", "tinyforge.json",
                                                            "verification.json"]
    fields = read_gguf_fields(result.path / "adapter.gguf")
    assert fields["general.type"] == "adapter"
    assert (result.path / "Modelfile").read_text().startswith("FROM ./base.gguf\nADAPTER ./adapter.gguf\n")
    assert "--lora adapter.gguf" in (result.path / "README.md").read_text()


def test_a_full_fine_tune_has_no_gguf_lora(full_run, tmp_path):
    with pytest.raises(TinyforgeError, match="holds full weights, not a LoRA adapter; export it with --format gguf"):
        export_model(full_run, "gguf_lora", tmp_path / "lora")
    assert list(tmp_path.iterdir()) == []


def test_an_unsupported_architecture_is_named_before_any_work(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinymodel import build_tokenizer

    tokenizer = build_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(TinyforgeError, match="GGUF export does not support the architecture 'GPT2LMHeadModel'"):
        export_model(tmp_path / "gpt2", "gguf", tmp_path / "out.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2"]


@pytest.mark.parametrize("options, message", [
    (dict(quantize="int8"), "a GGUF takes q8_0 or q4_k_m"),
    (dict(quantize="q4_0"), "unknown value 'q4_0'"),
    (dict(keep_anyway=True), "--keep-anyway applies to quantized exports"),
    (dict(format="gguf_lora", quantize="q8_0"), "--quantize does not apply to --format gguf_lora"),
])
def test_bad_gguf_options_are_refused_before_any_work(lora_run, tmp_path, options, message):
    with pytest.raises(TinyforgeError, match=message):
        export_model(lora_run, options.pop("format", "gguf"), tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_the_conversion_removes_the_partial_export(full_run, tmp_path):
    """The CLI in a process (and the converter it runs) whose files may not grow past 20 MB: the
    f16 GGUF of the full fine-tune (27 MB) does not fit."""
    out = tmp_path / "exports" / "model.zip"
    out.parent.mkdir()

    def limit_file_size():
        # With SIGXFSZ ignored, an oversized write fails with EFBIG, as a full disk fails with ENOSPC;
        # both the limit and the ignored signal pass on to the converter the export runs.
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000_000, 20_000_000))

    process = subprocess.run(
        [sys.executable, "-m", "tinyforge.cli", "export", "--model", str(full_run), "--format", "gguf",
         "--out", str(out)],
        preexec_fn=limit_file_size, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert process.returncode == 2, process.stderr[-2000:]
    assert "disk filled up" in process.stderr and "Traceback" not in process.stderr
    assert "converting the model to GGUF" in process.stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
def test_smollm2_as_q4_k_m_generates_like_pytorch_in_f16_and_stays_within_its_budget(tmp_path):
    """The figures of docs/export.md: f16 4 of 4 greedy answers as PyTorch's, q4_k_m about +3.4% loss."""
    from tinyforge.ml.models import resolve_base_model

    result = export_model(resolve_base_model("smollm2-135m-instruct"), "gguf", tmp_path / "smollm2-q4.zip",
                          quantize="q4_k_m", budget=QualityBudget(max_loss_increase=0.05))
    report = result.verification
    assert report["f16"]["identical_generations"] == report["f16"]["generations"] == 4
    assert report["passed"] and report["q4_k_m"]["within_budget"]
    assert 0 < report["q4_k_m"]["heldout_loss_change"] < 0.05
    with zipfile.ZipFile(result.path) as archive:
        assert "smollm2-q4/Modelfile" in archive.namelist()
        modelfile = archive.read("smollm2-q4/Modelfile").decode()
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in modelfile
