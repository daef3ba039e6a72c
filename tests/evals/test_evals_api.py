"""Eval sets, evaluations run by a real worker, results, gates and the deploy override, through the API."""

from __future__ import annotations

import io
import json

import pytest

from evals.conftest import work_off
from personas import assert_error
from tinyforge.core.models import AuditEvent, Event
from tinyforge.evals.models import Evaluation

# The eval job closes its database connection when it ends, as every job does; inside the
# transaction of a plain db test that drops PostgreSQL's connection (SQLite's in-memory one is
# never closed), so the tests that run the job in-process commit for real.
JOBS_CLOSE_CONNECTIONS = pytest.mark.django_db(transaction=True)

ROWS = [{"input": "What is the capital of Zorbland?", "reference": "The capital of Zorbland is Quillport.",
         "must_include": ["Quillport"], "tags": ["geo"]},
        {"input": "Reverse the word hello.", "reference": "olleh", "tags": ["words"]},
        {"input": "Say hi", "reference": "hi"}]


def new_set(client, world, rows=ROWS, name="facts-2"):
    response = client.post("/api/v1/eval-sets/", {"project": world.project.pk, "name": name}, format="json")
    assert response.status_code == 201, response.content
    eval_set = response.json()
    response = client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", {"rows": rows}, format="json")
    assert response.status_code == 201, response.content
    return eval_set, response.json()


def test_it_keeps_immutable_versions_named_by_their_sha256(client_for, alice, acme):
    client = client_for(alice)
    eval_set, first = new_set(client, acme)
    second = client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", {"rows": ROWS[:1]}, format="json").json()
    assert (first["number"], second["number"]) == (1, 2) and first["sha256"] != second["sha256"]
    assert first["row_count"] == 3 and first["tags"] == ["geo", "words"]
    rows = client.get(f"/api/v1/eval-set-versions/{first['id']}/rows/").json()
    assert rows["count"] == 3 and rows["results"][0]["must_include"] == ["Quillport"]
    assert client.get(f"/api/v1/eval-sets/{eval_set['id']}/").json()["latest_version"] == second["id"]


def test_it_takes_an_uploaded_jsonl_or_csv_and_the_general_set(client_for, alice, acme):
    client = client_for(alice)
    eval_set, _ = new_set(client, acme)
    url = f"/api/v1/eval-sets/{eval_set['id']}/versions/"
    upload = io.BytesIO(b"input,reference,must_include\nCapital of France?,Paris,Paris\n")
    upload.name = "set.csv"
    response = client.post(url, {"file": upload}, format="multipart")
    assert response.status_code == 201 and response.json()["source"] == {"file": "set.csv"}
    general = client.post(url, {"general": True}, format="json")
    assert general.status_code == 201 and general.json()["row_count"] >= 100


def test_an_eval_set_is_renamed_and_deleted_through_its_service_audited_and_its_files_go_with_it(
        client_for, alice, acme, django_capture_on_commit_callbacks):
    from tinyforge.core import storage
    from tinyforge.evals.models import EvalSetVersion

    client = client_for(alice)
    eval_set, version = new_set(client, acme, name="to go")
    renamed = client.patch(f"/api/v1/eval-sets/{eval_set['id']}/", {"name": "renamed"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed"
    assert AuditEvent.all_teams.get(action="updated", target_id=str(eval_set["id"])).changes == {"name": "renamed"}
    stored = storage.path(EvalSetVersion.all_teams.get(pk=version["id"]).storage_key)
    assert stored.exists()
    # A gate still names the set: refused with a 409 that says why, the set and its file kept.
    gate = client.post("/api/v1/gates/", {"project": acme.project.pk, "eval_set": eval_set["id"],
                                          "scorer": {"name": "exact_match"}, "threshold": 0.5}, format="json")
    assert gate.status_code == 201, gate.content
    assert_error(client.delete(f"/api/v1/eval-sets/{eval_set['id']}/"), 409)
    assert stored.exists()
    assert client.delete(f"/api/v1/gates/{gate.json()['id']}/").status_code == 204
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/eval-sets/{eval_set['id']}/").status_code == 204
    assert not stored.exists()
    assert AuditEvent.all_teams.filter(action="deleted", changes={"name": "renamed"}).exists()


@pytest.mark.parametrize("body, field, message", [
    ({"rows": []}, "rows", "the eval set has no rows"),
    ({"rows": [{"reference": "x"}]}, "rows", "line 1 input: required field is missing"),
    ({"rows": [{"input": "q"}, {"input": "q", "must_include": "Paris"}]}, "rows",
     "line 2 must_include: Input should be a valid list"),
    ({"rows": [{"input": "q", "must_include": [1]}]}, "rows", "must_include.0: Input should be a valid string"),
    ({}, "non_field_errors", "Give exactly one of"),
    ({"rows": [{"input": "q"}], "general": True}, "non_field_errors", "Give exactly one of"),
])
def test_bad_rows_are_refused_saying_which_and_where(client_for, alice, acme, body, field, message):
    client = client_for(alice)
    eval_set = client.post("/api/v1/eval-sets/", {"project": acme.project.pk, "name": "x"}, format="json").json()
    error = assert_error(client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", body, format="json"), 400)
    assert message in (" ".join(error["fields"][field]) if field in error["fields"] else error["message"])


def test_a_bad_upload_names_the_line(client_for, alice, acme):
    client = client_for(alice)
    eval_set = client.post("/api/v1/eval-sets/", {"project": acme.project.pk, "name": "x"}, format="json").json()
    upload = io.BytesIO(b'{"input": "ok"}\n{"input": ""}\n')
    upload.name = "set.jsonl"
    error = assert_error(client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", {"file": upload},
                                     format="multipart"), 400)
    assert "set.jsonl: 1 problem: line 2 input: input is blank" in error["message"]


def evaluate(client, version, targets, **extra):
    return client.post("/api/v1/evaluations/", {"eval_set_version": version["id"], "targets": targets,
                                                "max_tokens": 6} | extra, format="json")


@JOBS_CLOSE_CONNECTIONS
def test_a_run_against_its_base_model_is_answered_scored_and_paged(client_for, alice, acme, run_with_model, eval_queue,
                                                                   django_capture_on_commit_callbacks):
    client = client_for(alice)
    _, version = new_set(client, acme)
    with django_capture_on_commit_callbacks(execute=True):
        response = evaluate(client, version, [{"kind": "run", "run": run_with_model.pk},
                                              {"kind": "run", "run": run_with_model.pk, "label": "again"}],
                            scorers=[{"name": "must_include"}, {"name": "rouge_l"}, {"name": "regex", "pattern": "^h"}])
    assert response.status_code == 201, response.content
    evaluation = response.json()
    assert evaluation["status"] == "queued" and [t["label"] for t in evaluation["targets"]] == ["trained run", "again"]
    work_off(eval_queue)
    evaluation = client.get(f"/api/v1/evaluations/{evaluation['id']}/").json()
    assert evaluation["status"] == "succeeded", evaluation["error"]
    assert evaluation["rows_done"] == 3
    scores = evaluation["summary"]["targets"]["trained run"]["scores"]
    assert set(scores) == {"must_include", "rouge_l", "regex:^h"}
    assert scores["rouge_l"]["n"] == 3 and scores["rouge_l"]["low"] <= scores["rouge_l"]["mean"] <= scores["rouge_l"]["high"]
    assert scores["must_include"]["n"] == 1 and scores["must_include"]["unscored"] == 2
    page = client.get(f"/api/v1/evaluations/{evaluation['id']}/results/", {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2
    row = page["results"][0]
    # The same model twice, greedy: the same answers, so no regressions and no disagreements.
    assert row["answers"]["trained run"]["answer"] == row["answers"]["again"]["answer"]
    assert client.get(f"/api/v1/evaluations/{evaluation['id']}/results/", {"regressions": "true"}).json()["count"] == 0
    assert client.get(f"/api/v1/evaluations/{evaluation['id']}/results/", {"tag": "geo"}).json()["count"] == 1
    assert_error(client.get(f"/api/v1/evaluations/{evaluation['id']}/results/", {"regressions": "maybe"}), 400)


@JOBS_CLOSE_CONNECTIONS
def test_a_pairwise_judge_on_the_allow_list_is_asked_both_orders(client_for, alice, acme, judge, eval_queue,
                                                                  django_capture_on_commit_callbacks):
    client = client_for(alice)
    _, version = new_set(client, acme)
    targets = [{"kind": "endpoint", "base_url": judge.base_url, "model": "echo-target", "label": "last word"},
               {"kind": "endpoint", "base_url": judge.base_url, "model": "first-word-target", "label": "first word"}]
    judge_spec = {"mode": "pairwise", "target": {"kind": "endpoint", "base_url": judge.base_url, "model": "fair-judge"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = evaluate(client, version, targets, scorers=[{"name": "exact_match"}], judge=judge_spec)
    assert response.status_code == 201, response.content
    assert "{answer_a}" in response.json()["judge"]["prompt"]  # the prompt used is shown
    work_off(eval_queue)
    evaluation = client.get(f"/api/v1/evaluations/{response.json()['id']}/").json()
    assert evaluation["status"] == "succeeded", evaluation["error"]
    pair = evaluation["summary"]["pairs"][0]
    assert (pair["first"], pair["second"], pair["judged"]) == ("last word", "first word", 3)
    results = client.get(f"/api/v1/evaluations/{evaluation['id']}/results/").json()["results"]
    assert all(len(r["pairwise"][0]["raw"]) == 2 for r in results)
    assert len(judge.judged()) == 6


@JOBS_CLOSE_CONNECTIONS
def test_a_judge_that_answers_garbage_leaves_rows_unscored_and_counted(client_for, alice, acme, judge, eval_queue,
                                                                        django_capture_on_commit_callbacks):
    client = client_for(alice)
    _, version = new_set(client, acme)
    with django_capture_on_commit_callbacks(execute=True):
        response = evaluate(client, version, [{"kind": "endpoint", "base_url": judge.base_url, "model": "echo-target"}],
                            judge={"target": {"kind": "endpoint", "base_url": judge.base_url, "model": "garbage-judge"}})
    work_off(eval_queue)
    evaluation = client.get(f"/api/v1/evaluations/{response.json()['id']}/").json()
    assert evaluation["summary"]["targets"]["echo-target"]["scores"]["judge"]["unscored"] == 3
    result = client.get(f"/api/v1/evaluations/{evaluation['id']}/results/").json()["results"][0]
    verdict = result["answers"]["echo-target"]["judge"]
    assert verdict["unscored"] and "lovely question" in verdict["raw"]
    assert result["answers"]["echo-target"]["passed"]["judge"] is None


def test_a_judge_not_on_the_allow_list_is_refused(client_for, alice, acme):
    client = client_for(alice)
    _, version = new_set(client, acme)
    error = assert_error(evaluate(client, version, [{"kind": "run", "run": acme.run.pk}],
                                  judge={"target": {"kind": "endpoint", "base_url": "http://169.254.169.254/v1",
                                                    "model": "j"}}), 400)
    assert "is not a model server this platform may call" in error["fields"]["judge.target.base_url"][0]


@JOBS_CLOSE_CONNECTIONS
def test_an_unreachable_judge_fails_the_evaluation_before_any_row(client_for, alice, acme, settings, judge, eval_queue,
                                                                   django_capture_on_commit_callbacks):
    settings.QA_BASE_URLS = {**settings.QA_BASE_URLS, "http://127.0.0.1:9/v1": None}
    client = client_for(alice)
    _, version = new_set(client, acme)
    with django_capture_on_commit_callbacks(execute=True):
        response = evaluate(client, version, [{"kind": "endpoint", "base_url": judge.base_url, "model": "echo-target"}],
                            judge={"target": {"kind": "endpoint", "base_url": "http://127.0.0.1:9/v1", "model": "j"}})
    work_off(eval_queue)
    evaluation = Evaluation.all_teams.get(pk=response.json()["id"])
    assert evaluation.status == "failed" and "at http://127.0.0.1:9/v1 cannot be used: Connection error" in evaluation.error
    assert judge.requests == [] and evaluation.results.count() == 0
    assert Event.all_teams.filter(project=acme.project, level="error", message__contains="failed after 0 of 3 rows").exists()


@pytest.mark.parametrize("target, what", [
    (lambda own, other: {"kind": "run", "run": other.run.pk}, "training run"),
    (lambda own, other: {"kind": "base", "run": other.run.pk}, "training run"),
    (lambda own, other: {"kind": "run", "run": own.run.pk, "checkpoint": other.checkpoint.pk}, "checkpoint"),
    (lambda own, other: {"kind": "deployment", "deployment": other.deployment.pk}, "deployment"),
    (lambda own, other: {"kind": "run", "run": 987_654}, "training run"),
])
def test_a_target_of_another_team_is_not_found(client_for, charlie, globex, acme, target, what):
    client = client_for(charlie)
    _, version = new_set(client, globex)
    error = assert_error(evaluate(client, version, [target(globex, acme)], scorers=[{"name": "exact_match"}]), 404)
    assert error["message"].startswith(f"No {what} ") and error["message"].endswith(" in your teams.")
    assert not Evaluation.all_teams.filter(project=globex.project).exclude(pk=globex.evaluation.pk).exists()


def test_a_judge_deployment_of_another_team_is_not_found(client_for, charlie, globex, acme):
    client = client_for(charlie)
    _, version = new_set(client, globex)
    error = assert_error(evaluate(client, version, [{"kind": "run", "run": globex.run.pk}],
                                  judge={"target": {"kind": "deployment", "deployment": acme.deployment.pk}}), 404)
    assert error["message"] == f"No deployment {acme.deployment.pk} in your teams."


@pytest.mark.parametrize("targets, scorers, message", [
    ([], [{"name": "exact_match"}], "Choose 1 to 4 targets"),
    ([{"kind": "run"}], [{"name": "exact_match"}], "A run target needs run"),
    ([{"kind": "endpoint", "base_url": "http://127.0.0.1:9/v1"}], [{"name": "exact_match"}], "needs model"),
    (None, [], "Choose at least one scorer or a judge"),
    (None, [{"name": "regex"}], "needs a pattern"),
    (None, [{"name": "bleu"}], "is not a valid choice"),
])
def test_bad_evaluations_are_refused_naming_the_field(client_for, alice, acme, targets, scorers, message):
    client = client_for(alice)
    _, version = new_set(client, acme)
    targets = targets if targets is not None else [{"kind": "run", "run": acme.run.pk}]
    error = assert_error(evaluate(client, version, targets, scorers=scorers), 400)
    assert message in json.dumps(error)


@JOBS_CLOSE_CONNECTIONS
def test_two_evaluations_at_once_queue_and_both_finish(client_for, alice, acme, judge, eval_queue,
                                                       django_capture_on_commit_callbacks):
    client = client_for(alice)
    _, version = new_set(client, acme)
    target = [{"kind": "endpoint", "base_url": judge.base_url, "model": "echo-target"}]
    with django_capture_on_commit_callbacks(execute=True):
        ids = [evaluate(client, version, target, scorers=[{"name": "token_f1"}]).json()["id"] for _ in range(2)]
    assert [Evaluation.all_teams.get(pk=i).status for i in ids] == ["queued", "queued"]
    assert eval_queue.count == 2
    work_off(eval_queue)
    assert [Evaluation.all_teams.get(pk=i).status for i in ids] == ["succeeded", "succeeded"]


@JOBS_CLOSE_CONNECTIONS
def test_ten_thousand_rows_are_written_in_chunks_and_paged(client_for, alice, acme, run_with_model, eval_queue,
                                                           settings, django_capture_on_commit_callbacks):
    # The heartbeat thread's writes would meet this test's open transaction on SQLite; not under test here.
    settings.RUN_HEARTBEAT_SECONDS = 3600
    client = client_for(alice)
    rows = [{"input": f"Question number {i}", "reference": str(i), "tags": ["even" if i % 2 == 0 else "odd"]}
            for i in range(10_000)]
    _, version = new_set(client, acme, rows=rows)
    with django_capture_on_commit_callbacks(execute=True):
        response = evaluate(client, version, [{"kind": "run", "run": run_with_model.pk}],
                            scorers=[{"name": "exact_match"}], max_tokens=1)
    work_off(eval_queue)
    evaluation = client.get(f"/api/v1/evaluations/{response.json()['id']}/").json()
    assert evaluation["status"] == "succeeded" and evaluation["rows_done"] == 10_000
    assert evaluation["summary"]["targets"]["trained run"]["scores"]["exact_match"]["n"] == 10_000
    page = client.get(f"/api/v1/evaluations/{evaluation['id']}/results/", {"page": 40, "tag": "odd", "page_size": 100})
    assert page.json()["count"] == 5000 and page.json()["results"][0]["index"] == 7801  # the 3,901st odd row
    assert_error(client.get(f"/api/v1/evaluations/{evaluation['id']}/results/", {"page_size": 100_000}), 400)


@JOBS_CLOSE_CONNECTIONS
def test_a_gate_refuses_a_failing_run_until_overridden_with_an_audit_record(client_for, alice, acme, judge, eval_queue,
                                                                            run_with_model,
                                                                            django_capture_on_commit_callbacks):
    client = client_for(alice)
    eval_set, _ = new_set(client, acme, name="gate set")
    response = client.post("/api/v1/gates/", {"project": acme.project.pk, "eval_set": eval_set["id"],
                                              "scorer": {"name": "exact_match"}, "threshold": 0.9}, format="json")
    assert response.status_code == 201, response.content
    gate = response.json()
    status = client.get("/api/v1/evaluations/gate-status/", {"run": run_with_model.pk}).json()
    assert status["state"] == "fails" and "not evaluated against the gate" in status["reason"]
    with django_capture_on_commit_callbacks(execute=True):
        check = client.post(f"/api/v1/gates/{gate['id']}/check/", {"run": run_with_model.pk}, format="json")
    assert check.status_code == 201, check.content
    assert client.get("/api/v1/evaluations/gate-status/", {"run": run_with_model.pk}).json()["state"] == "pending"
    work_off(eval_queue)
    status = client.get("/api/v1/evaluations/gate-status/", {"run": run_with_model.pk}).json()
    assert status["state"] == "fails" and "below the threshold 0.900" in status["reason"]
    deploy = {"run": run_with_model.pk, "name": "gated-model"}
    error = assert_error(client.post("/api/v1/deployments/", deploy, format="json"), 409)
    assert "fails the gate: exact_match is 0.000, below the threshold 0.900" in error["message"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/deployments/", {**deploy, "override_gate": True,
                                                        "override_reason": "demo day"}, format="json")
    assert response.status_code == 201, response.content
    audit = AuditEvent.all_teams.get(action="gate_overridden")
    assert audit.actor == alice and audit.changes["reason"] == "demo day" and audit.changes["gate"]["state"] == "fails"


def test_only_admins_set_the_gate(client_for, bob, acme):
    error = assert_error(client_for(bob).post("/api/v1/gates/", {"project": acme.project.pk, "eval_set": acme.eval_set.pk,
                                                                 "scorer": {"name": "exact_match"}, "threshold": 0.5},
                                              format="json"), 403)
    assert "set the deploy gate" in error["message"]


def save_from_playground(client, eval_set, **playground):
    return client.post(f"/api/v1/eval-sets/{eval_set['id']}/versions/", {"playground": playground}, format="json")


def test_a_playground_conversation_is_saved_as_a_new_version_holding_the_earlier_rows(client_for, alice, acme):
    client = client_for(alice)
    eval_set, first = new_set(client, acme)
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Quillport?"}]
    response = save_from_playground(client, eval_set, messages=conversation, reference="In Zorbland.",
                                    must_include=["Zorbland"], deployment=acme.deployment.pk)
    assert response.status_code == 201, response.content
    second = response.json()
    assert (second["number"], second["row_count"], second["source_kind"]) == (2, 4, "playground")
    assert second["source"] == {"previous_version": first["id"], "deployment": acme.deployment.pk}
    rows = client.get(f"/api/v1/eval-set-versions/{second['id']}/rows/").json()["results"]
    assert [r["input"] for r in rows[:3]] == [r["input"] for r in ROWS]  # the earlier version's rows, unchanged
    assert rows[3] == {"index": 3, "input": conversation, "reference": "In Zorbland.", "must_include": ["Zorbland"],
                       "tags": ["playground"]}
    # The earlier version is immutable: it still holds its three rows.
    assert client.get(f"/api/v1/eval-set-versions/{first['id']}/rows/").json()["count"] == 3


def test_a_prompt_saved_from_the_playground_into_a_new_set_needs_no_reference(client_for, alice, acme):
    client = client_for(alice)
    eval_set = client.post("/api/v1/eval-sets/", {"project": acme.project.pk, "name": "from chat"}, format="json").json()
    response = save_from_playground(client, eval_set, messages=[{"role": "user", "content": "Name a prime."}],
                                    reference="  ")
    assert response.status_code == 201, response.content
    assert response.json()["source"] == {"previous_version": None, "deployment": None}
    row = client.get(f"/api/v1/eval-set-versions/{response.json()['id']}/rows/").json()["results"][0]
    assert row == {"index": 0, "input": [{"role": "user", "content": "Name a prime."}], "tags": ["playground"]}


@pytest.mark.parametrize("playground, field, message", [
    ({"messages": []}, "playground.messages", "This list may not be empty"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "playground",
     "the last message of input must be the user's"),
    ({"messages": [{"role": "user", "content": "q"}], "must_include": "Paris"}, "playground.must_include",
     "Expected a list"),
    ({"messages": [{"role": "user", "content": "q"}], "must_include": [3]}, "playground",
     "must_include.0: Input should be a valid string"),
    ({"messages": [{"role": "user"}]}, "playground", "0.content: required field is missing"),
])
def test_a_bad_playground_row_is_refused_saying_which_field(client_for, alice, acme, playground, field, message):
    client = client_for(alice)
    eval_set, _ = new_set(client, acme)
    error = assert_error(save_from_playground(client, eval_set, **playground), 400)
    assert message in " ".join(error["fields"][field]), error
    assert client.get(f"/api/v1/eval-sets/{eval_set['id']}/").json()["latest_version"] is not None
    assert client.get("/api/v1/eval-set-versions/", {"eval_set": eval_set["id"]}).json()["count"] == 1


def test_a_conversation_with_another_teams_deployment_is_refused(client_for, charlie, globex, acme):
    client = client_for(charlie)
    eval_set, _ = new_set(client, globex)
    error = assert_error(save_from_playground(client, eval_set, messages=[{"role": "user", "content": "q"}],
                                              deployment=acme.deployment.pk), 400)
    assert "does not exist" in error["fields"]["playground.deployment"][0]


def test_an_openai_eval_run_on_another_teams_deployment_is_not_found(token_client, charlie, globex, acme):
    client, _ = token_client(charlie, globex.team, ["read", "write"])
    created = client.post("/v1/evals", {
        "name": "facts", "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [{"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                              "reference": "{{item.reference}}", "operation": "eq"}]}, format="json")
    assert created.status_code in (200, 201), created.content
    source = {"type": "completions", "source": {"type": "file_content", "content": [{"item": {"reference": "x"}}]},
              "input_messages": {"type": "template", "template": [{"role": "user", "content": "q"}]}}
    url = f"/v1/evals/{created.json()['id']}/runs"
    response = client.post(url, {"data_source": {**source, "model": acme.deployment.name}}, format="json")
    assert response.status_code == 404, response.content
    assert f"The model '{acme.deployment.name}' does not exist" in response.json()["error"]["message"]
    response = client.post(url, {"data_source": source}, format="json")
    assert response.status_code == 400 and "data_source.model" in response.content.decode()


def set_judge_gate(client, world, eval_set, judge, threshold, **extra):
    return client.post("/api/v1/gates/", {"project": world.project.pk, "eval_set": eval_set["id"], "judge": judge,
                                          "threshold": threshold} | extra, format="json")


@JOBS_CLOSE_CONNECTIONS
@pytest.mark.parametrize("model, threshold, state, reason", [
    ("garbage-judge", 2, "fails", "no row could be scored by judge; 3 of 3 rows unscored, counted neither way"),
    ("fair-judge", 1, "passes", "judge is "),
    ("fair-judge", 5, "fails", "below the threshold 5.000"),
])
def test_a_gate_decided_by_a_pointwise_judge_reports_unscored_rows_and_never_passes_them(
        client_for, alice, acme, judge, eval_queue, run_with_model, django_capture_on_commit_callbacks,
        model, threshold, state, reason):
    client = client_for(alice)
    eval_set, _ = new_set(client, acme, name="judged gate")
    response = set_judge_gate(client, acme, eval_set, {"mode": "pointwise", "target": {
        "kind": "endpoint", "base_url": judge.base_url, "model": model}}, threshold)
    assert response.status_code == 201, response.content
    gate = response.json()
    assert gate["scorer"] is None and gate["judge"]["mode"] == "pointwise" and "{answer}" in gate["judge"]["prompt"]
    with django_capture_on_commit_callbacks(execute=True):
        check = client.post(f"/api/v1/gates/{gate['id']}/check/", {"run": run_with_model.pk}, format="json")
    assert check.status_code == 201, check.content
    assert check.json()["judge"]["target"]["model"] == model and check.json()["scorers"] == []
    work_off(eval_queue)
    status = client.get("/api/v1/evaluations/gate-status/", {"run": run_with_model.pk}).json()
    assert status["state"] == state and reason in status["reason"], status
    assert len(judge.judged()) == 3


@pytest.mark.parametrize("body, field, message", [
    ({"scorer": {"name": "exact_match"}, "judge": "JUDGE"}, "non_field_errors", "Give exactly one of scorer and judge"),
    ({}, "non_field_errors", "Give exactly one of scorer and judge"),
    ({"judge": "PAIRWISE", "max_drop": 0.1}, "max_drop", "compares the run with the deployed model already"),
    ({"judge": "PAIRWISE", "threshold": 1.5}, "threshold", "A win rate: from 0 to 1"),
    ({"judge": "JUDGE", "threshold": 0.5}, "threshold", "scores 1 to 5"),
    ({"judge": {"prompt": "no answer here", "target": {"kind": "deployment", "deployment": "OWN"}}}, "judge",
     "must contain {answer}"),
    ({"judge": {"target": {"kind": "endpoint", "base_url": "http://169.254.169.254/v1", "model": "j"}}},
     "judge.target.base_url", "is not a model server this platform may call"),
])
def test_a_bad_judge_gate_is_refused_naming_the_field(client_for, alice, acme, body, field, message):
    judges = {"JUDGE": {"target": {"kind": "deployment", "deployment": acme.deployment.pk}},
              "PAIRWISE": {"mode": "pairwise", "target": {"kind": "deployment", "deployment": acme.deployment.pk}}}
    body = {key: judges.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    if isinstance(body.get("judge"), dict) and body["judge"]["target"].get("deployment") == "OWN":
        body["judge"]["target"]["deployment"] = acme.deployment.pk
    error = assert_error(client_for(alice).post("/api/v1/gates/", {
        "project": acme.project.pk, "eval_set": acme.eval_set.pk, "threshold": 3, **body}, format="json"), 400)
    assert message in json.dumps(error), error


def test_a_pairwise_gate_with_nothing_deployed_holds_the_run_back_saying_so(client_for, alice, acme):
    client = client_for(alice)
    eval_set, _ = new_set(client, acme, name="pairwise gate")
    response = set_judge_gate(client, acme, eval_set, {"mode": "pairwise", "target": {
        "kind": "deployment", "deployment": acme.deployment.pk}}, 0.5)
    assert response.status_code == 201, response.content
    error = assert_error(client.post(f"/api/v1/gates/{response.json()['id']}/check/", {"run": acme.run.pk},
                                     format="json"), 409)
    assert "compares the run with the deployed model, and the project has no ready deployment" in error["message"]
    status = client.get("/api/v1/evaluations/gate-status/", {"run": acme.run.pk}).json()
    assert status["state"] == "fails" and status["reason"].startswith("the gate's pairwise judge compares")


def test_a_pairwise_gate_is_the_runs_win_rate_with_ties_as_half_and_unscored_rows_said():
    from types import SimpleNamespace

    from tinyforge.evals.services import gate_verdict

    gate = SimpleNamespace(judge={"mode": "pairwise"}, scorer=None, threshold=0.5, max_drop=None)
    targets = [{"label": "run"}, {"label": "deployed: bot"}]
    pair = {"first": "run", "second": "deployed: bot", "judged": 4, "unscored": 2, "first_wins": 0.25, "ties": 0.5,
            "second_wins": 0.25}
    passed, reason = gate_verdict(gate, {"pairs": [pair]}, targets)
    assert passed and reason == ("win rate 0.500 (threshold 0.500) against deployed: bot over 4 rows (wins 25%, "
                                 "ties 50%, losses 25%); 2 of 6 rows unscored, counted neither way")
    passed, reason = gate_verdict(gate, {"pairs": [{**pair, "first_wins": 0.0, "second_wins": 0.5}]}, targets)
    assert not passed and reason.startswith("win rate 0.250, below the threshold 0.500")
    passed, reason = gate_verdict(gate, {"pairs": [{**pair, "judged": 0, "unscored": 6}]}, targets)
    assert not passed and reason == ("the judge decided no row between the run and deployed: bot; 6 of 6 rows "
                                     "unscored, counted neither way")
