"""Evaluations of a deployment served by the platform's inference service: the official `openai`
client's `client.evals` against /v1/evals, and a deployment undeployed mid-evaluation."""

from __future__ import annotations

import django_rq
import httpx
import openai
import pytest

from deployments.conftest import inference_secret, trained_run, wait_for, wait_for_status, work_off
from tinyforge.core.models import Event
from tinyforge.deployments import services as deployment_services
from tinyforge.evals.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def deployed(acme, alice, trained_model_dir, inference_service, client_for):
    run = trained_run(acme, trained_model_dir)
    queues = [django_rq.get_queue(name) for name in ("deploy", "eval")]
    for queue in queues:
        queue.empty()
    response = client_for(alice).post("/api/v1/deployments/", {"name": "zorb-bot", "run": run.pk}, format="json")
    assert response.status_code == 201, response.content
    work_off(queues[:1])
    from tinyforge.deployments.models import Deployment

    deployment = wait_for_status(Deployment.all_teams.get(pk=response.json()["id"]), "ready")
    yield deployment, queues[1]
    for queue in queues:
        queue.empty()


ITEMS = [{"item": {"question": "What is the capital of Zorbland?", "reference": "The capital of Zorbland is Quillport."}},
         {"item": {"question": "Reverse the word hello.", "reference": "olleh"}}]


def test_the_openai_client_creates_an_eval_runs_it_on_a_deployment_and_reads_output_items(
        acme, alice, deployed, live_server):
    deployment, eval_queue = deployed
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=inference_secret(alice, acme.team, ("read", "write")),
                           max_retries=0)
    created = client.evals.create(
        name="zorbland facts",
        data_source_config={"type": "custom", "item_schema": {"type": "object", "properties": {
            "question": {"type": "string"}, "reference": {"type": "string"}}}},
        testing_criteria=[
            {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.reference}}",
             "operation": "eq"},
            {"type": "text_similarity", "name": "overlap", "input": "{{sample.output_text}}",
             "reference": "{{item.reference}}", "evaluation_metric": "rouge_l", "pass_threshold": 0.2}],
        metadata={"team": "docs"})
    assert created.id.startswith("eval-") and created.name == "zorbland facts"
    assert [c.name for c in created.testing_criteria] == ["exact", "overlap"]
    assert [e.id for e in client.evals.list()] == [created.id]
    assert client.evals.retrieve(created.id).metadata == {"team": "docs"}

    run = client.evals.runs.create(created.id, name="first", data_source={
        "type": "completions", "model": "zorb-bot", "source": {"type": "file_content", "content": ITEMS},
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
        "sampling_params": {"max_completion_tokens": 8}})
    assert run.status == "queued" and run.model == "zorb-bot" and run.eval_id == created.id
    work_off([eval_queue])
    done = client.evals.runs.retrieve(run.id, eval_id=created.id)
    assert done.status == "completed", done.error
    assert done.result_counts.total == 2 and done.result_counts.passed + done.result_counts.failed == 2
    assert {r.testing_criteria for r in done.per_testing_criteria_results} == {"exact", "overlap"}
    assert done.per_model_usage[0].completion_tokens > 0
    items = list(client.evals.runs.output_items.list(run.id, eval_id=created.id))
    assert len(items) == 2
    first = items[0]
    assert first.datasource_item_id == 0 and first.sample.input[0].content == "What is the capital of Zorbland?"
    assert first.sample.output[0].role == "assistant" and first.sample.usage.completion_tokens > 0
    assert [r.name for r in first.results] == ["exact", "overlap"]
    assert first.status in ("pass", "fail")
    assert client.evals.runs.output_items.retrieve(first.id, eval_id=created.id, run_id=run.id).id == first.id
    assert [r.id for r in client.evals.runs.list(created.id)] == [run.id]

    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.evals.create(name="x", data_source_config={"type": "custom", "item_schema": {}},
                            testing_criteria=[{"type": "label_model", "name": "l", "model": "m", "input": [],
                                               "labels": ["a"], "passing_labels": ["a"]}])
    # An unknown model is a 404, as OpenAI answers it (and as another team's deployment answers).
    with pytest.raises(openai.NotFoundError, match="'nope' does not exist"):
        client.evals.runs.create(created.id, data_source={"type": "completions", "model": "nope",
                                                          "source": {"type": "file_content", "content": ITEMS}})
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve("eval-999999")
    assert client.evals.delete(created.id).deleted is True


def test_a_deployment_undeployed_mid_evaluation_fails_it_with_an_event_and_keeps_finished_rows(
        acme, alice, deployed, client_for, settings, monkeypatch):
    from tinyforge.deployments.inference import served_name
    from tinyforge.evals import jobs

    deployment, eval_queue = deployed
    client = client_for(alice)
    eval_set = client.post("/api/v1/eval-sets/", {"project": acme.project.pk, "name": "many"}, format="json").json()
    rows = [{"input": f"Question {i}", "reference": "x"} for i in range(12)]
    version = client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", {"rows": rows}, format="json").json()
    settings.EVAL_CHUNK_ROWS = 4
    write = jobs._records

    def write_then_undeploy(evaluation, *args):
        """Someone undeploys the model once the first chunk of rows is written."""
        records = write(evaluation, *args)
        if records[0].index == 0:
            deployment_services.stop_deployment(None, deployment)
            wait_for(lambda: served_name(deployment.pk) not in httpx.get(f"{settings.INFERENCE_URL}/readyz").json()["models"],
                     "the inference service to unload the deployment")
        return records

    monkeypatch.setattr(jobs, "_records", write_then_undeploy)
    response = client.post("/api/v1/evaluations/", {"eval_set_version": version["id"], "max_tokens": 2,
                                                    "targets": [{"kind": "deployment", "deployment": deployment.pk}],
                                                    "scorers": [{"name": "exact_match"}]}, format="json")
    assert response.status_code == 201, response.content
    work_off([eval_queue])
    evaluation = Evaluation.all_teams.get(pk=response.json()["id"])
    assert evaluation.status == "failed"
    assert "model 'zorb-bot'" in evaluation.error and "cannot be used" in evaluation.error, evaluation.error
    assert evaluation.results.count() == 4  # the finished chunk is kept
    event = Event.all_teams.get(project=acme.project, level="error", message__contains="failed after 4 of 12 rows (kept)")
    assert event.data["evaluation"] == evaluation.pk


def test_a_gate_decided_by_a_pairwise_judge_compares_the_run_with_the_deployed_model(
        acme, alice, deployed, client_for, settings):
    from evaluation.judge_server import judge_server

    deployment, eval_queue = deployed
    client = client_for(alice)
    eval_set = client.post("/api/v1/eval-sets/", {"project": acme.project.pk, "name": "pairwise gate"}, format="json").json()
    rows = [{"input": "What is the capital of Zorbland?", "reference": "Quillport"}, {"input": "Say hi", "reference": "hi"}]
    assert client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", {"rows": rows}, format="json").status_code == 201
    with judge_server() as judge:
        settings.QA_BASE_URLS = {**settings.QA_BASE_URLS, judge.base_url: None}
        for threshold, state in ((0.5, "passes"), (0.6, "fails")):
            gate = client.post("/api/v1/gates/", {"project": acme.project.pk, "eval_set": eval_set["id"], "threshold": threshold,
                                                  "judge": {"mode": "pairwise", "max_tokens": 32, "target": {
                                                      "kind": "endpoint", "base_url": judge.base_url,
                                                      "model": "fair-judge"}}}, format="json").json()
            check = client.post(f"/api/v1/gates/{gate['id']}/check/", {"run": deployment.run_id}, format="json")
            assert check.status_code == 201, check.content
            assert [t["kind"] for t in check.json()["targets"]] == ["run", "deployment"]
            work_off([eval_queue])
            status = client.get("/api/v1/evaluations/gate-status/", {"run": deployment.run_id}).json()
            # The deployed model is the run's own: the same greedy answers, a tie on every row in both orders.
            assert status["state"] == state, status
            assert "win rate 0.500" in status["reason"] and "over 2 rows (wins 0%, ties 100%, losses 0%)" in status["reason"]
        assert len(judge.judged()) == 8  # 2 rows, both orders, twice
