"""Prometheus metrics of the platform's queues, workers and jobs, served by the web process at
GET /metrics (docs/operations.md).

Read when scraped, from RQ (queue lengths, jobs by registry, workers alive) and the database (every
registered kind of tracked job by status, and how long the ones that finished in the last day
took), so they say the same whichever web replica answers, and nothing has to run in between.

The endpoint follows the inference service's rule: it answers only
"Authorization: Bearer <TINYFORGE_METRICS_TOKEN>", and nothing (404) while that is unset. It is
answered by a middleware ahead of Django's host check and HTTPS redirect: Prometheus scrapes a
container or pod by its address over the internal network, which ALLOWED_HOSTS does not name.
nginx never passes /metrics on, so the public origin does not serve it.
"""

from __future__ import annotations

import hmac
import logging
from datetime import timedelta

import django_rq
import redis
from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from rq import Queue, Worker
from rq.registry import (CanceledJobRegistry, DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry,
                         ScheduledJobRegistry, StartedJobRegistry)

from tinyforge.core.errors import json_error_response
from tinyforge.core.reconcile import KINDS

logger = logging.getLogger(__name__)

PATH = "/metrics"
# Jobs' durations, from seconds (an import) to days (a long training run).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600)
DURATION_WINDOW = timedelta(days=1)
REGISTRIES = {"started": StartedJobRegistry, "scheduled": ScheduledJobRegistry, "deferred": DeferredJobRegistry,
              "failed": FailedJobRegistry, "finished": FinishedJobRegistry, "canceled": CanceledJobRegistry}


class PlatformCollector:
    """Collects on every scrape (prometheus_client's custom-collector protocol)."""

    def collect(self):
        yield from self._queues()
        yield from self._jobs()

    def _queues(self):
        up = GaugeMetricFamily("tinyforge_redis_up", "1 when Redis (the job queues) answered this scrape, else 0.")
        length = GaugeMetricFamily("tinyforge_queue_length", "Jobs waiting on an RQ queue.", labels=["queue"])
        jobs = GaugeMetricFamily("tinyforge_queue_jobs", "Jobs in an RQ queue's registries: started (at work), "
                                 "scheduled, deferred, failed, finished (kept for a while), canceled.",
                                 labels=["queue", "state"])
        workers = GaugeMetricFamily("tinyforge_workers", "RQ workers alive (their heartbeat is in Redis), by a queue "
                                    "they listen on and their state (idle, busy, suspended...).",
                                    labels=["queue", "state"])
        try:
            for name in settings.RQ_QUEUES:
                queue: Queue = django_rq.get_queue(name)
                length.add_metric([name], queue.count)
                for state, registry in REGISTRIES.items():
                    jobs.add_metric([name, state], registry(queue=queue).count)
            counted: dict[tuple[str, str], int] = {}
            for worker in Worker.all(connection=django_rq.get_connection(next(iter(settings.RQ_QUEUES)))):
                state = worker.get_state()
                state = state.value if hasattr(state, "value") else str(state)
                for queue_name in worker.queue_names():
                    counted[(queue_name, state)] = counted.get((queue_name, state), 0) + 1
            for (queue_name, state), count in sorted(counted.items()):
                workers.add_metric([queue_name, state], count)
            up.add_metric([], 1)
        except redis.RedisError as exc:
            logger.warning("metrics: Redis did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        yield from (up, length, jobs, workers)

    def _jobs(self):
        by_status = GaugeMetricFamily("tinyforge_jobs", "Records a background job works on (run, dataset version, "
                                      "deployment, export...), by kind and status, from the database.",
                                      labels=["kind", "status"])
        durations = GaugeHistogramMetricFamily(
            "tinyforge_job_duration_seconds", "From start to finish of the jobs of each kind that finished in the "
            "last 24 hours, whatever their outcome.", labels=["kind"])
        since = timezone.now() - DURATION_WINDOW
        for name, kind in sorted(KINDS.items()):
            rows = kind.model._default_manager.values("status").annotate(n=Count("pk")).order_by("status")
            for row in rows:
                by_status.add_metric([name, row["status"]], row["n"])
            spans = kind.model._default_manager.filter(finished_at__gte=since, started_at__isnull=False) \
                .values_list("started_at", "finished_at")
            seconds = [max(0.0, (end - start).total_seconds()) for start, end in spans]
            buckets = [(str(float(bound)), sum(1 for s in seconds if s <= bound)) for bound in DURATION_BUCKETS]
            buckets.append(("+Inf", len(seconds)))
            durations.add_metric([name], buckets, sum(seconds))
        yield by_status
        yield durations


def metrics_text() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return generate_latest(registry)


class MetricsEndpointMiddleware:
    """GET /metrics, to the metrics token only (first in MIDDLEWARE: see the module's docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != PATH:
            return self.get_response(request)
        token = settings.METRICS_TOKEN
        if not token:
            return json_error_response(404, "not_found", "Metrics are not served: set TINYFORGE_METRICS_TOKEN and "
                                                         "scrape with 'Authorization: Bearer <token>'.")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = json_error_response(401, "invalid_metrics_token", "GET /metrics needs the metrics token "
                                                                         "(TINYFORGE_METRICS_TOKEN) as "
                                                                         "'Authorization: Bearer <token>'.")
            response["WWW-Authenticate"] = "Bearer"
            return response
        if request.method != "GET":
            return json_error_response(405, "method_not_allowed", "GET /metrics only.")
        return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
