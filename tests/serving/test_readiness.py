"""GET /readyz, what Kubernetes' readinessProbe and load balancers ask: not ready while the models
it must serve load, ready with none, and a failed deployment does not take the others down."""

from __future__ import annotations

import threading
import time

import httpx
import openai

from serving.conftest import running_server
from tinyforge.serving.registry import FolderRegistry, ModelRegistry, ModelSpec

USER = [{"role": "user", "content": "Hi"}]


class PlatformLikeRegistry(ModelRegistry):
    """Models that come and go, as the platform's deployments do (one that fails must not hold
    the others back), with a gate that keeps each model in "loading" until the test opens it and
    an outage switch for the registry itself."""

    refresh_seconds = 0.1

    def __init__(self, models):
        self.models = dict(models)
        self.gate = threading.Event()
        self.gate.set()
        self.down = False

    def list_models(self):
        if self.down:
            raise ConnectionError("the database is unreachable")
        return [ModelSpec(name=name, path=path) for name, path in self.models.items()]

    def model_state_changed(self, name, state, detail=""):
        if state == "loading":  # called by the loading thread before it loads the files
            assert self.gate.wait(60), "the test never opened the gate"


def readyz(server) -> httpx.Response:
    return httpx.get(f"{server.base_url}/readyz", timeout=5)


def wait_for(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def readyz_once(server, condition, seconds=60) -> httpx.Response:
    """The first /readyz answer whose body meets `condition`."""
    deadline = time.monotonic() + seconds
    while not condition((response := readyz(server)).json()):
        assert time.monotonic() < deadline, f"timed out; /readyz last said {response.text}"
        time.sleep(0.05)
    return response


def test_it_is_not_ready_while_the_models_it_must_serve_load(tiny_model_dir, lora_adapter_dir):
    registry = PlatformLikeRegistry({"tiny": tiny_model_dir})
    registry.gate.clear()
    with running_server(registry, wait_ready=False) as server:
        loading = readyz_once(server, lambda body: body["loading"])
        assert loading.status_code == 503
        body = loading.json()
        assert body["ready"] is False and body["loading"] == ["tiny"] and body["models"]["tiny"]["state"] == "loading"
        assert "tiny" in body["why_not_ready"][0]
        registry.gate.set()
        ready = readyz_once(server, lambda body: body["ready"]).json()
        assert ready["ready"] is True and ready["loading"] == [] and ready["models"]["tiny"]["state"] == "ready"

        # A deployment added later loads while the service stays in rotation: every replica
        # polls the same registry, and the models already serving must keep serving.
        registry.gate.clear()
        registry.models["late"] = lora_adapter_dir
        meanwhile = readyz_once(server, lambda body: body["loading"])
        assert meanwhile.status_code == 200 and meanwhile.json()["loading"] == ["late"]
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0)
        assert client.chat.completions.create(model="tiny", messages=USER, max_tokens=2).choices
        registry.gate.set()
        wait_for(lambda: server.service.pool.get("late").state == "ready")


def test_an_empty_platform_is_ready_once_its_registry_answers():
    registry = PlatformLikeRegistry({})
    registry.down = True
    with running_server(registry, wait_ready=False) as server:
        unreachable = readyz_once(server, lambda body: "registry_error" in body)
        assert unreachable.status_code == 503
        assert "the database is unreachable" in unreachable.json()["why_not_ready"][0]
        registry.down = False
        ready = readyz_once(server, lambda body: body["ready"]).json()
        assert ready == {"ready": True, "loading": [], "failed": [], "models": {}}
        # Once it served, a registry outage keeps the models it has (and says so).
        registry.down = True
        outage = readyz_once(server, lambda body: "registry_error" in body)
        assert outage.status_code == 200


def test_a_failed_deployment_is_listed_but_the_others_keep_the_service_ready(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with running_server(PlatformLikeRegistry({"tiny": tiny_model_dir, "broken": broken})) as server:
        response = readyz(server)
        assert response.status_code == 200
        body = response.json()
        assert body["failed"] == ["broken"] and body["loading"] == []
        assert "has no model weights" in body["models"]["broken"]["error"]
        assert body["models"]["tiny"]["state"] == "ready"


def test_a_server_of_fixed_folders_is_not_ready_when_one_fails(tiny_model_dir, tmp_path):
    """`tinyforge serve` and a bundle exist to serve every folder they were given."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with running_server(FolderRegistry({"tiny": tiny_model_dir, "broken": broken}), wait_ready=False) as server:
        response = readyz_once(server, lambda body: any("broken failed" in why
                                                        for why in body.get("why_not_ready", [])))
        assert response.status_code == 503
        body = response.json()
        assert body["failed"] == ["broken"]
        assert body["models"]["tiny"]["state"] == "ready"
