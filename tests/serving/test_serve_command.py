"""`tinyforge serve` as a user runs it: a real process, a key from the environment, the openai client."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

from serving.conftest import free_port
from tinyforge.cli import main


def start(args, env):
    return subprocess.Popen([sys.executable, "-m", "tinyforge.cli", "serve", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(process):
    process.terminate()
    try:
        return process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0]


def test_it_serves_a_model_folder_with_the_key_from_the_environment(tiny_model_dir):
    port, metrics_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "TINYFORGE_METRICS_TOKEN"}, "TINYFORGE_API_KEY": "k-123",
           "TINYFORGE_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"}
    process = start(["--model", f"tiny={tiny_model_dir}", "--port", str(port), "--threads", "1"], env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, stop(process)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k-123", max_retries=0)
        assert [m.id for m in client.models.list()] == ["tiny"]
        chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=4, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0).models.list()
        # The metrics on the internal address only; the public port has none without a metrics token.
        assert 'endpoint="/v1/chat/completions"' in httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer k-123"}).status_code == 404
    finally:
        output = stop(process)
    assert "NO API KEY" not in output


def test_without_a_key_it_says_so_loudly(tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "TINYFORGE_API_KEY"}
    process = start(["--model", str(tiny_model_dir), "--port", str(free_port())], env)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "serving" in line:
                break
    finally:
        stop(process)
    assert any("NO API KEY" in line and "TINYFORGE_API_KEY" in line for line in lines), lines


@pytest.mark.parametrize("args, says", [
    (["--model", "/no/such/folder"], "is not a folder"),
    (["--model", "x=/tmp"], "is not a model folder"),
    (["--model", "a={model}", "--model", "a={model}"], "used twice"),
    (["--model", "{model}", "--max-batch", "0"], "--max-batch must be at least 1"),
    (["--model", "{model}", "--api-key-env", "SURELY_UNSET_VARIABLE"], "SURELY_UNSET_VARIABLE is not set"),
    (["--model", "{model}", "--metrics-address", "9101"], "--metrics-address '9101' (TINYFORGE_METRICS_ADDRESS): expected HOST:PORT"),
])
def test_bad_options_are_clear_errors_without_a_traceback(tiny_model_dir, capsys, args, says):
    assert main(["serve", *[a.format(model=tiny_model_dir) for a in args]]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
