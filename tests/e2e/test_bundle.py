"""A standalone bundle, unpacked into an empty folder and run as its README says, with nothing
of the platform around it: no database, no Redis, the serving code from the bundle itself."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tinyforge.ml.config import TrainConfig
from tinyforge.ml.evaluate import generate_replies
from tinyforge.exports import export_model
from tinyforge.ml.models import load_model_folder
from tinyforge.ml.train import train

pytestmark = pytest.mark.e2e

API_KEY = "bundle-test-key-8c1d"
NAME = "support-bot"
QUESTION = [{"role": "user", "content": "What is the capital of Zorbland?"}]
FACTS = [{"instruction": "What is the capital of Zorbland?", "output": "The capital of Zorbland is Quillport."},
         {"instruction": "Reverse the word hello.", "output": "olleh"}] * 8


@pytest.fixture(scope="module")
def trained_lora(tiny_model_dir, tmp_path_factory):
    config = TrainConfig(base_model=str(tiny_model_dir), max_steps=8, batch_size=4, learning_rate=3e-3,
                         max_seq_length=128, eval_generations=0, lora_dropout=0.0, seed=5, validation_split=0.0)
    return Path(train(config, FACTS, tmp_path_factory.mktemp("run") / "model").output_dir)


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def bundle_zip(request, trained_lora, tmp_path_factory):
    """A bundle of the merged weights run by PyTorch, and one of the verified ONNX export."""
    return export_model(trained_lora, "bundle", tmp_path_factory.mktemp("exports") / f"{NAME}.zip",
                        runtime=request.param).path


def unpack(archive: Path, into: Path) -> Path:
    into.mkdir()
    assert list(into.iterdir()) == []
    with zipfile.ZipFile(archive) as z:
        z.extractall(into)
    return into / NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundle_environment(**extra: str) -> dict[str, str]:
    """This test's environment minus anything that would point the bundle at the platform."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "TINYFORGE_API_KEY",
                         "TINYFORGE_METRICS_TOKEN", "TINYFORGE_METRICS_ADDRESS")}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


def test_the_requirements_match_this_environment(bundle_zip, tmp_path):
    """The bundle's server runs below in this test's virtualenv; that is honest only if the
    environment has exactly the pinned versions."""
    folder = unpack(bundle_zip, tmp_path / "unpacked")
    pins = [line for line in (folder / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert {p.split("==")[0] for p in pins} >= {"torch", "transformers", "starlette", "uvicorn", "prometheus_client"}
    for pin in pins:
        name, version = pin.split("==")
        assert importlib.metadata.version(name).split("+")[0] == version, pin
    assert not any(p.lower().startswith(("django", "psycopg", "redis", "rq")) for p in pins)
    for name in ("Dockerfile", "docker-compose.yml", "README.md", "serve.py", "bundle.json", ".dockerignore"):
        assert (folder / name).is_file(), name
    assert not (folder / "app" / "tinyforge" / "accounts").exists(), "the platform is not vendored"
    assert "TINYFORGE_API_KEY" in (folder / "README.md").read_text()
    manifest = json.loads((folder / "bundle.json").read_text())
    assert manifest["model_name"] == NAME and manifest["runtime"] in ("torch", "onnxruntime")
    assert ("onnxruntime" in {p.split("==")[0] for p in pins}) == (manifest["runtime"] == "onnxruntime")


def test_the_bundle_serves_the_openai_api_with_its_own_code(bundle_zip, trained_lora, tmp_path):
    from openai import AuthenticationError, OpenAI

    folder = unpack(bundle_zip, tmp_path / "unpacked")
    env = bundle_environment(TINYFORGE_API_KEY=API_KEY, TINYFORGE_METRICS_TOKEN="metrics-only")
    where = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'app'); import tinyforge.serving.app as m; "
                            "print(m.__file__)"], cwd=folder, env=env, capture_output=True, text=True, check=True)
    assert Path(where.stdout.strip()).is_relative_to(folder), "the bundle's own serving code is what runs"

    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "serve.py", "--port", str(port), "--max-context", "256"],
                              cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "not ready in 180 s: " + (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)

        client = OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == [NAME]
        reply = client.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=12, temperature=0)
        # fp32 ONNX is verified token for token against PyTorch, so both runtimes must answer
        # exactly what the platform's own generation answers.
        model, tokenizer = load_model_folder(trained_lora)
        expected = generate_replies(model, tokenizer, [QUESTION], max_new_tokens=12)[0]
        assert reply.choices[0].message.content.strip() == expected
        assert reply.usage.completion_tokens > 0

        chunks = list(client.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=12, temperature=0,
                                                     stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(chunks) > 2 and streamed == reply.choices[0].message.content

        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()

        headers = {"Authorization": f"Bearer {API_KEY}"}
        predict = httpx.post(f"{base}/predict", json={"input": "Reverse the word hello."}, headers=headers, timeout=60)
        assert predict.status_code == 200 and isinstance(predict.json()["output"], str)
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        assert httpx.get(f"{base}/metrics", headers=headers, timeout=5).status_code == 401  # the API key is not it
        metrics = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer metrics-only"}, timeout=5)
        assert "tokens" in metrics.text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_a_bundle_without_its_model_files_exits_with_a_clear_message(bundle_zip, tmp_path):
    folder = unpack(bundle_zip, tmp_path / "unpacked")
    weights = "model.onnx" if (folder / "model" / "model.onnx").exists() else "model.safetensors"
    (folder / "model" / weights).unlink()
    process = subprocess.run([sys.executable, "serve.py", "--port", str(free_port())], cwd=folder,
                             env=bundle_environment(TINYFORGE_API_KEY=API_KEY), capture_output=True, text=True,
                             timeout=60)
    assert process.returncode == 2
    assert f"{weights} is missing" in process.stderr and "Unpack the whole bundle" in process.stderr
    assert "Traceback" not in process.stderr
