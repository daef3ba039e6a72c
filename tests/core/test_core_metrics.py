"""GET /metrics of the web process: the queues, workers and jobs, to the metrics token only."""

from __future__ import annotations

import django_rq
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient
from rq import Worker
from rq.worker import WorkerStatus

from personas import acme, alice, globex  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-token-for-tests"


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(client=None, token=TOKEN, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return (client or APIClient()).get("/metrics", **headers, **extra)


def test_it_reports_queues_workers_and_jobs_by_kind_and_status(settings, acme, globex):
    settings.METRICS_TOKEN = TOKEN
    django_rq.get_queue("train").empty()
    django_rq.get_queue("train").enqueue("tinyforge.training.jobs.train_run", 999999, 1, job_id="metrics-test-job")
    worker = Worker([django_rq.get_queue("train"), django_rq.get_queue("deploy")],
                    connection=django_rq.get_connection("train"), name="metrics-test-worker")
    worker.register_birth()
    worker.set_state(WorkerStatus.IDLE)
    try:
        response = scrape()
    finally:
        worker.register_death()
        django_rq.get_queue("train").empty()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    values = samples(response.content.decode())
    assert values[("tinyforge_redis_up", ())] == 1
    assert values[("tinyforge_queue_length", (("queue", "train"),))] == 1
    assert values[("tinyforge_queue_jobs", (("queue", "train"), ("state", "failed")))] >= 0
    assert values[("tinyforge_workers", (("queue", "train"), ("state", "idle")))] >= 1
    assert values[("tinyforge_workers", (("queue", "deploy"), ("state", "idle")))] >= 1
    # Both teams' runs (one succeeded each) and their deployments (pending), from the database.
    assert values[("tinyforge_jobs", (("kind", "runs"), ("status", "succeeded")))] == 2
    assert values[("tinyforge_jobs", (("kind", "deployments"), ("status", "pending")))] == 2
    assert ("tinyforge_job_duration_seconds_gcount", (("kind", "runs"),)) in values


def test_a_finished_job_is_in_the_duration_histogram(settings, acme):
    from datetime import timedelta

    from django.utils import timezone

    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()
    acme.run.started_at, acme.run.finished_at = now - timedelta(seconds=100), now
    acme.run.save()
    values = samples(scrape().content.decode())
    assert values[("tinyforge_job_duration_seconds_bucket", (("kind", "runs"), ("le", "60.0")))] == 0
    assert values[("tinyforge_job_duration_seconds_bucket", (("kind", "runs"), ("le", "300.0")))] == 1
    assert values[("tinyforge_job_duration_seconds_gsum", (("kind", "runs"),))] == pytest.approx(100)


def test_it_answers_a_scrape_by_address_over_plain_http(settings, acme):
    settings.METRICS_TOKEN = TOKEN
    settings.SECURE_SSL_REDIRECT = True
    response = scrape(HTTP_HOST="10.1.2.3:8000")  # a pod's address: not in ALLOWED_HOSTS, no TLS
    assert response.status_code == 200


def test_it_refuses_without_the_token_and_serves_nothing_when_none_is_set(settings, acme, alice):
    settings.METRICS_TOKEN = TOKEN
    for token in (None, "wrong"):
        response = scrape(token=token)
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_metrics_token"
    signed_in = APIClient()
    signed_in.force_login(alice)  # a session, even a staff one, is not the token
    assert scrape(signed_in, token=None).status_code == 401
    settings.METRICS_TOKEN = None
    response = scrape()
    assert response.status_code == 404 and "TINYFORGE_METRICS_TOKEN" in response.json()["error"]["message"]
