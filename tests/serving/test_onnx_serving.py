"""An ONNX export is served by ONNX Runtime behind the same API, and answers as PyTorch does."""

from __future__ import annotations

import openai

from serving.conftest import running_server
from tinyforge.exports import export_model
from tinyforge.serving.app import ServerSettings
from tinyforge.serving.pool import RuntimeOptions
from tinyforge.serving.registry import FolderRegistry


def test_an_onnx_export_serves_the_same_greedy_answers_as_pytorch(tiny_model_dir, tmp_path):
    onnx_dir = export_model(tiny_model_dir, "onnx", tmp_path / "onnx").path
    float32 = ServerSettings(runtime=RuntimeOptions(dtype="float32"))  # the export is float32
    with running_server(FolderRegistry({"torch": tiny_model_dir, "onnx": onnx_dir}), settings=float32) as server:
        models = {m.id: m.model_extra["tinyforge"] for m in
                  openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none").models.list()}
        assert models["onnx"]["runtime"] == "onnxruntime" and models["torch"]["runtime"] == "torch"
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        for question in ("What is the capital of Zorbland?", "Reverse the word: hello"):
            messages = [{"role": "user", "content": question}]
            answers = [client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0)
                       .choices[0].message.content for name in ("torch", "onnx")]
            assert answers[0] == answers[1]
        streamed = list(client.chat.completions.create(model="onnx", messages=messages, max_tokens=5, stream=True))
        assert streamed[-1].choices[0].finish_reason in ("stop", "length")
