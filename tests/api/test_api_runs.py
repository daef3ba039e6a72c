import django_rq
import pytest
from django.db import transaction

from personas import assert_error
from tinyforge.core.events import record_event
from tinyforge.core.models import event_links_to
from tinyforge.training.models import RunStatus, TrainingRun


def run_body(world, **extra):
    return {"project": world.project.pk, "name": "second", "dataset_version": world.version.pk,
            "base_model": "smollm2-135m-instruct", "method": "lora", "config": {"epochs": 1}, **extra}


@pytest.fixture
def train_queue():
    queue = django_rq.get_queue("train")
    queue.empty()
    yield queue
    queue.empty()


def test_it_queues_a_run_and_its_job(client_for, alice, acme, train_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post("/api/v1/runs/", run_body(acme), format="json")
    assert response.status_code == 201, response.content
    run = TrainingRun.all_teams.get(pk=response.json()["id"])
    assert run.status == RunStatus.QUEUED and run.job_id == f"train-run-{run.pk}-attempt-1"
    assert train_queue.job_ids == [run.job_id]
    assert train_queue.fetch_job(run.job_id).args == (run.pk, 1)


@pytest.mark.django_db(transaction=True)
def test_it_enqueues_nothing_when_the_transaction_rolls_back(alice, acme, train_queue):
    from tinyforge.training import services

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        services.create_run(None, project=acme.project, name="doomed", dataset_version=acme.version,
                            base_model="m", method="lora", config={})
        raise Rollback
    assert train_queue.count == 0
    assert not TrainingRun.all_teams.filter(name="doomed").exists()


def test_it_rejects_a_dataset_version_of_another_project(client_for, alice, acme):
    from tinyforge.projects.models import Project

    other = Project.all_teams.create(team=acme.team, name="other")
    response = client_for(alice).post("/api/v1/runs/", run_body(acme, project=other.pk), format="json")
    assert "dataset_version" in assert_error(response, 400)["fields"]


def test_it_cancels_a_queued_run_once_and_refuses_to_cancel_a_finished_one(client_for, alice, acme, train_queue):
    client = client_for(alice)
    run_id = client.post("/api/v1/runs/", run_body(acme), format="json").json()["id"]
    assert client.post(f"/api/v1/runs/{run_id}/cancel/").json()["status"] == "cancelled"
    assert client.post(f"/api/v1/runs/{run_id}/cancel/").json()["status"] == "cancelled"
    assert_error(client.post(f"/api/v1/runs/{acme.run.pk}/cancel/"), 409, "conflict")


def test_it_resumes_a_cancelled_run_as_the_next_attempt(client_for, alice, acme, train_queue,
                                                        django_capture_on_commit_callbacks):
    TrainingRun.all_teams.filter(pk=acme.run.pk).update(status=RunStatus.CANCELLED)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(f"/api/v1/runs/{acme.run.pk}/resume/", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued" and response.json()["attempt"] == 2
    assert response.json()["resumed_from"] == acme.checkpoint.pk
    assert train_queue.job_ids == [f"train-run-{acme.run.pk}-attempt-2"]


def test_it_tails_run_events_after_a_cursor(client_for, alice, acme):
    first = acme.event.pk
    for n in range(3):
        record_event(project_id=acme.project.pk, **event_links_to(TrainingRun, acme.run.pk), message=f"line {n}",
                     source="trainer")
    client = client_for(alice)
    page = client.get(f"/api/v1/runs/{acme.run.pk}/events/", {"after": first, "limit": 2}).json()
    assert [e["message"] for e in page["results"]] == ["line 0", "line 1"] and page["has_more"]
    rest = client.get(f"/api/v1/runs/{acme.run.pk}/events/", {"after": page["next_after"]}).json()
    assert [e["message"] for e in rest["results"]] == ["line 2"] and not rest["has_more"]


def test_it_filters_the_logs_page_by_project_level_and_kind(client_for, alice, acme):
    record_event(**acme.version.event_links(), message="bad row", level="warning",
                 source="ingest")
    rows = client_for(alice).get("/api/v1/events/", {"project": acme.project.pk, "min_level": "warning",
                                                      "kind": "ingest"}).json()["results"]
    assert [r["message"] for r in rows] == ["bad row"]


def test_it_refuses_a_deployment_of_a_failed_run_without_checkpoints(client_for, alice, acme):
    from tinyforge.training.models import Checkpoint

    acme.deployment.delete()
    acme.export.delete()
    Checkpoint.all_teams.filter(run=acme.run).delete()
    TrainingRun.all_teams.filter(pk=acme.run.pk).update(status=RunStatus.FAILED)
    response = client_for(alice).post("/api/v1/deployments/", {"name": "m1", "run": acme.run.pk}, format="json")
    assert_error(response, 409)


def test_it_deploys_the_best_checkpoint_by_default(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/deployments/", {"name": "m1", "run": acme.run.pk}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["checkpoint"] == acme.checkpoint.pk and response.json()["status"] == "pending"
    duplicate = client_for(alice).post("/api/v1/deployments/", {"name": "m1", "run": acme.run.pk}, format="json")
    assert "name" in assert_error(duplicate, 400)["fields"]


def test_it_refuses_to_change_a_dataset_version(client_for, alice, acme):
    assert_error(client_for(alice).patch(f"/api/v1/dataset-versions/{acme.version.pk}/", {"note": "x"}, format="json"), 405)


def test_it_never_returns_connection_credentials(client_for, alice, acme):
    response = client_for(alice).post("/api/v1/connections/", {
        "project": acme.project.pk, "name": "pg", "kind": "sql", "options": {},
        "credentials": {"url": "postgres://u:s3cret@db/x"}}, format="json")
    assert response.status_code == 201, response.content
    assert "s3cret" not in response.content.decode()
    listed = client_for(alice).get("/api/v1/connections/").content.decode()
    assert "s3cret" not in listed
    from tinyforge.datasets.models import DataConnection

    stored = DataConnection.all_teams.get(pk=response.json()["id"])
    assert b"s3cret" not in bytes(stored.encrypted_credentials)
    assert stored.get_credentials() == {"url": "postgres://u:s3cret@db/x"}


def test_it_keeps_a_run_queued_when_redis_is_unreachable(client_for, alice, acme, settings, tmp_path,
                                                         django_capture_on_commit_callbacks):
    settings.RQ_QUEUES = {name: {**config, "URL": f"unix://{tmp_path}/nothing.sock"}
                          for name, config in settings.RQ_QUEUES.items()}
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post("/api/v1/runs/", run_body(acme), format="json")
    assert response.status_code == 201, response.content
    assert TrainingRun.all_teams.get(pk=response.json()["id"]).status == RunStatus.QUEUED
