import pytest

from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.datasets import lifecycle as versions
from tinyforge.deployments import lifecycle as deployments
from tinyforge.training import lifecycle as runs
from tinyforge.training.models import TrainingRun


@pytest.fixture
def queued_run(acme):
    return TrainingRun.all_teams.create(project=acme.project, name="q", dataset_version=acme.version, base_model="m")


def status_of(run):
    return TrainingRun.all_teams.values_list("status", flat=True).get(pk=run.pk)


def test_it_moves_a_run_through_its_statuses(queued_run):
    assert runs.claim_attempt(queued_run.pk, 1, job_id="j1")
    assert runs.record_progress(queued_run.pk, step=3, total=10, eta_seconds=5.0)
    runs.mark_succeeded(queued_run.pk, output_key="k", summary_metrics={"loss": 1.0})
    queued_run.refresh_from_db()
    assert (queued_run.status, queued_run.progress_step, queued_run.output_key) == ("succeeded", 3, "k")


def test_it_never_lets_a_late_writer_overwrite_a_terminal_state(queued_run):
    assert runs.claim_attempt(queued_run.pk, 1)
    runs.mark_cancelled(queued_run.pk)
    with pytest.raises(InvalidTransition) as raised:
        runs.mark_succeeded(queued_run.pk)
    assert raised.value.current == "cancelled"
    with pytest.raises(InvalidTransition):
        runs.mark_failed(queued_run.pk, "late")
    assert not runs.record_progress(queued_run.pk, step=9)  # tells the worker to stop
    assert status_of(queued_run) == "cancelled"


def test_it_starts_a_run_only_once(queued_run):
    assert runs.claim_attempt(queued_run.pk, 1)
    assert not runs.claim_attempt(queued_run.pk, 1)  # a duplicate delivery of the same job
    assert status_of(queued_run) == "running"


def test_it_flags_a_running_run_for_cancel(queued_run):
    assert runs.claim_attempt(queued_run.pk, 1)
    assert runs.request_cancel(queued_run.pk) == "running"
    queued_run.refresh_from_db()
    assert queued_run.cancel_requested


def test_it_raises_does_not_exist_for_a_missing_run(db):
    with pytest.raises(TrainingRun.DoesNotExist):
        runs.mark_failed(987654, "lost")
    assert not runs.claim_attempt(987654, 1)


def test_it_keeps_a_ready_dataset_version_ready(acme):
    version = acme.version
    with pytest.raises(InvalidTransition):
        versions.mark_failed(version.pk, "late failure")
    assert not versions.record_progress(version.pk, 0.5)


def test_it_moves_a_deployment_and_back(acme):
    d = acme.deployment
    deployments.mark_deployment_ready(d.pk, model_path="p")
    deployments.mark_deployment_stopped(d.pk)
    with pytest.raises(InvalidTransition):
        deployments.mark_deployment_ready(d.pk, model_path="p")
    deployments.mark_deployment_pending(d.pk)
