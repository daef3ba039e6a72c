from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, renderers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from tinyforge.core import storage
from tinyforge.core.access import require_role, visible_team_ids
from tinyforge.core.api import TeamScopedViewSet, parse_id
from tinyforge.core.parsers import JSONParser
from tinyforge.core.permissions import TeamRolePermission
from tinyforge.core.roles import Role, Scope
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS, ServerSentEvent, errors
from tinyforge.datasets.serializers import DatasetVersionSerializer
from tinyforge.deployments import proxy, services
from tinyforge.deployments.feedback import ROW_KINDS, create_feedback_version, feedback_rows, give_feedback
from tinyforge.deployments.filters import CompletionFilter, DeploymentFilter, ExportFilter, FeedbackFilter
from tinyforge.deployments.models import Completion, Deployment, DeploymentStatus, Export, ExportStatus, Feedback
from tinyforge.deployments.serializers import (
    CompletionSerializer, DeploymentSerializer, ExportSerializer, FeedbackSerializer, FeedbackSummarySerializer,
    FeedbackVersionSerializer, GiveFeedbackSerializer, PlaygroundChatSerializer,
)
from tinyforge.errors import Conflict
from tinyforge.training.views import EventStreamRenderer


@extend_schema_view(
    list=extend_schema(summary="Deployments (filter by project, run, status)",
                       responses={200: DeploymentSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One deployment with its request statistics",
                           responses={200: DeploymentSerializer, **OBJECT_ERRORS}),
    partial_update=extend_schema(summary="Rename a deployment (its OpenAI model id)",
                                 responses={200: DeploymentSerializer, **WRITE_ERRORS}),
    destroy=extend_schema(summary="Undeploy and delete", responses={204: None, **OBJECT_ERRORS}),
)
class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Deployment
    serializer_class = DeploymentSerializer
    select_related = ("run", "project")
    filterset_class = DeploymentFilter
    ordering_fields = ["created_at", "name", "status", "request_count"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @extend_schema(summary="Deploy a run (its best checkpoint unless one is chosen)",
                   responses={201: DeploymentSerializer, **errors(400, 401, 403, 404, 409)})
    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        run = fields["run"]
        require_role(request, run.project.team_id, Role.MEMBER, action="deploy models")
        deployment = services.create_deployment(
            request, run=run, name=fields["name"], checkpoint=fields.get("checkpoint"),
            runtime=fields.get("runtime", "pytorch"), merge_adapter=fields.get("merge_adapter", False),
            precision=fields.get("precision", "auto"), gguf_type=fields.get("gguf_type", "f16"),
            override_gate=fields.get("override_gate", False), override_reason=fields.get("override_reason", ""),
        )
        return Response(self.get_serializer(deployment).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = services.update_deployment(self.request, serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_deployment(self.request, instance)

    @extend_schema(request=None, responses={200: DeploymentSerializer, **errors(401, 403, 404, 409)},
                   summary="Undeploy: the inference service drops it; the record stays")
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return Response(self.get_serializer(services.stop_deployment(request, self.get_object())).data)

    @property
    def required_scope(self):
        """A token chats with the `inference` scope (as it would on /v1/), and manages with read/write."""
        return Scope.INFERENCE if getattr(self, "action", None) == "chat" else None

    @extend_schema(request=PlaygroundChatSerializer,
                   responses={(200, "text/event-stream"): ServerSentEvent, (200, "application/json"): OpenApiTypes.OBJECT,
                              **errors(400, 401, 403, 404, 409)},
                   summary="Playground: chat with the deployment, streamed token by token (OpenAI chunks over SSE)")
    @action(detail=True, methods=["post"], parser_classes=[JSONParser],
            renderer_classes=[renderers.JSONRenderer, EventStreamRenderer])
    def chat(self, request, pk=None):
        # Anyone who sees the deployment may try it, viewers included: chatting changes nothing.
        deployment = self.get_queryset().filter(pk=parse_id(pk)).first()
        if deployment is None:
            raise exceptions.NotFound("No such deployment in your teams.")
        if not isinstance(request.data, dict):
            raise exceptions.ValidationError({"non_field_errors": ["Send a JSON object with `messages`."]})
        if deployment.status != DeploymentStatus.READY:
            hint = {"pending": "it is still being prepared; try again in a few seconds",
                    "failed": f"it failed: {deployment.error}", "stopped": "start it again first"}
            raise Conflict(f"Deployment {deployment.name} is {deployment.status}: {hint[deployment.status]}.")
        return proxy.playground_chat(deployment, request.data)

    @extend_schema(request=None, responses={200: DeploymentSerializer, **errors(401, 403, 404, 409)},
                   summary="Deploy a stopped or failed deployment again")
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return Response(self.get_serializer(services.restart_deployment(request, self.get_object())).data)


@extend_schema_view(
    list=extend_schema(summary="Exports (filter by team, project, run, checkpoint, status, export_format, quantize)",
                       responses={200: ExportSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One export with its verification numbers", responses={200: ExportSerializer, **OBJECT_ERRORS}),
    destroy=extend_schema(summary="Delete an export and its file", responses={204: None, **OBJECT_ERRORS}),
)
class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Export
    serializer_class = ExportSerializer
    select_related = ("run", "project")
    filterset_class = ExportFilter
    ordering_fields = ["created_at", "format", "status", "size_bytes"]

    @extend_schema(summary="Export a run's model (HF folder, ONNX verified against PyTorch, int8, bundle)",
                   responses={201: ExportSerializer, **errors(400, 401, 403, 404, 409)})
    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        run = fields["run"]
        require_role(request, run.project.team_id, Role.MEMBER, action="export models")
        export = services.create_export(request, run=run, checkpoint=fields.get("checkpoint"),
                                        format=fields["format"], quantize=fields.get("quantize", "none"),
                                        runtime=fields["runtime"], keep_anyway=fields.get("keep_anyway", False))
        return Response(self.get_serializer(export).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.delete_export(self.request, instance)

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY, **errors(401, 403, 404, 409)},
                   summary="Download the export (zip)")
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        export = self.get_object()
        if export.status != ExportStatus.SUCCEEDED or not export.storage_key:
            raise Conflict(f"The export is {export.status}; only succeeded exports can be downloaded.")
        return FileResponse(storage.open_for_download(export.storage_key), as_attachment=True,
                            filename=storage.path(export.storage_key).name)


class FeedbackPermission(TeamRolePermission):
    """Giving feedback: which scope or role it needs is the completion's team's setting
    (feedback.require_feedback_permission), known once the completion is found."""

    def has_permission(self, request, view) -> bool:
        if getattr(view, "action", None) == "create":
            if not (request.user and request.user.is_authenticated):
                raise exceptions.NotAuthenticated()
            return True
        return super().has_permission(request, view)


@extend_schema_view(
    list=extend_schema(summary="Answers the inference service returned and keeps for feedback (filter by deployment, "
                               "run, source)", responses={200: CompletionSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One answer by the id the API returned: its prompt, answer, deployment, run and "
                                   "checkpoint", responses={200: CompletionSerializer, **OBJECT_ERRORS}),
)
class CompletionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = Completion
    serializer_class = CompletionSerializer
    filterset_class = CompletionFilter
    ordering_fields = ["created_at"]
    lookup_value_regex = "[A-Za-z0-9_-]{1,64}"

    def get_object(self):
        # Its id is the string the API returned (chatcmpl-…), not a number.
        return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])


@extend_schema_view(
    list=extend_schema(summary="Feedback on answers (filter by deployment, completion, kind)",
                       responses={200: FeedbackSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One piece of feedback", responses={200: FeedbackSerializer, **OBJECT_ERRORS}),
)
class FeedbackViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    model = Feedback
    serializer_class = FeedbackSerializer
    filterset_class = FeedbackFilter
    ordering_fields = ["created_at"]
    permission_classes = [FeedbackPermission]

    @extend_schema(request=GiveFeedbackSerializer, responses={201: FeedbackSerializer, **errors(400, 401, 403, 404)},
                   summary="Rate, correct, or choose between two answers by the ids the API returned (API token "
                           "with 'inference' or 'write' scope, or a session; the team may require write)")
    def create(self, request):
        body = GiveFeedbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        feedback = give_feedback(request, **body.validated_data)
        return Response(FeedbackSerializer(feedback).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("deployment", int, required=False),
                               OpenApiParameter("team", int, required=False)],
                   responses={200: FeedbackSummarySerializer, **errors(400, 401, 403, 404)},
                   summary="How much feedback there is and how many rows of each kind a dataset version would hold")
    @action(detail=False, methods=["get"])
    def summary(self, request):
        teams = visible_team_ids(request)
        team = parse_id(request.query_params["team"], "team") if "team" in request.query_params else None
        deployment = (parse_id(request.query_params["deployment"], "deployment")
                      if "deployment" in request.query_params else None)
        if deployment is not None:
            found = Deployment.objects.for_teams(teams).filter(pk=deployment).first()
            if found is None:
                raise exceptions.NotFound("No such deployment in your teams.")
            team = found.team_id
        if team is None:
            if len(teams) != 1:
                raise exceptions.ValidationError({"team": ["Say which team (you are in several)."]})
            team = teams[0]
        elif team not in teams:
            raise exceptions.NotFound("No such team.")
        rows = {kind: len(feedback_rows(team, kind, deployment_id=deployment)) for kind in ROW_KINDS}
        count = self.get_queryset().filter(team_id=team)
        if deployment is not None:
            count = count.filter(Feedback.on_deployment(deployment))
        return Response({"feedback": count.count(), "rows": rows})

    @extend_schema(request=FeedbackVersionSerializer, responses={201: DatasetVersionSerializer, **WRITE_ERRORS},
                   summary="Make a dataset version from the team's feedback: preference pairs, unpaired "
                           "preferences or supervised rows (imported and validated like an upload)")
    @action(detail=False, methods=["post"], url_path="dataset-version")
    def dataset_version(self, request):
        body = FeedbackVersionSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        fields = body.validated_data
        dataset = fields["dataset"]
        require_role(request, dataset.project.team_id, Role.MEMBER, action="make dataset versions")
        version = create_feedback_version(request, dataset=dataset, kind=fields["kind"],
                                          deployment=fields.get("deployment"), note=fields.get("note", ""))
        return Response(DatasetVersionSerializer(version, context={"request": request}).data,
                        status=status.HTTP_201_CREATED)
