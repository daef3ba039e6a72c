"""The evaluation journey in a real browser against the real platform (see conftest.py): the base
model against a trained run on a held-out eval set with a pairwise judge (the platform's own
deployment), the per-question table, and the gate refusing a deliberately poor run until overridden.

The data, the runs and the judge's deployment are set up through the API with a token: the other
journey walks those pages; this one walks the evaluation pages."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from e2e.browser import REPO, sign_in
from e2e.test_dashboard_journeys import nav
from tinymodel import TINY_MODEL

pytestmark = pytest.mark.e2e

HELD_OUT = """{"input": "How long does the Quillbox battery last?", "reference": "The Quillbox battery lasts about ten hours.", "must_include": ["ten hours"]}
{"input": "Can I write on the Quillbox with any pen?", "reference": "Use the Quillbox stylus.", "must_include": ["stylus"]}
{"input": "How do I reset the Quillbox?", "reference": "Hold the power button for ten seconds.", "must_include": ["power button"]}"""

TOKEN = """
from tinyforge.accounts.models import ApiToken, Team
from django.contrib.auth import get_user_model
secret, prefix, token_hash = ApiToken.new_secret()
ApiToken.all_teams.create(user=get_user_model().objects.get(username="alice"), team=Team.all_teams.get(slug="acme"),
                          name="evals journey", prefix=prefix, token_hash=token_hash, scopes=["read", "write", "inference"])
print(secret)
"""


def wait_json(http: httpx.Client, path: str, done, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(path).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {body}"
        time.sleep(1)


def test_base_against_a_run_with_a_pairwise_judge_and_the_gate_holding_back_a_poor_run(journey, platform):
    page, shots = journey
    secret = platform.manage("shell", "-c", TOKEN).strip().splitlines()[-1]
    http = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    team = http.get("/api/v1/auth/me/").json()["teams"][0]["id"]
    project = http.post("/api/v1/projects/", json={"team": team, "name": "Quillbox evals"}).json()
    dataset = http.post("/api/v1/datasets/", json={"project": project["id"], "name": "FAQ"}).json()
    demo = REPO / "examples" / "data" / "demo_dataset.jsonl"
    version = http.post(f"/api/v1/datasets/{dataset['id']}/upload/",
                        files={"files": (demo.name, demo.read_bytes(), "application/jsonl")}).json()
    wait_json(http, f"/api/v1/dataset-versions/{version['id']}/", lambda v: v["status"] == "ready", "the import")

    def start_run(name: str, **config):
        response = http.post("/api/v1/runs/", json={"project": project["id"], "name": name, "dataset_version": version["id"],
                                                     "base_model": TINY_MODEL, "method": "lora",
                                                     "config": {"preset": "quick", **config}})
        assert response.status_code == 201, response.text
        return response.json()

    good = start_run("quillbox-lora", max_steps=12)
    poor = start_run("one-step", max_steps=1, learning_rate=1e-7)
    for run in (good, poor):
        wait_json(http, f"/api/v1/runs/{run['id']}/", lambda r: r["status"] in ("succeeded", "failed"), run["name"], 600)
    judge = http.post("/api/v1/deployments/", json={"run": good["id"], "name": "quillbox-judge"}).json()
    served = wait_json(http, f"/api/v1/deployments/{judge['id']}/", lambda d: d["status"] in ("ready", "failed"), "the judge", 300)
    assert served["status"] == "ready", served["error"]

    sign_in(page, "alice")
    page.goto(f"/projects/{project['id']}/evals")
    expect(page.get_by_role("heading", name="Evaluations", level=1)).to_be_visible()
    new_set = page.get_by_role("form", name="New eval set")
    new_set.get_by_label("Name").fill("Held-out facts")
    new_set.get_by_label("Rows", exact=True).fill(HELD_OUT)
    new_set.get_by_role("button", name="Create eval set").click()
    expect(page.get_by_role("form", name="Gate").get_by_label("Eval set")).to_contain_text("Held-out facts")

    evaluation = page.get_by_role("form", name="New evaluation")
    evaluation.get_by_label("Target 1").select_option(f"base:{good['id']}")
    evaluation.get_by_label("Target 2").select_option(f"run:{good['id']}")
    evaluation.get_by_label("Judge", exact=True).select_option(str(judge["id"]))
    evaluation.get_by_label("Judge mode").select_option("pairwise")
    shots("new-evaluation")
    evaluation.get_by_role("button", name="Evaluate").click()
    evaluation.get_by_role("link", name="Open the evaluation").click()
    expect(page.locator(".page-header .badge")).to_have_text("succeeded", timeout=300_000)
    expect(page.get_by_role("img", name=re.compile("Mean score per target"))).to_be_visible()
    expect(page.get_by_text(re.compile("quillbox-lora against base:"))).to_be_visible()
    table = page.get_by_role("table", name="Per-question results")
    expect(table.get_by_role("row")).to_have_count(4)
    expect(table).to_contain_text("How long does the Quillbox battery last?")
    shots("evaluation")
    page.get_by_label(re.compile("Regressions only")).check()
    expect(page.get_by_text(re.compile(r"^\d+ rows$"))).to_be_visible()
    shots("evaluation-regressions-only")

    nav(page, "Evaluate").click()
    gate = page.get_by_role("form", name="Gate")
    gate.get_by_label("Decided by").select_option("must_include")
    gate.get_by_label("Threshold").fill("0.9")
    gate.get_by_role("button", name="Save the gate").click()
    expect(page.get_by_text(re.compile("must_include on Held-out facts reaches 0.9"))).to_be_visible()
    gate_id = http.get("/api/v1/gates/", params={"project": project["id"]}).json()["results"][0]["id"]
    assert http.post(f"/api/v1/gates/{gate_id}/check/", json={"run": poor["id"]}).status_code == 201
    shots("gate")

    page.goto(f"/projects/{project['id']}/runs/{poor['id']}")
    note = page.get_by_test_id("gate-status")
    expect(note).to_contain_text("Fails the gate", timeout=300_000)
    expect(note).to_contain_text("below the threshold 0.900")
    shots("run-fails-the-gate")
    page.get_by_role("link", name="Deploy").click()
    form = page.get_by_role("form", name="Deploy a run")
    expect(form.get_by_test_id("gate-status")).to_contain_text("Fails the gate")
    deploy = form.get_by_role("button", name="Deploy", exact=True)
    expect(deploy).to_be_disabled()
    shots("deploy-refused")
    form.get_by_label(re.compile("Deploy anyway")).check()
    form.get_by_label("Why").fill("demo for the board")
    deploy.click()
    expect(page.get_by_text("one-step", exact=False).first).to_be_visible()
    deployments = http.get("/api/v1/deployments/", params={"project": project["id"]}).json()["results"]
    assert {d["name"] for d in deployments} == {"quillbox-judge", "one-step"}
    audit = http.get("/api/v1/audit-events/", params={"action": "gate_overridden"}).json()["results"]
    assert audit and audit[0]["changes"]["reason"] == "demo for the board"
    shots("deployed-with-override")
