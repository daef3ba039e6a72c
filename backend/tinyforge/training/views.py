from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from tinyforge.accounts.models import Role
from tinyforge.core.access import require_role
from tinyforge.core.api import AFTER_PARAMETERS, TeamScopedViewSet, rows_after
from tinyforge.core.audit import audit
from tinyforge.core.serializers import EventPageSerializer, EventSerializer
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS, errors
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


@extend_schema_view(
    list=extend_schema(summary="Training runs (filter by project, status, method...)",
                       responses={200: TrainingRunSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One run with its progress", responses={200: TrainingRunSerializer, **OBJECT_ERRORS}),
    create=extend_schema(summary="Queue a training run", responses={201: TrainingRunSerializer, **WRITE_ERRORS}),
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

    def perform_create(self, serializer):
        fields = serializer.validated_data
        require_role(self.request, fields["project"].team_id, Role.MEMBER, action="start runs")
        serializer.instance = services.create_run(
            self.request, project=fields["project"], name=fields["name"], dataset_version=fields["dataset_version"],
            validation_version=fields.get("validation_version"), base_model=fields["base_model"],
            method=fields.get("method", "lora"), config=fields.get("config", {}),
        )

    def perform_update(self, serializer):
        run = serializer.save()
        audit(self.request, "updated", run, changes=serializer.validated_data)

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
        queryset = RunEvent.all_teams.filter(run=run)  # scoped by the run fetched above
        for name in ("level", "source"):
            if request.query_params.get(name):
                queryset = queryset.filter(**{name: request.query_params[name]})
        rows, cursor, more = rows_after(queryset, request)
        return Response({"results": EventSerializer(rows, many=True).data, "next_after": cursor, "has_more": more})

    @extend_schema(parameters=[*AFTER_PARAMETERS, OpenApiParameter("name", str, description="Only this metric")],
                   responses={200: MetricPageSerializer, **OBJECT_ERRORS},
                   summary="The run's metric points after a cursor, oldest first")
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        run = self.get_object()
        queryset = RunMetric.all_teams.filter(run=run)
        if request.query_params.get("name"):
            queryset = queryset.filter(name=request.query_params["name"])
        rows, cursor, more = rows_after(queryset, request, default_limit=1000, max_limit=10000)
        return Response({"results": RunMetricSerializer(rows, many=True).data, "next_after": cursor, "has_more": more})


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


