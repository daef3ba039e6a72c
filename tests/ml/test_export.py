"""Exports of a trained tiny model: Hugging Face folders, verified ONNX, int8, bad input."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tinyforge.errors import TinyforgeError
from tinyforge.ml import onnx_export
from tinyforge.ml.config import TrainConfig
from tinyforge.ml.evaluate import generate_replies
from tinyforge.exports import export_model
from tinyforge.ml.models import load_model_folder
from tinyforge.ml.onnx_model import OnnxCausalLM
from tinyforge.ml.train import train

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of Zorbland?"}],
    [{"role": "user", "content": "Reverse the word hello."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How long is the warranty?"}],
]
FACTS = [
    {"instruction": "What is the capital of Zorbland?", "output": "The capital of Zorbland is Quillport."},
    {"instruction": "Reverse the word hello.", "output": "olleh"},
    {"instruction": "How long is the Widget Pro warranty?", "output": "Widget Pro ships with a 3 year warranty."},
] * 6


@pytest.fixture(scope="module")
def trained_dirs(tiny_model_dir, tmp_path_factory):
    """A LoRA run and a full fine-tune of the tiny model, as the ML engine writes them."""
    root = tmp_path_factory.mktemp("export-runs")
    common = dict(base_model=str(tiny_model_dir), max_steps=8, batch_size=4, learning_rate=3e-3,
                  max_seq_length=128, eval_generations=0, lora_dropout=0.0, seed=3, validation_split=0.0)
    lora = train(TrainConfig(**common), FACTS, root / "lora").output_dir
    full = train(TrainConfig(method="full", **common), FACTS, root / "full").output_dir
    return {"lora": Path(lora), "full": Path(full)}


def our_replies(model_dir: Path) -> list[str]:
    model, tokenizer = load_model_folder(model_dir)
    return generate_replies(model, tokenizer, CONVERSATIONS, max_new_tokens=12)


def plain_transformers_replies(folder: Path) -> list[str]:
    """Generations by transformers alone (PEFT integration for adapters), no tinyforge code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    replies = []
    for messages in CONVERSATIONS:
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        replies.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return replies


def unzip(archive: Path, into: Path) -> Path:
    into.mkdir()
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        z.extractall(into)
    assert {name.split("/")[0] for name in names} == {archive.stem}, "one top-level folder"
    return into / archive.stem


def test_it_exports_a_lora_adapter_as_is_and_transformers_generates_what_we_generated(trained_dirs, tmp_path):
    result = export_model(trained_dirs["lora"], "hf", tmp_path / "adapter.zip")
    folder = unzip(result.path, tmp_path / "unzipped")

    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "checkpoints").exists()
    assert (folder / "chat_template.jinja").is_file() or "chat_template" in (folder / "tokenizer_config.json").read_text()
    card = (folder / "README.md").read_text()
    assert "LoRA adapter" in card and "## Export (hf)" in card
    info = json.loads((folder / "tinyforge.json").read_text())
    assert info["method"] == "lora" and info["export"]["merged"] is False
    assert plain_transformers_replies(folder) == our_replies(trained_dirs["lora"])


def test_it_merges_an_adapter_into_full_weights_that_generate_the_same(trained_dirs, tmp_path):
    result = export_model(trained_dirs["lora"], "hf", tmp_path / "merged", merge=True)

    assert result.merged and (result.path / "model.safetensors").is_file()
    assert not (result.path / "adapter_config.json").exists()
    assert json.loads((result.path / "tinyforge.json").read_text())["export"]["merged"] is True
    assert plain_transformers_replies(result.path) == our_replies(trained_dirs["lora"])


def test_onnx_export_generates_token_for_token_what_pytorch_generates(trained_dirs, tmp_path):
    result = export_model(trained_dirs["lora"], "onnx", tmp_path / "onnx")

    report = result.verification
    assert report["passed"] and report["precision"] == "fp32"
    assert report["fp32"]["identical_generations"] == report["fp32"]["generations"] == len(onnx_export.VERIFICATION_PROMPTS)
    assert report["fp32"]["max_abs_logit_diff"] <= onnx_export.LOGITS_ATOL
    assert json.loads((result.path / "verification.json").read_text()) == report
    assert "## Export (onnx)" in (result.path / "README.md").read_text()

    # Independently of the export's own check: a new prompt, through a left-padded batch of two
    # with the KV cache, against transformers' generate on the merged weights.
    from transformers import AutoTokenizer

    runtime = OnnxCausalLM(result.path)
    tokenizer = AutoTokenizer.from_pretrained(result.path)
    model, _ = load_model_folder(trained_dirs["lora"])
    model = model.merge_and_unload().eval()
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in CONVERSATIONS[:2]]
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(map(len, ids))
    padded = np.asarray([[0] * (width - len(x)) + x for x in ids])
    mask = np.asarray([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    out = runtime.step(padded, mask, positions, runtime.empty_past(2))
    generated = [[], []]
    for _ in range(6):
        tokens = out.logits[:, -1].argmax(-1)
        for row, token in enumerate(tokens):
            generated[row].append(int(token))
        mask = np.concatenate([mask, np.ones((2, 1), dtype=mask.dtype)], axis=1)
        positions = positions[:, -1:] + 1
        out = runtime.step(tokens[:, None], mask, positions, out.past)
    for row, prompt_ids in enumerate(ids):
        with torch.no_grad():
            expected = model.generate(torch.tensor([prompt_ids]), max_new_tokens=6, do_sample=False,
                                      min_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
        assert generated[row] == expected[0, len(prompt_ids):].tolist()


@pytest.fixture(scope="module")
def int8_export(trained_dirs, tmp_path_factory):
    return export_model(trained_dirs["full"], "onnx", tmp_path_factory.mktemp("int8") / "int8", quantize="int8")


def test_int8_export_reports_its_loss_change_and_agreement(trained_dirs, int8_export, tmp_path):
    fp32 = export_model(trained_dirs["full"], "onnx", tmp_path / "fp32")
    int8 = int8_export

    report = int8.verification
    assert report["precision"] == "int8" and report["fp32"]["passed"]
    assert set(report["int8"]) >= {"heldout_loss", "heldout_loss_change_vs_onnx_fp32", "token_agreement",
                                   "identical_generations"}
    assert report["int8"]["heldout_loss"] != report["fp32"]["heldout_loss"], "int8 weights change the numbers"
    assert abs(report["int8"]["heldout_loss_change_vs_onnx_fp32"]) < 0.05
    assert report["passed"] and report["int8"]["within_budget"] and report["int8"]["misses"] == []
    assert report["int8"]["weights"].startswith("uint8") and report["cpu"]["int8_dot_product"]
    assert (int8.path / "model.onnx").stat().st_size < (fp32.path / "model.onnx").stat().st_size
    assert not (int8.path / "model.fp32.onnx").exists()
    assert "int8" in (int8.path / "README.md").read_text()


QEMU = shutil.which("qemu-x86_64")
EMULATED_LOGITS = """
import sys
import numpy as np
from tinyforge.ml.onnx_model import OnnxCausalLM
np.save(sys.argv[2], OnnxCausalLM(sys.argv[1], intra_op_threads=1).full_logits(list(range(3, 60))))
"""


@pytest.mark.skipif(not QEMU or platform.machine() != "x86_64",
                    reason="needs Debian's qemu-user (x86-64) to run ONNX Runtime as on an AVX2-only CPU; "
                           ".ci/run installs it")
def test_the_int8_model_computes_the_same_on_a_cpu_without_vnni(int8_export, tmp_path):
    """ONNX Runtime has no instruction-set cap: an emulated Haswell (AVX2 and FMA, no AVX-512, no
    VNNI) runs its AVX2 integer kernels. Unsigned weights never saturate there; signed ones moved this
    model's logits by about 0.5 and SmolLM2-135M's held-out loss by 80% (docs/export.md)."""
    native = OnnxCausalLM(int8_export.path).full_logits(list(range(3, 60)))
    out = tmp_path / "emulated.npy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.run([QEMU, "-cpu", "Haswell", sys.executable, "-c", EMULATED_LOGITS, str(int8_export.path),
                              str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    emulated = np.load(out)
    assert np.abs(emulated - native).max() < 1e-3
    assert (emulated.argmax(-1) == native.argmax(-1)).all()


def test_an_int8_model_that_misses_its_budget_fails_unless_kept_anyway_and_then_says_so(trained_dirs, tmp_path,
                                                                                        capsys):
    from tinyforge.cli import main

    # A budget no int8 model meets: its held-out loss would have to fall by half.
    args = ["export", "--model", str(trained_dirs["full"]), "--format", "onnx", "--quantize", "int8",
            "--max-loss-increase", "-0.5"]
    assert main([*args, "--out", str(tmp_path / "refused.zip")]) == 2
    err = capsys.readouterr().err
    assert "the int8 model misses its quality budget on this CPU" in err and "(budget -50%)" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []

    assert main([*args, "--keep-anyway", "--out", str(tmp_path / "kept")]) == 0
    captured = capsys.readouterr()
    assert "export: WARNING: KEPT ANYWAY BELOW ITS QUALITY BUDGET" in captured.err
    report = json.loads((tmp_path / "kept" / "verification.json").read_text())
    assert report["kept_anyway"] is True and report["passed"] is False and not report["int8"]["within_budget"]
    assert report["warning"].startswith("KEPT ANYWAY BELOW ITS QUALITY BUDGET") and report["int8"]["budget"] == {
        "max_loss_increase": -0.5, "min_token_agreement": 0.25}
    assert json.loads(captured.out)["verification"]["warning"] == report["warning"]
    assert "**WARNING: KEPT ANYWAY" in (tmp_path / "kept" / "README.md").read_text()


def test_heldout_rows_from_a_dataset_feed_the_loss(trained_dirs, tmp_path):
    data = tmp_path / "heldout.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in FACTS[:3]))
    result = export_model(trained_dirs["full"], "onnx", tmp_path / "onnx", heldout_data=data)
    assert result.verification["heldout_source"] == str(data)
    assert result.verification["heldout_texts"] == 3


def test_a_failed_verification_carries_the_numbers_and_leaves_no_export(trained_dirs, tmp_path, monkeypatch):
    # No float computation reorders sums without moving some logit: a zero tolerance must fail.
    monkeypatch.setattr(onnx_export, "LOGITS_ATOL", 0.0)
    with pytest.raises(onnx_export.OnnxExportError) as failure:
        export_model(trained_dirs["full"], "onnx", tmp_path / "onnx.zip")
    report = failure.value.verification
    assert report["passed"] is False and report["fp32"]["max_abs_logit_diff"] > 0
    assert "max |logit difference|" in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_an_unsupported_architecture_is_named(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tinymodel import build_tokenizer

    tokenizer = build_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(TinyforgeError, match="GPT2LMHeadModel"):
        export_model(tmp_path / "gpt2", "onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("options, message", [
    (dict(format="tflite"), "unknown export format 'tflite'"),
    (dict(format="onnx", quantize="int4"), "unknown value 'int4'"),
    (dict(format="hf", quantize="int8"), "applies to ONNX exports"),
    (dict(format="onnx", quantize="q4_k_m"), "applies to GGUF exports"),
    (dict(format="bundle", runtime="torch", quantize="int8"), "needs --runtime onnxruntime"),
    (dict(format="bundle", runtime="llama.cpp", quantize="int8"),
     r"--quantize int8 needs --runtime onnxruntime .*a llama.cpp bundle's GGUF is f16 \(no --quantize\), q8_0 or q4_k_m"),
    (dict(format="bundle", runtime="torch", quantize="q8_0"), "--quantize q8_0 is a GGUF type: it needs --runtime llama.cpp"),
    (dict(format="bundle", runtime="onnxruntime", quantize="q4_k_m"), "--quantize q4_k_m is a GGUF type"),
    (dict(format="bundle", runtime="llamacpp"), "--runtime: unknown runtime 'llamacpp'"),
    (dict(format="onnx", quantize="q8_0"), "applies to GGUF exports .* and llama.cpp bundles"),
    (dict(format="hf", runtime="torch"), "applies to bundles only"),
    (dict(format="onnx", keep_anyway=True), "--keep-anyway applies to quantized exports"),
])
def test_bad_options_are_refused_before_any_work(tiny_model_dir, tmp_path, options, message):
    with pytest.raises(TinyforgeError, match=message):
        export_model(tiny_model_dir, out=tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(TinyforgeError, match="is not a model folder"):
        export_model(tmp_path, "hf", tmp_path.parent / "x")


def test_a_full_disk_removes_the_partial_export(trained_dirs, tmp_path):
    """The CLI in a process whose files may not grow past 64 kB: the ONNX file cannot be written."""
    out = tmp_path / "exports" / "model.zip"
    out.parent.mkdir()

    def limit_file_size():
        # With SIGXFSZ ignored, an oversized write fails with EFBIG, as a full disk fails with ENOSPC.
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    process = subprocess.run(
        [sys.executable, "-m", "tinyforge.cli", "export", "--model", str(trained_dirs["full"]),
         "--format", "onnx", "--out", str(out)],
        preexec_fn=limit_file_size, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert process.returncode == 2, process.stderr[-2000:]
    assert "disk filled up" in process.stderr and "Traceback" not in process.stderr
    assert list(out.parent.iterdir()) == []


def test_the_cli_exports_and_reports(trained_dirs, tmp_path):
    from tinyforge.cli import main

    assert main(["export", "--model", str(trained_dirs["lora"]), "--format", "hf", "--merge",
                 "--out", str(tmp_path / "m.zip")]) == 0
    assert zipfile.is_zipfile(tmp_path / "m.zip")
    assert main(["export", "--model", str(trained_dirs["lora"]), "--format", "tflite", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_smollm2_onnx_export_matches_pytorch_and_int8_stays_close(tmp_path):
    from tinyforge.ml.models import resolve_base_model

    result = export_model(resolve_base_model("smollm2-135m-instruct"), "onnx", tmp_path / "onnx", quantize="int8")
    report = result.verification
    assert report["fp32"]["passed"], report
    assert report["fp32"]["identical_generations"] == report["fp32"]["generations"]
    assert abs(report["int8"]["heldout_loss_change_vs_onnx_fp32"]) < 0.02, report["int8"]
    # Unsigned int8 weights: the same numbers on a CPU without VNNI, where signed ones moved loss 80%.
    assert report["passed"] and report["int8"]["within_budget"], report["int8"]
