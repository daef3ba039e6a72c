import json
import time

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, mixins, renderers, serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from tinyforge.core.access import require_role
from tinyforge.core.api import AFTER_PARAMETERS, MAX_ID, TeamScopedViewSet, parse_id, rows_after
from tinyforge.core.events import in_log_of
from tinyforge.core.query import bounded_int, single_query_value
from tinyforge.core.roles import Role
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS, ServerSentEvent, errors
from tinyforge.core.serializers import EventPageSerializer, EventSerializer
from tinyforge.training import services
from tinyforge.training.filters import CheckpointFilter, TrainingRunFilter
from tinyforge.training.models import Checkpoint, RunEvent, RunMetric, TrainingRun
from tinyforge.training.serializers import (
    CheckpointSerializer,
    MetricPageSerializer,
    ResumeSerializer,
    RunMetricSerializer,
    TrainingRunSerializer,
)


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets a client that accepts only text/event-stream reach the stream action."""

    media_type = "text/event-stream"
    format = "sse"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode() if data is not None else b""


# The stream polls the database this often; it ends after STREAM_MAX_SECONDS (clients reconnect
# with Last-Event-ID and continue where they left off) so a web worker is never held forever.
STREAM_POLL_SECONDS = 1.0
STREAM_MAX_SECONDS = 600


def _sse(kind: str, data, cursor: str) -> bytes:
    return f"id: {cursor}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def run_stream(run_id: int, after_event: int, after_metric: int):
    from django.db import close_old_connections

    deadline = time.monotonic() + STREAM_MAX_SECONDS
    last_state = None
    try:
        while True:
            run = TrainingRun.all_teams.filter(pk=run_id).values(
                "status", "attempt", "progress_step", "progress_total", "eta_seconds", "tokens_per_second",
                "heartbeat_at", "error").first()
            if run is None:
                yield _sse("end", {"reason": "deleted"}, f"{after_event}:{after_metric}")
                return
            events = list(RunEvent.all_teams.filter(in_log_of(TrainingRun, run_id), id__gt=after_event).order_by("id")[:500])
            for event in events:
                after_event = event.id
                yield _sse("log", EventSerializer(event).data, f"{after_event}:{after_metric}")
            metrics = list(RunMetric.all_teams.filter(run_id=run_id, id__gt=after_metric).order_by("id")[:5000])
            if metrics:
                after_metric = metrics[-1].id
                yield _sse("metrics", RunMetricSerializer(metrics, many=True).data, f"{after_event}:{after_metric}")
            if run != last_state:
                last_state = run
                yield _sse("run", run, f"{after_event}:{after_metric}")
            drained = len(events) < 500 and len(metrics) < 5000
            if drained and run["status"] in ("succeeded", "failed", "cancelled"):
                yield _sse("end", {"status": run["status"]}, f"{after_event}:{after_metric}")
                return
            if time.monotonic() > deadline:
                return
            if drained:
                yield b": keep-alive\n\n"  # also how a closed connection is noticed
                time.sleep(STREAM_POLL_SECONDS)
    finally:
        close_old_connections()


RunEstimateSerializer = inline_serializer("RunEstimate", {
    "steps": serializers.IntegerField(), "tokens": serializers.IntegerField(),
    "seconds": serializers.FloatField(allow_null=True), "basis": serializers.CharField(),
})
TrainingOptionsSerializer = inline_serializer("TrainingOptions", {
    "base_models": serializers.ListField(child=inline_serializer("BaseModelPreset", {
        "name": serializers.CharField(), "hf_id": serializers.CharField(), "license": serializers.CharField()})),
    "hyperparameters": serializers.ListField(child=inline_serializer("Hyperparameter", {
        "name": serializers.CharField(),
        "type": serializers.ChoiceField(choices=["int", "float", "bool", "choice", "list", "str"]),
        "nullable": serializers.BooleanField(help_text="null means: derived by the engine (see help)"),
        "default": serializers.JSONField(allow_null=True), "choices": serializers.ListField(child=serializers.CharField()),
        "help": serializers.CharField()})),
    "presets": serializers.ListField(child=inline_serializer("TrainingPreset", {
        "name": serializers.CharField(),
        "overrides": serializers.DictField(help_text="What the preset changes from the defaults"),
        "resolved": serializers.DictField(child=serializers.DictField(),
                                          help_text="The full config per method (lora, full): what a run gets")})),
    "default_preset": serializers.CharField(),
})
RunComparisonSerializer = inline_serializer("RunComparison", {
    "runs": serializers.ListField(child=serializers.DictField()),
    "config_keys": serializers.ListField(child=serializers.CharField()),
    "config_differences": serializers.ListField(child=serializers.CharField()),
    "metrics": serializers.DictField(child=serializers.ListField(child=serializers.DictField())),
})


@extend_schema_view(
    list=extend_schema(summary="Training runs (filter by project, status, method...)",
                       responses={200: TrainingRunSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One run with its progress", responses={200: TrainingRunSerializer, **OBJECT_ERRORS}),
    create=extend_schema(summary="Queue a training run (404: base_model names no run of the team; 409: that run has no weights)",
                         responses={201: TrainingRunSerializer, **errors(400, 401, 403, 404, 409)}),
    partial_update=extend_schema(summary="Rename a run", responses={200: TrainingRunSerializer, **WRITE_ERRORS}),
    destroy=extend_schema(summary="Delete a finished run and its files", responses={204: None, **errors(401, 403, 404, 409)}),
)
class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                         mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = TrainingRun
    serializer_class = TrainingRunSerializer
    select_related = ("project",)
    filterset_class = TrainingRunFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "name", "status"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if self.action in ("list", "retrieve", "create", "cancel", "resume"):
            context["queue_positions"] = services.queue_positions()
        return context

    def perform_create(self, serializer):
        fields = serializer.validated_data
        require_role(self.request, fields["project"].team_id, Role.MEMBER, action="start runs")
        serializer.instance = services.create_run(
            self.request, project=fields["project"], name=fields["name"], dataset_version=fields["dataset_version"],
            validation_version=fields.get("validation_version"), base_model=fields["base_model"],
            method=fields.get("method", "lora"), config=fields.get("config", {}),
        )

    def perform_update(self, serializer):
        serializer.instance = services.update_run(self.request, serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_run(self.request, instance)

    @extend_schema(request=None, responses={200: TrainingRunSerializer, **errors(401, 403, 404, 409)},
                   summary="Cancel a run (a no-op when already cancelled; 409 when it has finished)")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        return Response(self.get_serializer(services.cancel_run(request, run)).data)

    @extend_schema(request=ResumeSerializer, responses={200: TrainingRunSerializer, **errors(400, 401, 403, 404, 409)},
                   summary="Resume a failed or cancelled run from a checkpoint, as its next attempt")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        run = self.get_object()
        body = ResumeSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        return Response(self.get_serializer(services.resume_run(request, run, body.validated_data.get("checkpoint"))).data)

    @extend_schema(parameters=[*AFTER_PARAMETERS, OpenApiParameter("level", str), OpenApiParameter("source", str)],
                   responses={200: EventPageSerializer, **OBJECT_ERRORS},
                   summary="The run's log lines after a cursor, oldest first")
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        run = self.get_object()
        queryset = RunEvent.all_teams.filter(in_log_of(TrainingRun, run.pk))  # scoped by the run fetched above
        for name in ("level", "source"):
            if value := single_query_value(request, name):
                queryset = queryset.filter(**{name: value})
        rows, cursor, more = rows_after(queryset, request)
        return Response({"results": EventSerializer(rows, many=True).data, "next_after": cursor, "has_more": more})

    @extend_schema(parameters=[*AFTER_PARAMETERS, OpenApiParameter("name", str, description="Only this metric")],
                   responses={200: MetricPageSerializer, **OBJECT_ERRORS},
                   summary="The run's metric points after a cursor, oldest first")
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        run = self.get_object()
        queryset = RunMetric.all_teams.filter(run=run)
        if name := single_query_value(request, "name"):
            queryset = queryset.filter(name=name)
        rows, cursor, more = rows_after(queryset, request, default_limit=1000, max_limit=10000)
        return Response({"results": RunMetricSerializer(rows, many=True).data, "next_after": cursor, "has_more": more})

    @extend_schema(responses={200: TrainingOptionsSerializer, **READ_ERRORS},
                   summary="The new-run form's choices from the engine: base models, hyperparameters with "
                           "defaults and help, presets resolved per method")
    @action(detail=False, methods=["get"], url_path="config-options")
    def config_options(self, request):
        return Response(services.training_options())

    @extend_schema(request=TrainingRunSerializer, responses={200: RunEstimateSerializer, **errors(400, 401, 403, 404, 409)},
                   summary="Expected steps, tokens and duration of a run before creating it (same body as create)")
    @action(detail=False, methods=["post"])
    def estimate(self, request):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = body.validated_data
        require_role(request, fields["project"].team_id, Role.VIEWER, action="estimate runs")
        return Response(services.estimate_run(dataset_version=fields["dataset_version"], config=fields["config"],
                                              validation_version=fields.get("validation_version")))

    @extend_schema(parameters=[OpenApiParameter("ids", str, required=True, description="Run ids, comma-separated (2 to 10)")],
                   responses={200: RunComparisonSerializer, **READ_ERRORS},
                   summary="Several runs' metrics aligned by step, and their configs side by side")
    @action(detail=False, methods=["get"])
    def compare(self, request):
        raw = [part for part in (single_query_value(request, "ids") or "").split(",") if part.strip()]
        ids = list(dict.fromkeys(parse_id(part.strip(), "ids") for part in raw))
        if not 2 <= len(ids) <= 10:
            raise exceptions.ValidationError({"ids": ["Give 2 to 10 run ids, comma-separated."]})
        runs = {run.pk: run for run in self.get_queryset().filter(pk__in=ids)}
        missing = [i for i in ids if i not in runs]
        if missing:
            raise exceptions.NotFound(f"No run with id {', '.join(map(str, missing))}.")
        return Response(services.compare_runs([runs[i] for i in ids]))

    @extend_schema(parameters=[OpenApiParameter("after_event", OpenApiTypes.INT), OpenApiParameter("after_metric", OpenApiTypes.INT)],
                   responses={(200, "text/event-stream"): ServerSentEvent, **OBJECT_ERRORS},
                   summary="Server-Sent Events: log lines, metric points and progress as they happen (curl -N)")
    @action(detail=True, methods=["get"], renderer_classes=[renderers.JSONRenderer, EventStreamRenderer])
    def stream(self, request, pk=None):
        run = self.get_object()
        cursors = (request.headers.get("Last-Event-ID") or "").split(":")
        resumed = cursors if len(cursors) == 2 else ("0", "0")
        after = [bounded_int(single_query_value(request, name) or cursor or "0", name, 0, MAX_ID)
                 for name, cursor in zip(("after_event", "after_metric"), resumed)]
        stream = run_stream(run.pk, *after)
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx passes each event on at once
        return response


@extend_schema_view(
    list=extend_schema(summary="Checkpoints (filter by run); the best one is marked",
                       responses={200: CheckpointSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One checkpoint", responses={200: CheckpointSerializer, **OBJECT_ERRORS}),
)
class CheckpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = Checkpoint
    serializer_class = CheckpointSerializer
    filterset_class = CheckpointFilter
    ordering_fields = ["step", "eval_loss", "created_at"]


