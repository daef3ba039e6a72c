from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, parsers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from tinyforge.accounts.models import Role
from tinyforge.core.access import require_role, visible_team_ids
from tinyforge.core.api import TeamScopedViewSet, parse_id
from tinyforge.core.parsers import JSONParser
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS, errors
from tinyforge.datasets.models import DatasetVersion
from tinyforge.evals import services
from tinyforge.evals.filters import EvalSetFilter, EvalSetVersionFilter, EvaluationFilter, GateFilter
from tinyforge.evals.models import EvalSet, EvalSetVersion, Evaluation, Gate
from tinyforge.evals.serializers import (
    EvalResultSerializer, EvalSetSerializer, EvalSetVersionSerializer, EvaluationSerializer, GateCheckSerializer,
    GateSerializer, GateStatusSerializer, NewVersionSerializer,
)
from tinyforge.training.models import TrainingRun


@extend_schema_view(
    create=extend_schema(summary="Create an eval set (then add a version of rows)",
                         responses={201: EvalSetSerializer, **errors(400, 401, 403, 404)}),
    list=extend_schema(summary="Eval sets (filter by project)", responses={200: EvalSetSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One eval set", responses={200: EvalSetSerializer, **OBJECT_ERRORS}),
    partial_update=extend_schema(summary="Rename or describe an eval set", responses={200: EvalSetSerializer, **WRITE_ERRORS}),
    destroy=extend_schema(summary="Delete an eval set (not while an evaluation or gate uses it)",
                          responses={204: None, **errors(401, 403, 404, 409)}),
)
class EvalSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = EvalSet
    serializer_class = EvalSetSerializer
    filterset_class = EvalSetFilter
    ordering_fields = ["created_at", "name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        fields = serializer.validated_data
        require_role(self.request, fields["project"].team_id, Role.MEMBER, action="create eval sets")
        serializer.instance = services.create_eval_set(self.request, project=fields["project"], name=fields["name"],
                                                       description=fields.get("description", ""))

    def perform_update(self, serializer):
        require_role(self.request, serializer.instance.project.team_id, Role.MEMBER, action="change eval sets")
        serializer.instance = services.update_eval_set(self.request, serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance):
        require_role(self.request, instance.project.team_id, Role.MEMBER, action="delete eval sets")
        services.delete_eval_set(self.request, instance)

    @extend_schema(
        summary="Add a version: an uploaded JSONL or CSV file (multipart `file`), rows, a run's validation rows, "
                "rows picked in a dataset version, the shipped general set, or a Playground conversation (added to the "
                "previous version's rows)",
        request={"application/json": NewVersionSerializer,
                 "multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
        responses={201: EvalSetVersionSerializer, **errors(400, 401, 403, 404, 409, 413)})
    @action(detail=True, methods=["post"], parser_classes=[JSONParser, parsers.MultiPartParser])
    def versions(self, request, pk=None):
        eval_set = self.get_object()
        require_role(request, eval_set.project.team_id, Role.MEMBER, action="add eval set versions")
        upload = request.FILES.get("file") if hasattr(request, "FILES") else None
        if upload is not None:
            if set(request.data) - {"file"}:
                raise exceptions.ValidationError({"file": ["Send the file alone."]})
            version = services.version_from_upload(request, eval_set, upload)
        else:
            serializer = NewVersionSerializer(data=request.data, context=self.get_serializer_context())
            serializer.is_valid(raise_exception=True)
            fields = serializer.validated_data
            if "rows" in fields:
                version = services.version_from_rows(request, eval_set, fields["rows"])
            elif fields.get("playground") is not None:
                version = services.version_from_playground(request, eval_set, fields["playground"])
            elif fields.get("run") is not None:
                version = services.version_from_run_validation(request, eval_set, fields["run"])
            elif fields.get("dataset_version"):
                dataset_version = DatasetVersion.objects.for_teams(visible_team_ids(request)).filter(
                    pk=fields["dataset_version"]).select_related("dataset").first()
                if dataset_version is None:
                    raise exceptions.ValidationError({"dataset_version": ["No such dataset version in your teams."]})
                version = services.version_from_dataset_version(request, eval_set, dataset_version,
                                                                fields.get("row_numbers"))
            else:
                version = services.version_from_general(request, eval_set)
        return Response(EvalSetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="Eval set versions (filter by eval_set, project)",
                       responses={200: EvalSetVersionSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One eval set version", responses={200: EvalSetVersionSerializer, **OBJECT_ERRORS}),
)
class EvalSetVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = EvalSetVersion
    serializer_class = EvalSetVersionSerializer
    filterset_class = EvalSetVersionFilter
    select_related = ("eval_set",)
    ordering_fields = ["created_at", "number"]

    @extend_schema(summary="The version's rows, paged", responses={200: OpenApiTypes.OBJECT, **OBJECT_ERRORS})
    @action(detail=True, methods=["get"])
    def rows(self, request, pk=None):
        rows = [{"index": i, **row.to_dict()} for i, row in enumerate(services.read_version_rows(self.get_object()))]
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(page)


RESULT_PARAMETERS = [
    OpenApiParameter("regressions", OpenApiTypes.BOOL, description="Only rows an earlier target passed and a later one fails"),
    OpenApiParameter("disagreements", OpenApiTypes.BOOL, description="Only rows the targets (or the judge's two orders) "
                     "disagree on"),
    OpenApiParameter("tag", OpenApiTypes.STR, description="Only rows with this tag"),
    OpenApiParameter("page", OpenApiTypes.INT), OpenApiParameter("page_size", OpenApiTypes.INT),
]


@extend_schema_view(
    create=extend_schema(summary="Evaluate: an eval set version answered by 1-4 targets, scored, optionally judged",
                         responses={201: EvaluationSerializer, **errors(400, 401, 403, 404)}),
    list=extend_schema(summary="Evaluations (filter by project, run, eval_set_version, status, purpose)",
                       responses={200: EvaluationSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One evaluation with its aggregates (95% intervals) per target",
                           responses={200: EvaluationSerializer, **OBJECT_ERRORS}),
    destroy=extend_schema(summary="Delete an evaluation and its results", responses={204: None, **OBJECT_ERRORS}),
)
class EvaluationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Evaluation
    serializer_class = EvaluationSerializer
    filterset_class = EvaluationFilter
    select_related = ("project",)
    ordering_fields = ["created_at", "status"]

    def perform_create(self, serializer):
        fields = serializer.validated_data
        version = fields["eval_set_version"]
        project = version.eval_set.project
        require_role(self.request, project.team_id, Role.MEMBER, action="start evaluations")
        serializer.instance = services.create_evaluation(
            self.request, project=project, version=version, targets=fields["targets"],
            scorers=fields.get("scorers", []), judge=fields.get("judge"), max_tokens=fields.get("max_tokens", 128),
            name=fields.get("name", ""))

    def perform_destroy(self, instance):
        require_role(self.request, instance.project.team_id, Role.MEMBER, action="delete evaluations")
        services.delete_evaluation(self.request, instance)

    @extend_schema(request=None, summary="Cancel a queued or running evaluation (finished rows are kept)",
                   responses={200: EvaluationSerializer, **errors(401, 403, 404, 409)})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        evaluation = self.get_object()
        require_role(request, evaluation.project.team_id, Role.MEMBER, action="cancel evaluations")
        return Response(self.get_serializer(services.cancel_evaluation(request, evaluation)).data)

    @extend_schema(summary="Per-row results: every target's answer, scores and judge verdict, paged",
                   parameters=RESULT_PARAMETERS, responses={200: EvalResultSerializer(many=True), **OBJECT_ERRORS})
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        evaluation = self.get_object()
        rows = evaluation.results.all().order_by("index")
        for name in ("regressions", "disagreements"):
            value = request.query_params.get(name)
            if value not in (None, "", "false", "0", "true", "1"):
                raise exceptions.ValidationError({name: ["Must be true or false."]})
            if value in ("true", "1"):
                rows = rows.filter(**{"regression" if name == "regressions" else "disagreement": True})
        tag = request.query_params.get("tag")
        if tag:
            rows = rows.filter(tags_text__contains=f"|{tag}|")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(EvalResultSerializer(page, many=True).data)

    @extend_schema(summary="Whether a run passes its project's gate (for the run page and the Deploy dialog)",
                   parameters=[OpenApiParameter("run", OpenApiTypes.INT, required=True)],
                   responses={200: GateStatusSerializer, **errors(400, 401, 403, 404)})
    @action(detail=False, methods=["get"], url_path="gate-status")
    def gate_status(self, request):
        run_id = parse_id(request.query_params.get("run", ""), "run")
        run = TrainingRun.objects.for_teams(visible_team_ids(request)).filter(pk=run_id).first()
        if run is None:
            raise exceptions.NotFound("No such run in your teams.")
        return Response(GateStatusSerializer(services.gate_status(run)).data)


@extend_schema_view(
    create=extend_schema(summary="Set the project's gate (deploy only if): replaces the one it had",
                         responses={201: GateSerializer, **errors(400, 401, 403, 404)}),
    list=extend_schema(summary="Gates (one per project at most)", responses={200: GateSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One gate", responses={200: GateSerializer, **OBJECT_ERRORS}),
    destroy=extend_schema(summary="Remove a project's gate", responses={204: None, **OBJECT_ERRORS}),
)
class GateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Gate
    serializer_class = GateSerializer
    filterset_class = GateFilter
    select_related = ("project", "eval_set")

    def perform_create(self, serializer):
        fields = serializer.validated_data
        require_role(self.request, fields["project"].team_id, Role.ADMIN, action="set the deploy gate")
        scorer = fields.get("scorer")
        serializer.instance = services.set_gate(
            self.request, project=fields["project"], eval_set=fields["eval_set"],
            scorer=dict(scorer) if scorer else None, judge=fields.get("judge"), threshold=fields["threshold"],
            max_drop=fields.get("max_drop"), enabled=fields.get("enabled", True))

    def perform_destroy(self, instance):
        require_role(self.request, instance.project.team_id, Role.ADMIN, action="remove the deploy gate")
        services.delete_gate(self.request, instance)

    @extend_schema(request=GateCheckSerializer, summary="Evaluate a run against the gate now",
                   responses={201: EvaluationSerializer, **errors(400, 401, 403, 404, 409)})
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        gate = self.get_object()
        serializer = GateCheckSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        run = serializer.validated_data["run"]
        if run.project_id != gate.project_id:
            raise exceptions.ValidationError({"run": ["Must be a run of the gate's project."]})
        require_role(request, gate.project.team_id, Role.MEMBER, action="check runs against the gate")
        evaluation = services.check_gate(request, gate, run)
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED)
