"""The llama.cpp runtime in a real browser against the real platform (see conftest.py): a run is
deployed from the Services page on llama.cpp, the page says llama.cpp serves it and how much memory
it holds, and the Playground chats with it, streaming (issue 19's done-when).

The data and the run are set up through the API with a token, as the evaluation journey does; the
run's base is the tiny model with SmolLM2's tokenizer, which llama.cpp's converter takes."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from capabilities import needs_llama_cpp
from e2e.browser import REPO, sign_in
from e2e.conftest import SMOL_TINY_MODEL
from e2e.test_dashboard_journeys import nav
from e2e.test_evals_journey import TOKEN, wait_json

pytestmark = [pytest.mark.e2e, needs_llama_cpp]


def test_a_run_deployed_on_llama_cpp_from_the_services_page_chats_in_the_playground(journey, platform):
    page, shots = journey
    secret = platform.manage("shell", "-c", TOKEN).strip().splitlines()[-1]
    http = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    team = http.get("/api/v1/auth/me/").json()["teams"][0]["id"]
    project = http.post("/api/v1/projects/", json={"team": team, "name": "Quillbox on llama.cpp"}).json()
    dataset = http.post("/api/v1/datasets/", json={"project": project["id"], "name": "FAQ"}).json()
    demo = REPO / "examples" / "data" / "demo_dataset.jsonl"
    version = http.post(f"/api/v1/datasets/{dataset['id']}/upload/",
                        files={"files": (demo.name, demo.read_bytes(), "application/jsonl")}).json()
    wait_json(http, f"/api/v1/dataset-versions/{version['id']}/", lambda v: v["status"] == "ready", "the import")
    run = http.post("/api/v1/runs/", json={"project": project["id"], "name": "quillbox-gguf",
                                           "dataset_version": version["id"], "base_model": SMOL_TINY_MODEL,
                                           "method": "lora", "config": {"preset": "quick", "max_steps": 6}})
    assert run.status_code == 201, run.text
    done = wait_json(http, f"/api/v1/runs/{run.json()['id']}/", lambda r: r["status"] in ("succeeded", "failed"),
                     "the run", 600)
    assert done["status"] == "succeeded", done["error"]

    sign_in(page, "alice")
    page.goto(f"/projects/{project['id']}/services")
    page.get_by_role("button", name="Deploy a run").click()
    form = page.get_by_role("form", name="Deploy a run")
    form.get_by_label("Runtime").select_option("llama.cpp")
    expect(form.get_by_label("GGUF type")).to_have_value("f16")
    shots("deploy-on-llama-cpp")
    form.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_text("ready", exact=True).first).to_be_visible(timeout=300_000)
    card = page.locator(".card", has=page.get_by_text("served by llama.cpp · GGUF f16"))
    expect(card).to_be_visible()
    expect(card.get_by_text("Serving in")).to_have_count(0)  # PyTorch's precision note is not offered
    shots("served-by-llama-cpp")

    nav(page, "Playground").click()
    page.get_by_label("Max tokens").fill("32")  # the tiny model's context is 256 tokens
    page.get_by_label("Message").fill("How long does the Quillbox battery last?")
    page.get_by_role("button", name="Send").click()
    answer = page.locator(".chat-message.assistant .chat-text:not(.muted)").last
    expect(answer).to_have_text(re.compile(r"\S"), timeout=120_000)
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=120_000)  # the stream ended
    shots("playground-llama-cpp")
    nav(page, "Services").click()
    # The inference service's figures (its memory, the chat) reach the deployment within seconds.
    card = page.locator(".card", has=page.get_by_text("served by llama.cpp · GGUF f16"))
    expect(card.get_by_text("Own memory", exact=True).locator("xpath=..")).to_contain_text(re.compile(r"\d"),
                                                                                           timeout=60_000)
    expect(card.get_by_text("Requests", exact=True).locator("xpath=..")).to_contain_text("1", timeout=60_000)
    shots("services-after-chat")
    deployment = http.get("/api/v1/deployments/", params={"project": project["id"]}).json()["results"][0]
    assert deployment["runtime"] == "llama.cpp" and deployment["serving_precision"] == "f16"
