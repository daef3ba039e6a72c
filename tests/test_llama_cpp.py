"""tinyforge.llama_cpp: finding llama.cpp's programs and converter, and running llama-server."""

from __future__ import annotations

import pytest

from capabilities import needs_llama_cpp
from tinyforge.errors import TinyforgeError
from tinyforge.exports import export_model
from tinyforge.llama_cpp import LlamaCppMissing, LlamaServer, find_tool


def test_a_gguf_export_without_llama_cpp_says_what_is_missing_and_how_to_build_it(tmp_path, monkeypatch,
                                                                                   tiny_model_dir):
    monkeypatch.setenv("TINYFORGE_LLAMA_CPP_DIR", str(tmp_path / "not-built"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LlamaCppMissing, match=r"converter \(convert_hf_to_gguf.py\) is not installed .*"
                                              r"`tinyforge llama-cpp install`"):
        export_model(tiny_model_dir, "gguf", tmp_path / "exports" / "model.zip")
    assert not (tmp_path / "exports").exists() or list((tmp_path / "exports").iterdir()) == []
    with pytest.raises(LlamaCppMissing, match="`llama-server` is not installed"):
        find_tool("llama-server")


@needs_llama_cpp
def test_a_corrupt_gguf_fails_to_start_llama_server_with_its_log(tmp_path):
    broken = tmp_path / "model.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)  # the magic, then nothing that makes a model
    with pytest.raises(TinyforgeError, match=r"llama-server could not load model.gguf \(exit status \d+\); "
                                             r"its log ends:\n(.|\n)*gguf"):
        LlamaServer(broken, ready_timeout=120).start()
