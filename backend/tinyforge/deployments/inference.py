"""The platform's side of the inference service: what `tinyforge serve-platform` plugs into the
pure-Python serving app (tinyforge.serving, which never imports Django).

- DeploymentRegistry: the deployments whose model folder the deploy job prepared (pending or
  ready), from every team. The service polls it every two seconds, so a new deployment is picked
  up and a stopped one unloaded without a restart. What the service reports back (loaded,
  failed, unloaded) becomes the deployment's status and events: a deployment is `ready` once it
  answers, and one whose files were deleted becomes `failed` with the reason while the others
  keep serving.
- TokenAuthenticator: API tokens with the `inference` scope. A token sees its own team's
  deployments under their names and nothing else (another team's name is a 404, as if it did not
  exist). Each deployment is served under a name unique across teams (`deployment-<id>`), which
  also labels its Prometheus series.
- Playground keys: the web process chats with one deployment for a signed-in user by sending a
  short-lived key signed with SECRET_KEY that names that deployment only.
- Team keys: an import whose teacher is the platform's own service (the qa and knowledge recipes)
  sends a key signed the same way that names the importing team: it sees that team's deployments
  only, expires after a day, and exists nowhere but in the worker's memory. No operator needs to
  create a token for the platform to call itself.
- CompletionLog: every answer the service returns to a person (an API token, the Playground) is
  kept under its id for feedback (deployments/completions.py); the platform's own jobs' calls are not.
- ServingStatsRecorder: copies each deployment's request count, errors, tokens, latency
  percentiles and memory (its own, and the runtime's it shares) from the service's Prometheus
  metrics onto its row every few seconds.
"""

from __future__ import annotations

import logging
import threading

from django.core import signing
from django.db import close_old_connections
from django.utils import timezone

from tinyforge.accounts.authentication import authenticate_token
from tinyforge.core import storage
from tinyforge.core.events import record_event
from tinyforge.core.lifecycle import InvalidTransition
from tinyforge.core.models import EventLevel
from tinyforge.core.roles import Scope
from tinyforge.deployments import lifecycle
from tinyforge.deployments.completions import keep_completion
from tinyforge.deployments.models import CompletionSource, Deployment, DeploymentStatus
from tinyforge.serving.answers import Answer, AnswerLog
from tinyforge.serving.api import APIError
from tinyforge.serving.auth import Authenticator, Caller
from tinyforge.serving.metrics import split_memory
from tinyforge.serving.registry import ModelRegistry, ModelSpec

logger = logging.getLogger(__name__)

SERVED_PREFIX = "deployment-"
SERVED_STATUSES = (DeploymentStatus.PENDING, DeploymentStatus.READY)
PLAYGROUND_PREFIX = "tfplay_"
PLAYGROUND_SALT = "tinyforge.deployments.playground"
PLAYGROUND_KEY_SECONDS = 300
TEAM_PREFIX = "tfteam_"
TEAM_SALT = "tinyforge.deployments.team"
TEAM_KEY_SECONDS = 24 * 3600
STATS_SECONDS = 5.0
# How the callers of the platform's own keys are named (CompletionLog tells them apart by it).
PLAYGROUND_CALLER = "playground"
TEAM_CALLER = "jobs of team "


def served_name(deployment_id: int) -> str:
    return f"{SERVED_PREFIX}{deployment_id}"


def deployment_id_of(name: str) -> int | None:
    number = name.removeprefix(SERVED_PREFIX)
    return int(number) if name.startswith(SERVED_PREFIX) and number.isdigit() else None


class DeploymentRegistry(ModelRegistry):
    refresh_seconds = 2.0

    def list_models(self) -> list[ModelSpec]:
        close_old_connections()  # a long-lived thread: drop a connection the database closed
        rows = (Deployment.all_teams.filter(status__in=SERVED_STATUSES).exclude(model_path="")
                .select_related("team").order_by("pk"))
        # The revision is the deploy job: a redeploy prepares a new folder and reloads.
        return [ModelSpec(name=served_name(d.pk), path=storage.path(d.model_path), revision=d.job_id,
                          owned_by=d.team.slug, precision=d.precision) for d in rows]

    def model_precision_chosen(self, name: str, choice) -> None:
        deployment_id = deployment_id_of(name)
        deployment = Deployment.all_teams.filter(pk=deployment_id).only("pk", "project_id").first() if deployment_id else None
        if deployment is None:
            return  # deleted meanwhile
        Deployment.all_teams.filter(pk=deployment.pk).update(
            serving_precision=choice.precision, precision_reason=choice.reason[:1000], precision_quality=choice.quality)
        record_event(**deployment.event_links(), source="inference",
                     message=f"serving in {choice.precision}: {choice.reason}",
                     level=EventLevel.WARNING if choice.fell_back else EventLevel.INFO)

    def model_state_changed(self, name: str, state: str, detail: str = "") -> None:
        deployment_id = deployment_id_of(name)
        deployment = (Deployment.all_teams.filter(pk=deployment_id).only("pk", "project_id", "model_path", "status")
                      .first() if deployment_id else None)
        if deployment is None:
            return  # deleted meanwhile

        def say(message: str, level: str = EventLevel.INFO) -> None:
            record_event(**deployment.event_links(), source="inference",
                         message=message, level=level)

        if state == "loading":
            say("the inference service is loading the model")
        elif state == "ready":
            try:
                lifecycle.mark_deployment_ready(deployment.pk, model_path=deployment.model_path)
            except InvalidTransition:
                say("the inference service loaded the model again")  # a restarted service
            else:
                say("ready: the inference service answers requests for this deployment")
        elif state == "failed":
            try:
                lifecycle.mark_deployment_failed(deployment.pk, detail)
            except InvalidTransition:
                pass
            say(f"the inference service cannot serve this deployment: {detail}", EventLevel.ERROR)
        elif state == "unloaded" and deployment.status == DeploymentStatus.STOPPED:
            say("unloaded from the inference service; requests for it now get 404")


class TokenAuthenticator(Authenticator):
    def authenticate(self, api_key: str | None) -> Caller | None:
        if api_key is None:
            return None
        close_old_connections()
        if api_key.startswith(PLAYGROUND_PREFIX):
            return _playground_caller(api_key)
        if api_key.startswith(TEAM_PREFIX):
            return _team_caller(api_key)
        token = authenticate_token(api_key)
        if token is None:
            return None
        if not token.has_scope(Scope.INFERENCE):
            raise APIError(403, f"the API token {token.prefix}… lacks the 'inference' scope; create a token with "
                           "it under Settings → API tokens", type="invalid_request_error", code="insufficient_scope")
        return Caller(f"token {token.prefix}", _team_models(token.team_id))


def _team_models(team_id: int) -> dict[str, str]:
    deployments = Deployment.all_teams.filter(team_id=team_id, status__in=SERVED_STATUSES)
    return {name: served_name(pk) for name, pk in deployments.values_list("name", "pk")}


def team_key(team_id: int) -> str:
    """A key that lets the platform's own jobs call the team's deployments for a day."""
    return TEAM_PREFIX + signing.dumps({"team": team_id}, salt=TEAM_SALT, compress=True)


def _team_caller(api_key: str) -> Caller | None:
    try:
        value = signing.loads(api_key.removeprefix(TEAM_PREFIX), salt=TEAM_SALT, max_age=TEAM_KEY_SECONDS)
    except signing.BadSignature:
        return None
    return Caller(f"{TEAM_CALLER}{value['team']}", _team_models(value["team"]))


def playground_key(deployment: Deployment) -> str:
    """A key that lets the bearer chat with this one deployment for a few minutes."""
    return PLAYGROUND_PREFIX + signing.dumps({"deployment": deployment.pk}, salt=PLAYGROUND_SALT, compress=True)


def _playground_caller(api_key: str) -> Caller | None:
    try:
        value = signing.loads(api_key.removeprefix(PLAYGROUND_PREFIX), salt=PLAYGROUND_SALT,
                              max_age=PLAYGROUND_KEY_SECONDS)
    except signing.BadSignature:
        return None
    deployment = Deployment.all_teams.filter(pk=value.get("deployment"), status__in=SERVED_STATUSES).first()
    if deployment is None:
        return Caller(PLAYGROUND_CALLER, {})
    return Caller(f"{PLAYGROUND_CALLER} of {deployment.name}", {deployment.name: served_name(deployment.pk)})


class CompletionLog(AnswerLog):
    """Keeps the answers of deployments for feedback; not those of the platform's own jobs (a
    teacher writing rows, a judge scoring), which nobody rates and which would push people's out."""

    def record(self, answer: Answer) -> None:
        deployment_id = deployment_id_of(answer.served_name)
        if deployment_id is None or answer.caller.startswith(TEAM_CALLER):
            return
        close_old_connections()
        source = CompletionSource.PLAYGROUND if answer.caller.startswith(PLAYGROUND_CALLER) else CompletionSource.API
        keep_completion(answer, deployment_id, source)


# --- request statistics ------------------------------------------------------------------------


def deployment_stats(metrics_registry) -> dict[int, dict]:
    """Per deployment id: request_count, error_count, tokens_in, tokens_out, latency_p50_ms,
    latency_p95_ms, own_memory_bytes and shared_memory_bytes, read from the service's Prometheus
    registry (what /metrics shows). Own memory is the deployment's adapter (on a shared base) or
    full weights; shared memory is the runtime under it (base weights, KV cache), which every
    deployment on that runtime reports again, so only own memory adds up across deployments."""
    stats: dict[int, dict] = {}
    buckets: dict[int, dict[float, float]] = {}
    memory: dict[int, dict[str, int]] = {}

    def entry(model: str) -> dict | None:
        pk = deployment_id_of(model)
        if pk is None:
            return None
        return stats.setdefault(pk, {"request_count": 0, "error_count": 0, "tokens_in": 0, "tokens_out": 0,
                                     "latency_p50_ms": None, "latency_p95_ms": None,
                                     "own_memory_bytes": None, "shared_memory_bytes": None})

    for family in metrics_registry.collect():
        for sample in family.samples:
            row = entry(sample.labels.get("model", ""))
            if row is None:
                continue
            if sample.name == "tinyforge_serving_requests_total":
                row["request_count"] += int(sample.value)
                if not sample.labels["status"].startswith("2"):
                    row["error_count"] += int(sample.value)
            elif sample.name == "tinyforge_serving_prompt_tokens_total":
                row["tokens_in"] += int(sample.value)
            elif sample.name == "tinyforge_serving_completion_tokens_total":
                row["tokens_out"] += int(sample.value)
            elif sample.name == "tinyforge_serving_request_duration_seconds_bucket":
                by_bound = buckets.setdefault(deployment_id_of(sample.labels["model"]), {})
                bound = float(sample.labels["le"])
                by_bound[bound] = by_bound.get(bound, 0.0) + sample.value  # summed over endpoints
            elif sample.name == "tinyforge_serving_model_memory_bytes":
                parts = memory.setdefault(deployment_id_of(sample.labels["model"]), {})
                parts[sample.labels["part"]] = int(sample.value)
    for pk, parts in memory.items():
        stats[pk]["own_memory_bytes"], stats[pk]["shared_memory_bytes"] = split_memory(parts)
    for pk, by_bound in buckets.items():
        cumulative = sorted(by_bound.items())
        stats[pk]["latency_p50_ms"] = _quantile_ms(cumulative, 0.5)
        stats[pk]["latency_p95_ms"] = _quantile_ms(cumulative, 0.95)
    return stats


def _quantile_ms(cumulative: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank."""
    total = cumulative[-1][1] if cumulative else 0
    if not total:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound * 1000  # past the last finite bucket: its bound is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return (lower_bound + (bound - lower_bound) * share) * 1000
        lower_bound, lower_count = bound, count
    return None


def record_deployment_stats(metrics_registry) -> int:
    """Write the current figures onto the deployments; returns how many rows changed."""
    close_old_connections()
    now = timezone.now()
    changed = 0
    for pk, figures in deployment_stats(metrics_registry).items():
        changed += Deployment.all_teams.filter(pk=pk).update(**figures, stats_updated_at=now)
    return changed


class ServingStatsRecorder:
    """A daemon thread running record_deployment_stats every STATS_SECONDS."""

    def __init__(self, metrics_registry, interval: float = STATS_SECONDS):
        self.metrics_registry, self.interval = metrics_registry, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deployment-stats", daemon=True)

    def start(self) -> ServingStatsRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                record_deployment_stats(self.metrics_registry)
            except Exception:
                logger.exception("recording the deployments' request statistics failed; retrying")
