"""Deploying, failing and undeploying against the platform's running inference service."""

from __future__ import annotations

import shutil

import openai
import pytest

from deployments.conftest import inference_secret, trained_run, wait_for, wait_for_status, work_off
from personas import assert_error
from tinyforge.core import storage
from tinyforge.core.models import Event
from tinyforge.deployments.models import Deployment
from tinyforge.ml.quality_budget import QualityBudget
from tinyforge.training.models import TrainingRun

pytestmark = pytest.mark.django_db(transaction=True)


def deploy(client, run, name, queues, **fields) -> Deployment:
    response = client.post("/api/v1/deployments/", {"name": name, "run": run.pk, **fields}, format="json")
    assert response.status_code == 201, response.content
    work_off(queues)
    return Deployment.all_teams.get(pk=response.json()["id"])


def openai_client(live_server, secret):
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=secret, max_retries=0)


def ask(client, model):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Reverse the word hello."}],
                                          max_tokens=4, temperature=0).choices[0].message.content


def test_deploying_a_failed_run_is_a_conflict(acme, alice, client_for, queues, trained_model_dir):
    post = lambda body: client_for(alice).post("/api/v1/deployments/", body, format="json")  # noqa: E731
    failed = TrainingRun.all_teams.create(project=acme.project, name="crashed", dataset_version=acme.version,
                                          base_model="tiny", status="failed", error="out of memory")
    error = assert_error(post({"name": "x", "run": failed.pk}), 409, "conflict")
    assert "crashed failed" in error["message"] and "start a new run" in error["message"]
    # Checkpoints saved before the failure do not make it deployable, by default or by choice.
    with_checkpoint = trained_run(acme, trained_model_dir, name="crashed late")
    with_checkpoint.status, with_checkpoint.error = "failed", "out of memory at step 90"
    with_checkpoint.save()
    checkpoint = with_checkpoint.checkpoints.get()
    for body in ({"name": "y", "run": with_checkpoint.pk}, {"name": "y", "run": with_checkpoint.pk,
                                                             "checkpoint": checkpoint.pk}):
        error = assert_error(post(body), 409, "conflict")
        assert "crashed late failed" in error["message"] and "resume it" in error["message"]
        assert "succeeded or was cancelled" in error["message"]
    queued = TrainingRun.all_teams.create(project=acme.project, name="waiting", dataset_version=acme.version,
                                          base_model="tiny")
    assert_error(post({"name": "z", "run": queued.pk}), 409)
    assert not Deployment.all_teams.filter(name__in=["x", "y", "z"]).exists() and queues[1].count == 0
    # A cancelled run was stopped on purpose: its checkpoint serves.
    cancelled = trained_run(acme, trained_model_dir, name="stopped early")
    cancelled.status = "cancelled"
    cancelled.save()
    response = post({"name": "early", "run": cancelled.pk})
    assert response.status_code == 201, response.content
    assert response.json()["checkpoint"] == cancelled.checkpoints.get().pk


def test_a_run_whose_files_are_gone_fails_its_deployment_with_the_reason(acme, alice, client_for, queues):
    # The persona run's best checkpoint points at a folder that was never written.
    deployment = deploy(client_for(alice), acme.run, "ghost", queues)
    assert deployment.status == "failed"
    assert "missing from the data directory (ck)" in deployment.error
    assert Event.all_teams.filter(deployment=deployment, level="error", message__contains="(ck)").exists()


def test_deleted_files_fail_one_deployment_while_the_other_keeps_serving(
        acme, alice, client_for, queues, inference_service, live_server, trained_model_dir):
    run = trained_run(acme, trained_model_dir)
    doomed = deploy(client_for(alice), run, "doomed", queues)
    survivor = deploy(client_for(alice), run, "survivor", queues, merge_adapter=True)
    wait_for_status(doomed, "ready")
    wait_for_status(survivor, "ready")
    assert (storage.path(survivor.model_path) / "model.safetensors").is_file()  # merged
    assert (storage.path(doomed.model_path) / "adapter_config.json").is_file()  # adapter on the shared base
    client = openai_client(live_server, inference_secret(alice, acme.team))
    before = ask(client, "survivor")

    shutil.rmtree(storage.path(doomed.model_path))
    wait_for_status(doomed, "failed")
    assert "were deleted" in doomed.error
    assert Event.all_teams.filter(deployment=doomed, level="error", message__contains="were deleted").exists()
    assert ask(client, "survivor") == before
    assert [m.id for m in client.models.list()] == ["survivor"]
    with pytest.raises(openai.NotFoundError):
        ask(client, "doomed")


def test_undeploy_unloads_and_requests_then_get_404(acme, alice, client_for, queues, inference_service, live_server,
                                                   trained_model_dir):
    deployment = wait_for_status(deploy(client_for(alice), trained_run(acme, trained_model_dir), "brief", queues), "ready")
    client = openai_client(live_server, inference_secret(alice, acme.team))
    assert ask(client, "brief") is not None

    response = client_for(alice).post(f"/api/v1/deployments/{deployment.pk}/stop/")
    assert response.status_code == 200 and response.json()["status"] == "stopped"
    with pytest.raises(openai.NotFoundError) as info:
        ask(client, "brief")
    assert info.value.body["code"] == "model_not_found"
    wait_for(lambda: Event.all_teams.filter(deployment=deployment, message__startswith="unloaded").exists(),
             "the service to unload the stopped deployment")
    assert client.models.list().data == []

    # Deployed again: a fresh folder, loaded again, answering again.
    response = client_for(alice).post(f"/api/v1/deployments/{deployment.pk}/start/")
    assert response.status_code == 200 and response.json()["status"] == "pending"
    work_off(queues)
    wait_for_status(deployment, "ready")
    assert ask(client, "brief") is not None


def test_a_duplicate_or_late_deploy_job_does_nothing(acme, alice, client_for, queues, trained_model_dir):
    from tinyforge.deployments.jobs import deploy as deploy_job

    deployment = deploy(client_for(alice), trained_run(acme, trained_model_dir), "once", queues)
    assert deployment.model_path and deployment.status == "pending"  # no service here to load it
    prepared = sorted(p.name for p in storage.path(deployment.model_path).iterdir())
    events = Event.all_teams.filter(deployment=deployment).count()
    assert deploy_job(deployment.pk) == "skipped"  # delivered twice: the folder stays as it is
    Deployment.all_teams.filter(pk=deployment.pk).update(status="stopped", model_path="")
    assert deploy_job(deployment.pk) == "skipped"  # stopped before its job ran
    assert Event.all_teams.filter(deployment=deployment).count() == events
    assert "adapter_model.safetensors" in prepared and "tinyforge.json" in prepared


def test_the_reconciler_enqueues_a_lost_deploy_job_again(acme, alice, client_for, queues, trained_model_dir):
    from datetime import timedelta

    from django.utils import timezone

    from tinyforge.core.reconcile import reconcile

    response = client_for(alice).post("/api/v1/deployments/", {"name": "lost", "run": trained_run(acme, trained_model_dir).pk},
                                      format="json")
    deployment = Deployment.all_teams.get(pk=response.json()["id"])
    for queue in queues:
        queue.empty()  # Redis lost the job
    assert reconcile("deployments")["requeued"] == []  # too young: its job may not be enqueued yet
    Deployment.all_teams.filter(pk=deployment.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert reconcile("deployments")["requeued"] == [deployment.pk]
    work_off(queues)
    deployment.refresh_from_db()
    assert deployment.model_path and deployment.status == "pending"
    assert reconcile("deployments") == {"retried": [], "failed_lost": [], "requeued": [], "failed_in_queue": []}


@pytest.mark.skipif(__import__("tinyforge.hardware").hardware.cpu().int8_missing is not None,
                    reason="needs the int8 kernels (VNNI or AMX-INT8); the fallback without them: tests/serving/test_precision.py")
@pytest.mark.parametrize("inference_service", [QualityBudget(max_loss_increase=-0.5)], indirect=True)
def test_an_int8_deployment_that_misses_the_quality_budget_falls_back_to_float_and_says_so(
        acme, alice, client_for, queues, inference_service, live_server, trained_model_dir):
    """The budget here is one no quantized model meets (held-out loss must halve)."""
    run = trained_run(acme, trained_model_dir)
    client = client_for(alice)
    deployment = wait_for_status(deploy(client, run, "squeezed", queues, precision="int8"), "ready")
    body = client.get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert body["precision"] == "int8" and body["serving_precision"] in ("float32", "bfloat16")
    assert body["precision_reason"].startswith("int8 missed the quality budget (held-out loss")
    assert body["precision_quality"]["heldout_loss_change"] > -0.5
    assert Event.all_teams.filter(
        deployment=deployment, level="warning",
        message=f"serving in {body['serving_precision']}: {body['precision_reason']}").exists()
    assert ask(openai_client(live_server, inference_secret(alice, acme.team)), "squeezed") is not None

    # The user's override reloads it in what they chose, and the page says why.
    response = client.patch(f"/api/v1/deployments/{deployment.pk}/", {"precision": "float32"}, format="json")
    assert response.status_code == 200 and response.json()["serving_precision"] == ""
    deployment.refresh_from_db()
    wait_for(lambda: Deployment.all_teams.filter(pk=deployment.pk, serving_precision="float32").exists(),
             "the service to reload the deployment in float32")
    body = client.get(f"/api/v1/deployments/{deployment.pk}/").json()
    assert body["precision_reason"] == "chosen by the user" and body["status"] == "ready"


def test_precision_applies_to_the_pytorch_runtime_only(acme, alice, client_for, queues, trained_model_dir):
    run = trained_run(acme, trained_model_dir)
    response = client_for(alice).post("/api/v1/deployments/", {"name": "onnx-int8", "run": run.pk, "runtime": "onnx",
                                                               "precision": "int8"}, format="json")
    assert "Applies to the PyTorch runtime" in str(assert_error(response, 400)["fields"]["precision"])
    response = client_for(alice).post("/api/v1/deployments/", {"name": "odd", "run": run.pk, "precision": "int4"},
                                      format="json")
    assert "precision" in assert_error(response, 400)["fields"]
