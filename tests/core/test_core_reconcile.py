"""The one reconciler, walked over every tracked-job kind the apps register: lost jobs are queued
again, jobs that ended before their work fail the record, records whose heartbeat went stale
fail once, and nothing changes a record that moved on meanwhile."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from tinyforge.core.lifecycle import InvalidTransition, transition
from tinyforge.core.models import Event, TrackedJob
from tinyforge.core.reconcile import KINDS, reconcile
from tinyforge.core.worker import PERIODIC_JOBS
from tinyforge.training.models import TrainingRun

# Which of the persona team's objects is a record of each kind: a new kind adds its line here.
RECORD_OF_KIND = {"runs": "run", "versions": "version", "deployments": "deployment", "exports": "export",
                  "evaluations": "evaluation"}
LONG_AGO = timedelta(minutes=10)


def test_every_kind_is_a_tracked_job_reconciled_on_the_scheduler():
    assert set(KINDS) == set(RECORD_OF_KIND)
    for name, kind in KINDS.items():
        assert issubclass(kind.model, TrackedJob), name
        assert f"reconcile-{name}" in PERIODIC_JOBS


@pytest.fixture
def record_of(acme):
    def get(name: str):
        kind = KINDS[name]
        record = getattr(acme, RECORD_OF_KIND[name])
        kind.model.all_teams.filter(pk=record.pk).update(status=kind.waiting[0], job_id="",
                                                         updated_at=timezone.now() - LONG_AGO)
        django_rq.get_queue(kind.queue).empty()
        return kind, kind.model.all_teams.get(pk=record.pk)

    yield get
    for kind in KINDS.values():
        django_rq.get_queue(kind.queue).empty()


def reconciler_events(record, level: str):
    return Event.all_teams.filter(**record.event_links(), source="reconciler", level=level)


@pytest.mark.parametrize("name", sorted(RECORD_OF_KIND))
def test_a_lost_job_is_queued_again_and_a_job_that_ended_fails_its_record(name, record_of,
                                                                          django_capture_on_commit_callbacks):
    kind, record = record_of(name)
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile(name)["requeued"] == [record.pk]
    record.refresh_from_db()
    queue = django_rq.get_queue(kind.queue)
    assert record.job_id and queue.job_ids == [record.job_id]
    assert queue.fetch_job(record.job_id).args == kind.job_args(record)
    assert "queued again" in reconciler_events(record, "warning").get().message
    assert reconcile(name)["requeued"] == []  # the job is there now

    queue.fetch_job(record.job_id).set_status("failed")
    assert reconcile(name)["failed_in_queue"] == [record.pk]
    record.refresh_from_db()
    assert record.status not in kind.waiting and f"the {kind.job_label} job {record.job_id} ended" in record.error
    assert reconciler_events(record, "error").get().message == f"{kind.failed_label}: {record.error}"
    assert reconcile(name)["failed_in_queue"] == []  # once only


@pytest.mark.parametrize("name", sorted(RECORD_OF_KIND))
def test_a_record_younger_than_the_grace_is_left_to_its_enqueue(name, record_of):
    kind, record = record_of(name)
    kind.model.all_teams.filter(pk=record.pk).update(updated_at=timezone.now())
    assert reconcile(name)["requeued"] == []
    assert django_rq.get_queue(kind.queue).job_ids == []


@pytest.mark.parametrize("name", sorted(n for n in RECORD_OF_KIND if n != "deployments"))
def test_a_record_whose_heartbeat_went_stale_fails_once_and_a_live_one_is_left_alone(name, record_of, settings):
    kind, record = record_of(name)
    assert kind.working
    stale = timezone.now() - timedelta(seconds=settings.RUN_STALE_SECONDS + 5)
    kind.model.all_teams.filter(pk=record.pk).update(status=kind.working[0], heartbeat_at=stale)
    assert reconcile(name)["failed_lost"] == [record.pk]
    record.refresh_from_db()
    assert record.status not in kind.working and "stopped responding (no heartbeat for" in record.error
    assert reconciler_events(record, "error").get().message == f"{kind.failed_label}: {record.error}"
    assert reconcile(name)["failed_lost"] == []

    kind.model.all_teams.filter(pk=record.pk).update(status=kind.working[0], heartbeat_at=timezone.now())
    assert reconcile(name)["failed_lost"] == []
    assert kind.model.all_teams.get(pk=record.pk).status == kind.working[0]


@pytest.mark.parametrize("name", sorted(RECORD_OF_KIND))
def test_a_record_that_beat_again_since_the_pass_looked_is_not_failed(name, record_of):
    kind, record = record_of(name)
    seen = timezone.now() - LONG_AGO
    kind.model.all_teams.filter(pk=record.pk).update(heartbeat_at=timezone.now())
    with pytest.raises(InvalidTransition):
        kind.mark_failed(record.pk, "lost", only_if={"attempt": record.attempt, "heartbeat_at": seen})
    with pytest.raises(InvalidTransition) as moved:
        kind.mark_failed(record.pk, "lost", only_if={"attempt": record.attempt + 1})
    assert moved.value.current == f"on attempt {record.attempt}"
    assert kind.model.all_teams.get(pk=record.pk).status == kind.waiting[0]


def test_a_run_whose_worker_died_resumes_from_its_checkpoint_within_its_retries(record_of, settings,
                                                                                django_capture_on_commit_callbacks):
    settings.RUN_MAX_RETRIES = 1
    kind, run = record_of("runs")
    TrainingRun.all_teams.filter(pk=run.pk).update(status="running", heartbeat_at=timezone.now() - LONG_AGO)
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile("runs")["retried"] == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.attempt, run.job_id) == ("queued", 2, f"train-run-{run.pk}-attempt-2")
    assert django_rq.get_queue("train").job_ids == [run.job_id]
    assert "retrying as attempt 2 from the checkpoint at step 10" in Event.all_teams.get(
        run=run, attempt=1, source="reconciler").message

    # The second attempt dies too: no retry is left, so it fails, naming its checkpoint.
    TrainingRun.all_teams.filter(pk=run.pk).update(status="running", heartbeat_at=timezone.now() - LONG_AGO)
    assert reconcile("runs")["failed_lost"] == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and run.error.endswith("resume it from its checkpoint at step 10")


def test_a_cancel_that_was_not_obeyed_in_time_stops_the_run(acme, settings):
    TrainingRun.all_teams.filter(pk=acme.run.pk).update(
        status="running", cancel_requested=True, heartbeat_at=timezone.now(),
        updated_at=timezone.now() - timedelta(seconds=settings.RUN_CANCEL_GRACE_SECONDS + 5))
    assert reconcile("runs")["stopped"] == [acme.run.pk]
    assert TrainingRun.all_teams.get(pk=acme.run.pk).status == "cancelled"
    assert reconcile("runs")["stopped"] == []


def test_a_guarded_transition_names_the_attempt_the_record_moved_on_to(acme):
    TrainingRun.all_teams.filter(pk=acme.run.pk).update(status="running", attempt=3)
    with pytest.raises(InvalidTransition) as moved:
        transition(TrainingRun, acme.run.pk, to="failed", allowed_from=["running"], only_if={"attempt": 2})
    assert moved.value.current == "on attempt 3"
    transition(TrainingRun, acme.run.pk, to="failed", allowed_from=["running"], only_if={"attempt": 3})
    assert TrainingRun.all_teams.get(pk=acme.run.pk).status == "failed"
