"""The knowledge recipe in a real browser against the real platform (see conftest.py), with the
platform's own deployment as teacher and no operator credentials, as in `make demo`: upload a prose
handbook, dry run, import, and see the facts' questions and the held-out fact check.

The teacher is a deployment of the tiny Llama trained through the API on the exchanges the recipe
has with its teacher for this handbook (knowledge_teacher.py): every request of the import reaches
the inference service over the OpenAI API with the key the platform signs for the team, and what the
deployment answers goes through the recipe's parsing, grounding check and fact check for real."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from e2e.browser import sign_in
from e2e.knowledge_teacher import FACTS, HANDBOOK, TEACHER_MODEL, write_teacher_rows
from e2e.test_evals_journey import TOKEN, wait_json
from tinymodel import TINY_MODEL

pytestmark = pytest.mark.e2e


def test_a_handbook_becomes_questions_per_fact_and_a_fact_check_with_the_platforms_deployment_as_teacher(
        journey, platform, tmp_path):
    page, shots = journey
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)
    secret = platform.manage("shell", "-c", TOKEN).strip().splitlines()[-1]
    http = httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)
    team = http.get("/api/v1/auth/me/").json()["teams"][0]["id"]
    project = http.post("/api/v1/projects/", json={"team": team, "name": "Brindlewood handbook"}).json()

    # The teacher: a run trained on the recipe's exchanges for this handbook, deployed.
    transcripts = http.post("/api/v1/datasets/", json={"project": project["id"], "name": "Teacher transcripts"}).json()
    rows = write_teacher_rows(handbook, tmp_path / "teacher.jsonl")
    version = http.post(f"/api/v1/datasets/{transcripts['id']}/upload/",
                        files={"files": (rows.name, rows.read_bytes(), "application/jsonl")}).json()
    wait_json(http, f"/api/v1/dataset-versions/{version['id']}/", lambda v: v["status"] == "ready", "the transcripts")
    run = http.post("/api/v1/runs/", json={
        "project": project["id"], "name": "teacher", "dataset_version": version["id"], "base_model": TEACHER_MODEL,
        "method": "full", "config": {"preset": "quick", "max_steps": 120, "learning_rate": 3e-3, "lr_schedule": "constant",
                                     "batch_size": 3, "packing": "off", "validation_split": 0, "eval_generations": 0,
                                     # the answers exchange is 1,305 tokens of this tokenizer; longer rows are skipped
                                     "max_seq_length": 2048}})
    assert run.status_code == 201, run.text
    run = wait_json(http, f"/api/v1/runs/{run.json()['id']}/", lambda r: r["status"] in ("succeeded", "failed"),
                    "the teacher's training", 600)
    assert run["status"] == "succeeded", run["error"]
    deployment = http.post("/api/v1/deployments/", json={"run": run["id"], "name": "handbook-teacher"}).json()
    served = wait_json(http, f"/api/v1/deployments/{deployment['id']}/", lambda d: d["status"] in ("ready", "failed"),
                       "the teacher's deployment", 300)
    assert served["status"] == "ready", served["error"]
    dataset = http.post("/api/v1/datasets/", json={"project": project["id"], "name": "Handbook"}).json()

    sign_in(page, "alice")
    page.goto(f"/projects/{project['id']}/datasets/{dataset['id']}")
    expect(page.get_by_role("heading", name="Handbook", exact=True)).to_be_visible()
    page.get_by_test_id("file-input").set_input_files(str(handbook))
    page.get_by_label("Documents become").select_option("knowledge")
    expect(page.get_by_text("A larger teacher writes better data", exact=False)).to_be_visible()
    # Out of the box the teacher server is the platform's own inference service; its models are the team's deployments.
    expect(page.get_by_label("Teacher server")).to_contain_text("This platform's deployments")
    page.get_by_label("Teacher model").fill("handbook-teacher")
    page.get_by_label("Questions per fact").fill("2")
    page.get_by_label("Temperature").fill("0")
    page.get_by_role("button", name="Dry run on the first 3 chunks").click()
    preview = page.get_by_label("Dry run", exact=True)
    expect(preview).to_contain_text("The whole import: 1 chunks", timeout=120_000)
    expect(preview).to_contain_text("This dry run: 2 facts, 6 rows kept, 2 of them gap fills, 0 teacher replies dropped")
    for fact, _, questions, _ in FACTS:
        expect(preview).to_contain_text(questions[0])
        expect(preview).to_contain_text(questions[-1])  # held out: shown as the fact check, not trained on
    shots("dry-run")

    page.get_by_role("button", name=re.compile("^Upload 1 file")).click()
    expect(page.get_by_role("heading", name=re.compile("Version 1"))).to_be_visible()
    status = page.locator("h1 .badge")
    expect(status).to_have_text(re.compile("ready|failed"), timeout=120_000)
    if status.inner_text() == "failed":
        shots("import-failed")
        pytest.fail(f"the handbook did not import: {page.get_by_role('alert').first.inner_text()}")
    card = page.get_by_label("Fact check", exact=True)
    expect(card).to_contain_text("2 held-out questions saved as eval set Handbook fact check")
    questions = page.get_by_role("table", name="Fact-check questions")
    expect(questions.get_by_role("row")).to_have_count(3)
    for fact, terms, asked, _ in FACTS:
        row = questions.get_by_role("row").filter(has_text=asked[-1])
        expect(row).to_contain_text(", ".join(terms))
        expect(row).to_contain_text(fact)
    expect(page.get_by_text("Rows as the model sees them")).to_be_visible(timeout=60_000)
    shots("version-with-fact-check")

    # The training rows hold the facts' other questions, never a held-out one, and a gap fill per fact.
    version_id = re.search(r"/versions/(\d+)", page.url).group(1)
    preview_rows = http.get(f"/api/v1/dataset-versions/{version_id}/preview/", params={"page_size": 50}).json()
    trained = {r["row"]["instruction"] for r in preview_rows["results"]}
    assert trained == {q for _, _, asked, _ in FACTS for q in asked[:2]} | {
        "Fill in the gap: Every employee gets ___ days of paid leave a year.",
        "Fill in the gap: Leave is requested from ___, the office manager."}

    # Train on the version in the browser; when the run succeeds the platform scores it, and its base
    # model, on the fact check's held-out questions (the evaluator answers them, must_include scores).
    page.get_by_role("link", name="Train on this version").click()
    page.get_by_label("Run name").fill("handbook-student")
    page.get_by_label("Base model").select_option(TINY_MODEL)
    expect(page.get_by_label("Dataset version")).to_contain_text("Handbook v1 (6 rows)")
    page.get_by_role("radiogroup", name="Method").get_by_text("Full fine-tune").click()  # the radio sits under its label
    expect(page.get_by_label("Full fine-tune")).to_be_checked()
    page.get_by_text("Advanced hyperparameters").click()
    # The tiny model learns the six rows by heart in a few dozen steps at a high constant rate.
    for label, value in (("Max steps", "60"), ("Learning rate", "0.003"), ("Batch size", "4"), ("Validation split", "0")):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_label("Schedule").select_option("constant")
    page.get_by_label("Packing").select_option("off")
    shots("train-on-the-handbook")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_role("heading", name=re.compile("handbook-student"))).to_be_visible()
    expect(page.get_by_text("succeeded", exact=True).first).to_be_visible(timeout=300_000)
    scored = page.get_by_role("region", name="Sample answers: handbook-student: fact check")
    expect(scored.locator(".badge")).to_have_text("succeeded", timeout=300_000)
    expect(scored).to_contain_text(re.compile(rf"base: {TINY_MODEL}: must_include [\d.]+ · handbook-student: must_include [\d.]+"))
    for _, _, asked, _ in FACTS:
        expect(scored.get_by_role("row").filter(has_text=asked[-1])).to_be_visible()  # only held-out questions
    expect(scored.get_by_role("row")).to_have_count(1 + len(FACTS))
    shots("run-scored-on-the-fact-check")

    run_id = int(re.search(r"/runs/(\d+)", page.url).group(1))
    (check,) = [e for e in http.get("/api/v1/evaluations/", params={"run": run_id}).json()["results"]
                if e["name"] == "handbook-student: fact check"]
    assert check["eval_set_version"] == version_stats(http, version_id)["fact_check"]["eval_set_version"]
    means = {label: target["scores"]["must_include"]["mean"] for label, target in check["summary"]["targets"].items()}
    assert set(means) == {f"base: {TINY_MODEL}", "handbook-student"}, means
    # The facts went in: the trained model names more of them on questions it never saw than its base.
    assert means["handbook-student"] > means[f"base: {TINY_MODEL}"], means

    page.get_by_role("link", name="Evaluate").first.click()
    expect(page.get_by_role("form", name="Gate").get_by_label("Eval set")).to_contain_text("Handbook fact check")
    shots("fact-check-eval-set")


def version_stats(http: httpx.Client, version_id: str) -> dict:
    return http.get(f"/api/v1/dataset-versions/{version_id}/").json()["stats"]

