"""Fixtures for the inference service: a LoRA adapter of the tiny model, and real uvicorn servers."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time

import httpx
import pytest

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_lora_adapter(base_dir, out_dir, *, seed: int, targets=ALL_PROJECTIONS, rank: int = 4):
    """A PEFT LoRA adapter of `base_dir` with random, non-zero B (so it changes the outputs), saved
    the way training saves one: adapter files, tokenizer with its chat template, base path."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # PEFT's random B is small: make the adapter's effect unmistakable
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.mul_(20)
    peft_model.save_pretrained(str(out_dir))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(out_dir))
    config_file = out_dir / "adapter_config.json"
    values = json.loads(config_file.read_text())
    values["base_model_name_or_path"] = str(base_dir)
    config_file.write_text(json.dumps(values))
    return out_dir


@pytest.fixture(scope="session")
def lora_adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("lora-a"), seed=1)


@pytest.fixture(scope="session")
def second_lora_adapter_dir(tiny_model_dir, tmp_path_factory):
    return make_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("lora-b"), seed=2, targets=["q_proj", "v_proj"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, app, base_url: str):
        self.app = app
        self.base_url = base_url
        self.service = app.state.service

    def metric(self, name: str, **labels) -> float:
        value = self.service.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@contextlib.contextmanager
def running_server(registry, authenticator=None, settings=None, *, wait_ready: bool = True, answer_log=None):
    """A real uvicorn server with the inference app, in a thread of this process, on a free port."""
    import uvicorn

    from tinyforge.serving.app import ServerSettings, create_app
    from tinyforge.serving.auth import OpenAccess

    app = create_app(registry, authenticator or OpenAccess(), settings or ServerSettings(), answer_log)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=5)
            if not wait_ready or response.status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not get ready: {response.text if 'response' in dir() else 'no answer'}")
        time.sleep(0.1)
    try:
        yield RunningServer(app, base_url)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def copy_model(source, target):
    shutil.copytree(source, target)
    return target
