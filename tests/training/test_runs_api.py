"""The runs API around the job: validation before queueing, queue positions, estimate, compare,
and the Server-Sent Events stream."""

from __future__ import annotations

import json

import django_rq
import pytest

from capabilities import without_native_bf16
from personas import assert_error
from tinyforge.training.jobs import train_run
from tinyforge.training.models import TrainingRun


@pytest.fixture
def train_queue():
    queue = django_rq.get_queue("train")
    queue.empty()
    yield queue
    queue.empty()


def body(acme, version, model, **config):
    return {"project": acme.project.pk, "name": "r", "dataset_version": version.pk, "base_model": str(model),
            "method": "lora", "config": config}


def test_it_refuses_a_bad_config_with_field_errors_and_queues_nothing(client_for, alice, acme, toy_version,
                                                                      tiny_base_model, train_queue,
                                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post("/api/v1/runs/", body(acme, toy_version, tiny_base_model, preset="quick",
                                                               batch_size=0, lora_dropout=1.5, lr=1), format="json")
    fields = assert_error(response, 400, "invalid")["fields"]
    assert set(fields) == {"config.lr"}  # unknown names first: a typo is never a silently different run
    response = client_for(alice).post("/api/v1/runs/", body(acme, toy_version, tiny_base_model, batch_size=0,
                                                           lora_dropout=1.5), format="json")
    fields = assert_error(response, 400)["fields"]
    assert fields["config.batch_size"] == ["batch_size must be at least 1, not 0"]
    assert "config.lora_dropout" in fields
    response = client_for(alice).post("/api/v1/runs/", body(acme, toy_version, "/nowhere/model"), format="json")
    assert assert_error(response, 400)["fields"]["base_model"][0].startswith("Unknown base model '/nowhere/model': give a preset")
    assert train_queue.count == 0 and not TrainingRun.all_teams.filter(name="r").exists()


@without_native_bf16
def test_it_refuses_bf16_on_a_cpu_without_it_naming_the_missing_feature(client_for, alice, acme, toy_version,
                                                                         tiny_base_model, train_queue):
    response = client_for(alice).post("/api/v1/runs/", body(acme, toy_version, tiny_base_model, device="cpu",
                                                           precision="bf16"), format="json")
    problem = assert_error(response, 400)["fields"]["config.precision"][0]
    assert problem.startswith("bf16 on a CPU needs native bfloat16, but ") and "fp32 or auto" in problem
    assert train_queue.count == 0 and not TrainingRun.all_teams.filter(name="r").exists()


@pytest.mark.parametrize("config, field, message", [
    ({"epochs": 1e20}, "config.epochs", "epochs must be at most 1000, not 1e+20"),
    ({"batch_size": 10**9}, "config.batch_size", "batch_size must be at most 4096, not 1000000000"),
    ({"max_steps": 10**30}, "config.max_steps", "max_steps must be at most 10000000, not 1" + "0" * 30),
    ({"seed": True}, "config.seed", "seed must be a whole number, not True"),
])
def test_an_absurd_config_is_a_400_naming_the_field_on_create_and_estimate(client_for, alice, acme, toy_version,
                                                                           tiny_base_model, config, field, message):
    # runs/estimate/ answered 200 and about 3e20 steps for epochs = 10^20.
    for path in ("/api/v1/runs/", "/api/v1/runs/estimate/"):
        response = client_for(alice).post(path, body(acme, toy_version, tiny_base_model, **config), format="json")
        assert assert_error(response, 400)["fields"] == {field: [message]}, path


def test_it_stores_the_full_config_and_reports_queue_positions(client_for, alice, acme, toy_version, tiny_base_model,
                                                               train_queue, django_capture_on_commit_callbacks):
    client = client_for(alice)
    ids = []
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/api/v1/runs/", body(acme, toy_version, tiny_base_model, preset="quick", max_steps=3),
                                   format="json")
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    run = response.json()
    assert run["config"]["lora_r"] == 8 and run["config"]["max_steps"] == 3 and run["config"]["base_model"] == tiny_base_model
    assert [client.get(f"/api/v1/runs/{i}/").json()["queue_position"] for i in ids] == [1, 2]
    with django_capture_on_commit_callbacks() as on_commit:
        assert client.post(f"/api/v1/runs/{ids[0]}/cancel/").json()["status"] == "cancelled"
    # Committed, its job not taken off the queue yet: the run behind it already moves up.
    assert train_queue.job_ids == [f"train-run-{ids[0]}-attempt-1", f"train-run-{ids[1]}-attempt-1"]
    assert client.get(f"/api/v1/runs/{ids[1]}/").json()["queue_position"] == 1
    for callback in on_commit:
        callback()
    assert train_queue.job_ids == [f"train-run-{ids[1]}-attempt-1"]
    assert train_queue.fetch_job(f"train-run-{ids[0]}-attempt-1") is None
    assert client.get(f"/api/v1/runs/{ids[1]}/").json()["queue_position"] == 1
    assert client.get(f"/api/v1/runs/{ids[0]}/").json()["queue_position"] is None


def test_cancelling_a_running_run_twice_records_one_request(client_for, alice, make_run):
    from tinyforge.core.models import AuditEvent
    from tinyforge.training import lifecycle
    from tinyforge.training.models import RunEvent

    run = make_run()
    assert lifecycle.claim_attempt(run.pk, run.attempt)  # as its worker does
    client = client_for(alice)
    first = client.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert first.status_code == 200 and first.json()["status"] == "running" and first.json()["cancel_requested"]
    events = RunEvent.all_teams.filter(run=run).count()
    audits = AuditEvent.all_teams.filter(target_type="trainingrun", target_id=str(run.pk), action="cancelled").count()
    assert audits == 1
    second = client.post(f"/api/v1/runs/{run.pk}/cancel/")
    assert second.status_code == 200 and second.json() == first.json()
    assert RunEvent.all_teams.filter(run=run).count() == events
    assert AuditEvent.all_teams.filter(target_type="trainingrun", target_id=str(run.pk), action="cancelled").count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_estimates_from_token_counts_and_measured_throughput(client_for, alice, acme, toy_version, tiny_base_model,
                                                                make_run):
    client = client_for(alice)
    request = body(acme, toy_version, tiny_base_model, max_steps=6, batch_size=4)
    first = client.post("/api/v1/runs/estimate/", request, format="json").json()
    assert first["steps"] == 6 and first["tokens"] > 0 and first["seconds"] is None and "no finished run" in first["basis"]
    run = make_run()
    assert train_run(run.pk, 1) == "succeeded"
    rate = TrainingRun.all_teams.get(pk=run.pk).summary_metrics["train_tokens_per_second"]
    second = client.post("/api/v1/runs/estimate/", request, format="json").json()
    assert second["seconds"] == pytest.approx(second["tokens"] / rate, abs=0.06) and "median of 1" in second["basis"]


@pytest.mark.parametrize("packing", ["on", "batch", "off"])
def test_the_estimate_is_the_engines_plan_of_the_run(client_for, alice, acme, toy_version, tiny_base_model,
                                                     tiny_model_dir, packing):
    """One estimate: the API's steps and tokens are what the engine plans for the same config
    (packed sequences take fewer steps than batch_size rows a step would)."""
    from tinyforge.core import storage
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.train import estimate_run
    from tinyforge.training.services import resolve_config

    config = {"packing": packing, "batch_size": 2, "epochs": 2, "max_seq_length": 64}
    answer = client_for(alice).post("/api/v1/runs/estimate/", body(acme, toy_version, tiny_base_model, **config),
                                    format="json").json()
    resolved = resolve_config(base_model=tiny_base_model, method="lora", config=config, team_id=acme.team.pk)
    plan = estimate_run(TrainConfig.from_dict({**resolved, "base_model": str(tiny_model_dir)}),
                        storage.path(toy_version.storage_key))
    assert (answer["steps"], answer["tokens"]) == (plan["total_steps"], plan["total_tokens"])
    assert plan["packing"] == packing


@pytest.mark.django_db(transaction=True)
def test_it_compares_runs_by_step_with_configs_side_by_side(client_for, alice, acme, make_run, globex):
    runs = [make_run(name="a"), make_run(name="b", learning_rate=1e-3)]
    for run in runs:
        assert train_run(run.pk, 1) == "succeeded"
    client = client_for(alice)
    result = client.get("/api/v1/runs/compare/", {"ids": f"{runs[0].pk},{runs[1].pk}"}).json()
    assert [r["name"] for r in result["runs"]] == ["a", "b"] and result["config_differences"] == ["learning_rate"]
    loss = result["metrics"]["loss"]
    assert [row["step"] for row in loss] == [1, 2, 3, 4, 5, 6]
    assert all(str(runs[0].pk) in row and str(runs[1].pk) in row for row in loss)
    assert_error(client.get("/api/v1/runs/compare/", {"ids": f"{runs[0].pk},{globex.run.pk}"}), 404)
    assert_error(client.get("/api/v1/runs/compare/", {"ids": f"{runs[0].pk}"}), 400)


@pytest.mark.django_db(transaction=True)
def test_it_streams_logs_metrics_and_the_end_as_server_sent_events(client_for, alice, make_run):
    run = make_run()
    assert train_run(run.pk, 1) == "succeeded"
    response = client_for(alice).get(f"/api/v1/runs/{run.pk}/stream/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    frames = [f for f in b"".join(response.streaming_content).decode().split("\n\n") if f.startswith("id:")]
    kinds = [f.split("\n")[1].removeprefix("event: ") for f in frames]
    assert kinds[0] == "log" and kinds[-1] == "end" and "metrics" in kinds and "run" in kinds
    last_id = frames[-1].split("\n")[0].removeprefix("id: ")
    resumed = client_for(alice).get(f"/api/v1/runs/{run.pk}/stream/", HTTP_LAST_EVENT_ID=last_id)
    again = [f for f in b"".join(resumed.streaming_content).decode().split("\n\n") if f.startswith("id:")]
    assert [f.split("\n")[1] for f in again] == ["event: run", "event: end"]  # nothing re-sent
    end = json.loads(frames[-1].split("\n")[2].removeprefix("data: "))
    assert end == {"status": "succeeded"}


def test_a_runs_metric_filter_is_not_mistaken_for_the_run_list_filter(client_for, alice, acme):
    page = client_for(alice).get(f"/api/v1/runs/{acme.run.pk}/metrics/", {"name": "loss"}).json()
    assert [p["name"] for p in page["results"]] == ["loss"]
