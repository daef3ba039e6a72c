"""Preference tuning from real use (issue 20), in a real browser and through the API, against the
real platform (see conftest.py): two deployments of an earlier run answer the same prompts, people
pick the better answer and write what it should have said, the feedback becomes a dataset version
of preference pairs, DPO trains from the earlier run, the run page shows its preference accuracy
on held-out pairs, and the result is deployed and answers.

Everything is the tiny Llama, a few steps each, so the two journeys take minutes on 2 cores. The
"users" judge like a person reading the Quillbox FAQ would: the answer closer to the FAQ's answer
wins (a tie when both are equally close), and the correction is the FAQ's answer. Most of the
few dozen prompts go through the public API with an application's inference token, as a team's
own app sends its users' feedback; a few are judged in the Playground's compare mode.

The tiny model's answers are all noise, so which of two is closer to the FAQ is a coin toss that
no model learns (held-out accuracy on such picks alone stays near 0.5, measured); the corrections
(fluent FAQ answers over noise) are learned at once (1.0 on held-out pairs). The app's users pick
a winner for every other prompt and correct every answer, so most held-out pairs are corrections
and the run's held-out accuracy is well above chance whichever pairs the split holds out."""

from __future__ import annotations

import difflib
import json
import re

import httpx
import openai
import pytest
from playwright.sync_api import expect

from e2e.browser import REPO, sign_in
from e2e.test_evals_journey import wait_json
from tinymodel import TINY_MODEL

pytestmark = pytest.mark.e2e

DEMO = REPO / "examples" / "data" / "demo_dataset.jsonl"

TOKEN = """
from tinyforge.accounts.models import ApiToken, Team
from django.contrib.auth import get_user_model
secret, prefix, token_hash = ApiToken.new_secret()
ApiToken.all_teams.create(user=get_user_model().objects.get(username="alice"), team=Team.all_teams.get(slug="acme"),
                          name=%r, prefix=prefix, token_hash=token_hash, scopes=%r)
print(secret)
"""

# The DPO run: enough steps on the tiny model for its implicit reward to rank held-out pairs.
DPO_CONFIG = {"max_steps": 16, "learning_rate": 1e-3, "lr_schedule": "constant", "validation_split": 0.25,
              "eval_steps": 4, "eval_generations": 0}


def faq() -> list[tuple[str, str]]:
    """The demo dataset's questions with the FAQ's answer, each question once."""
    seen, pairs = set(), []
    for line in DEMO.read_text().splitlines():
        row = json.loads(line)
        if "instruction" in row and row["instruction"] not in seen:
            seen.add(row["instruction"])
            pairs.append((row["instruction"], row["output"]))
    return pairs


def closeness(answer: str, reference: str) -> float:
    return difflib.SequenceMatcher(None, answer.lower(), reference.lower()).ratio()


def better(left: str, right: str, reference: str) -> str:
    """'left', 'right' or 'tie': which answer a reader of the FAQ prefers."""
    a, b = closeness(left, reference), closeness(right, reference)
    return "tie" if left.strip() == right.strip() or a == b else "left" if a > b else "right"


def token(platform, name: str, scopes: list[str]) -> str:
    return platform.manage("shell", "-c", TOKEN % (name, scopes)).strip().splitlines()[-1]


def earlier_run_and_two_deployments(http: httpx.Client, prefix: str) -> dict:
    """A project with the FAQ, a short supervised run on it (the earlier run), and two deployments
    of it to compare: its final weights and its checkpoint halfway."""
    team = http.get("/api/v1/auth/me/").json()["teams"][0]["id"]
    project = http.post("/api/v1/projects/", json={"team": team, "name": f"{prefix} Quillbox"}).json()
    dataset = http.post("/api/v1/datasets/", json={"project": project["id"], "name": "FAQ"}).json()
    version = http.post(f"/api/v1/datasets/{dataset['id']}/upload/",
                        files={"files": (DEMO.name, DEMO.read_bytes(), "application/jsonl")}).json()
    wait_json(http, f"/api/v1/dataset-versions/{version['id']}/", lambda v: v["status"] == "ready", "the FAQ's import")
    run = http.post("/api/v1/runs/", json={
        "project": project["id"], "name": f"{prefix}-sft", "dataset_version": version["id"], "base_model": TINY_MODEL,
        "method": "lora", "config": {"preset": "quick", "max_steps": 12, "save_steps": 6, "eval_steps": 6,
                                     "eval_generations": 0}})
    assert run.status_code == 201, run.text
    run = wait_json(http, f"/api/v1/runs/{run.json()['id']}/", lambda r: r["status"] in ("succeeded", "failed"),
                    "the earlier run", 600)
    assert run["status"] == "succeeded", run["error"]
    checkpoints = {c["step"]: c["id"] for c in http.get("/api/v1/checkpoints/", params={"run": run["id"]}).json()["results"]}
    assert {6, 12} <= set(checkpoints), checkpoints
    deployments = {}
    for name, step in ((f"{prefix}-v1", 12), (f"{prefix}-early", 6)):
        made = http.post("/api/v1/deployments/", json={"run": run["id"], "checkpoint": checkpoints[step], "name": name})
        assert made.status_code == 201, made.text
        deployments[name] = made.json()
    for name, deployment in deployments.items():
        served = wait_json(http, f"/api/v1/deployments/{deployment['id']}/", lambda d: d["status"] in ("ready", "failed"),
                           name, 300)
        assert served["status"] == "ready", served["error"]
    preferences = http.post("/api/v1/datasets/", json={"project": project["id"], "name": "Preferences"}).json()
    return {"project": project, "run": run, "preferences": preferences, "v1": deployments[f"{prefix}-v1"],
            "early": deployments[f"{prefix}-early"]}


def judge_through_the_api(platform, left: dict, right: dict, questions: list[tuple[str, str]]) -> dict:
    """An application asks both deployments each question with its inference token and sends its
    users' feedback for the ids it got: the better answer (every other question), and a correction
    of the left one."""
    secret = token(platform, f"support app {left['name']}", ["inference"])
    client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=secret, max_retries=0)
    app = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    counts = {"choices": 0, "ties": 0, "corrections": 0}
    for number, (question, reference) in enumerate(questions):
        messages = [{"role": "user", "content": question}]
        a, b = (client.chat.completions.create(model=d["name"], messages=messages, max_tokens=24, temperature=0.8)
                for d in (left, right))
        a_text, b_text = a.choices[0].message.content, b.choices[0].message.content
        if number % 2 == 0:
            pick = better(a_text, b_text, reference)
            response = app.post("/api/v1/feedback/", json={
                "completion": a.id, "compared_with": b.id, "preferred": {"left": a.id, "right": b.id, "tie": "tie"}[pick]})
            assert response.status_code == 201, response.text
            counts["ties" if pick == "tie" else "choices"] += 1
        if a_text.strip() != reference:
            response = app.post("/api/v1/feedback/", json={"completion": a.id, "correction": reference})
            assert response.status_code == 201, response.text
            counts["corrections"] += 1
    return counts


def held_out_accuracy(http: httpx.Client, run_id: int) -> list[float]:
    points = http.get(f"/api/v1/runs/{run_id}/metrics/", params={"name": "eval_preference_accuracy"}).json()["results"]
    return [p["value"] for p in points]


def test_feedback_in_the_playground_becomes_a_dpo_run_that_is_deployed(journey, platform):
    page, shots = journey
    http = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {token(platform, 'journey', ['read', 'write'])}"},
                        timeout=60)
    world = earlier_run_and_two_deployments(http, "browser")
    project, v1, early = world["project"], world["v1"], world["early"]
    questions = faq()

    # A few prompts in the Playground's compare mode: the two deployments side by side.
    sign_in(page, "alice")
    page.goto(f"/playground?deployment={v1['id']}")
    page.get_by_label("Max tokens").fill("24")
    page.get_by_role("group", name="Mode").get_by_role("button", name="Compare").click()
    compare = page.get_by_role("form", name="Compare two answers")
    compare.get_by_label("Left").select_option(str(v1["id"]))
    compare.get_by_label("Right").select_option(str(early["id"]))
    in_browser = questions[:4]
    for number, (question, reference) in enumerate(in_browser, start=1):
        compare.get_by_label("Prompt").fill(question)
        compare.get_by_role("button", name="Ask both").click()
        expect(page.get_by_role("button", name="Left is better")).to_be_enabled(timeout=60_000)
        left, right = (page.get_by_role("region", name=f"{side} answer") for side in ("Left", "Right"))
        texts = [side.locator(".chat-text").inner_text() for side in (left, right)]
        left.get_by_role("button", name="Edit").click()
        left.get_by_label("What it should have said").fill(reference)
        if number == 1:
            shots("compare-and-correct")
        left.get_by_role("button", name="Save correction").click()
        expect(left.get_by_text("Correction saved.")).to_be_visible()
        pick = better(*texts, reference)
        page.get_by_role("button", name={"left": "Left is better", "right": "Right is better", "tie": "Tie"}[pick]).click()
        expect(compare.get_by_role("status")).to_have_text(f"{number} compared so far")
    shots("compared")

    # The rest come from the team's support app through the public feedback API.
    counts = judge_through_the_api(platform, v1, early, questions[len(in_browser):len(in_browser) + 30])
    assert counts["choices"] >= 5 and counts["corrections"] >= 25, counts

    # The feedback on the deployment becomes a dataset version of preference pairs.
    page.reload()
    page.get_by_text("Feedback to data").click()
    to_data = page.get_by_role("form", name="Make a dataset version from feedback")
    pairs = counts["choices"] + counts["corrections"] + len(in_browser)  # each browser prompt: a correction...
    expect(to_data.get_by_role("status").first).to_contain_text("pieces of feedback on this deployment's answers")
    rows = to_data.get_by_label("Rows")
    expect(rows).to_contain_text(re.compile(r"Preference pairs \(DPO, ORPO\): picks and corrections \((\d+)\)"))
    offered = int(re.search(r"picks and corrections \((\d+)\)", rows.inner_text()).group(1))
    assert pairs <= offered <= pairs + len(in_browser), (offered, counts)  # ...and a pick unless it was a tie
    rows.select_option("pairs")
    to_data.get_by_label("Dataset").select_option(label="Preferences")
    shots("feedback-to-data")
    to_data.get_by_role("button", name="Make dataset version").click()
    expect(to_data.get_by_text("Version 1 is importing.")).to_be_visible()
    to_data.get_by_role("link", name="Open the dataset").click()
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page.locator("h1 .badge")).to_have_text("ready", timeout=120_000)
    preview = page.locator("section").filter(has=page.get_by_role("heading", name="Rows as the model sees them"))
    preview.get_by_label("Template of").select_option(TINY_MODEL)
    expect(preview.get_by_label("Chosen answer of row 1")).to_be_visible(timeout=60_000)
    expect(preview.get_by_label("Rejected answer of row 1")).to_be_visible()
    shots("preference-pairs")

    # DPO from the earlier run, on the new version.
    page.get_by_role("link", name="Train on this version").click()
    expect(page.get_by_role("heading", name="New training run")).to_be_visible()
    page.get_by_label("Run name").fill("quillbox-dpo")
    page.get_by_label("Base model").select_option("custom")
    page.get_by_label("Model id").fill(f"run:{world['run']['id']}")
    # The preset's radio is drawn by its label (a segmented control): click what a person sees.
    page.get_by_role("radiogroup", name="Preset").get_by_text("DPO", exact=True).click()
    expect(page.get_by_role("radio", name="DPO", exact=True)).to_be_checked()
    page.get_by_text("Advanced hyperparameters").click()
    expect(page.get_by_label("Objective")).to_have_value("dpo")
    for name, value in DPO_CONFIG.items():
        field = page.locator(f"[name={name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(str(value))
        else:
            field.fill(str(value))
    expect(page.get_by_test_id("run-estimate")).to_contain_text("16 steps", timeout=60_000)
    shots("new-dpo-run")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("heading", name=re.compile("quillbox-dpo"))).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text(re.compile("succeeded|failed"), timeout=600_000)
    run_id = int(re.search(r"/runs/(\d+)", page.url).group(1))
    run = http.get(f"/api/v1/runs/{run_id}/").json()
    assert run["status"] == "succeeded", run["error"]
    assert run["base_model"] == f"run:{world['run']['id']}"

    # The run page: rewards and preference accuracy beside the loss, held-out pairs above chance.
    accuracy = page.get_by_role("figure", name="Preference accuracy")
    expect(accuracy).to_contain_text(re.compile(r"held-out pairs [\d.]+ at step 16"))
    expect(page.get_by_role("figure", name="Rewards")).to_contain_text("held-out margin")
    for chart in ("Rewards", "Preference accuracy"):
        expect(page.get_by_role("figure", name=chart).locator(".recharts-line-curve").first).to_be_visible()
    stat = page.locator(".stat", has_text="Held-out preference accuracy").locator(".stat-value")
    shown = float(stat.inner_text())
    assert shown == pytest.approx(held_out_accuracy(http, run_id)[-1], abs=1e-3)
    assert shown > 0.5, f"held-out preference accuracy {shown} is not above chance"
    shots("dpo-run")

    # Deployed, and it answers in the Playground.
    page.get_by_role("link", name="Deploy").click()
    form = page.get_by_role("form", name="Deploy a run")
    expect(form.get_by_label("Run", exact=True)).to_have_value(str(run_id))
    expect(form.get_by_label("Model name")).to_have_value("quillbox-dpo")
    form.get_by_role("button", name="Deploy", exact=True).click()
    deployment = wait_json(http, "/api/v1/deployments/", lambda d: any(x["run"] == run_id for x in d["results"]),
                           "the deployment", 30)
    deployment = next(x for x in deployment["results"] if x["run"] == run_id)
    served = wait_json(http, f"/api/v1/deployments/{deployment['id']}/", lambda d: d["status"] in ("ready", "failed"),
                       "the DPO deployment", 300)
    assert served["status"] == "ready", served["error"]
    shots("deployed")
    page.goto(f"/playground?deployment={deployment['id']}")
    page.get_by_label("Max tokens").fill("16")
    page.get_by_label("Message", exact=True).fill(questions[0][0])
    page.get_by_role("button", name="Send").click()
    conversation = page.get_by_role("log", name="Conversation")
    expect(conversation.get_by_role("group", name="Feedback on this answer")).to_be_visible(timeout=60_000)
    shots("dpo-answers")


def test_the_same_through_the_api(platform):
    """The journey above with a token only: compare, judge and correct, pairs, DPO from the earlier
    run with held-out accuracy above chance, deploy, and the deployment answers."""
    http = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {token(platform, 'api', ['read', 'write'])}"},
                        timeout=60)
    world = earlier_run_and_two_deployments(http, "api")
    counts = judge_through_the_api(platform, world["v1"], world["early"], faq()[:34])
    summary = http.get("/api/v1/feedback/summary/", params={"deployment": world["early"]["id"]}).json()
    # The early deployment was always on the right: its feedback is the choices (it was never corrected).
    assert summary["feedback"] == counts["choices"] + counts["ties"], (summary, counts)

    made = http.post("/api/v1/feedback/dataset-version/", json={"dataset": world["preferences"]["id"], "kind": "pairs",
                                                               "deployment": world["v1"]["id"]})
    assert made.status_code == 201, made.text
    version = wait_json(http, f"/api/v1/dataset-versions/{made.json()['id']}/", lambda v: v["status"] in ("ready", "failed"),
                        "the pairs' import")
    assert version["status"] == "ready", version["error"]
    assert version["row_count"] == counts["choices"] + counts["corrections"]
    preview = http.get(f"/api/v1/dataset-versions/{version['id']}/preview/", params={"base_model": TINY_MODEL,
                                                                                    "page_size": 1}).json()
    assert preview["results"][0]["segments"] and preview["results"][0]["rejected_segments"]

    run = http.post("/api/v1/runs/", json={"project": world["project"]["id"], "name": "api-dpo",
                                           "dataset_version": version["id"], "base_model": f"run:{world['run']['id']}",
                                           "method": "lora", "config": {"preset": "dpo", **DPO_CONFIG}})
    assert run.status_code == 201, run.text
    run = wait_json(http, f"/api/v1/runs/{run.json()['id']}/", lambda r: r["status"] in ("succeeded", "failed"),
                    "the DPO run", 600)
    assert run["status"] == "succeeded", run["error"]
    accuracy = held_out_accuracy(http, run["id"])
    assert len(accuracy) == 4 and accuracy[-1] > 0.5, accuracy
    assert run["summary_metrics"]["eval_preference_accuracy"] == pytest.approx(accuracy[-1])
    names = {p["name"] for p in http.get(f"/api/v1/runs/{run['id']}/metrics/").json()["results"]}
    assert {"reward_chosen", "reward_rejected", "reward_margin", "preference_accuracy", "eval_reward_margin"} <= names

    deployment = http.post("/api/v1/deployments/", json={"run": run["id"], "name": "api-dpo"})
    assert deployment.status_code == 201, deployment.text
    served = wait_json(http, f"/api/v1/deployments/{deployment.json()['id']}/",
                       lambda d: d["status"] in ("ready", "failed"), "the DPO deployment", 300)
    assert served["status"] == "ready", served["error"]
    client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=token(platform, "api chat", ["inference"]), max_retries=0)
    answer = client.chat.completions.create(model="api-dpo", messages=[{"role": "user", "content": faq()[0][0]}],
                                            max_tokens=8)
    assert answer.choices[0].message.content and answer.id
    assert http.get(f"/api/v1/completions/{answer.id}/").json()["run"] == run["id"]
