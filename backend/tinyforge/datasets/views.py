from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, parsers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from tinyforge.core import storage
from tinyforge.core.access import require_role, team_id_of
from tinyforge.core.api import TeamScopedViewSet
from tinyforge.core.roles import Role
from tinyforge.core.schema import OBJECT_ERRORS, READ_ERRORS, WRITE_ERRORS, errors
from tinyforge.datasets import services
from tinyforge.datasets.filters import DataConnectionFilter, DatasetFilter, DatasetVersionFilter
from tinyforge.datasets.models import DataConnection, Dataset, DatasetVersion, DatasetVersionStatus
from tinyforge.datasets.serializers import (
    ConnectionPreviewSerializer,
    ConnectionProbeSerializer,
    ConnectionTestResultSerializer,
    DataConnectionSerializer,
    DatasetSerializer,
    DatasetVersionSerializer,
    DiffQuerySerializer,
    KnowledgeOptionsInfoSerializer,
    KnowledgePreviewResultSerializer,
    KnowledgePreviewSerializer,
    PreviewQuerySerializer,
    ReportQuerySerializer,
    UploadSerializer,
    ValidationReportSerializer,
    VersionDiffSerializer,
    VersionPreviewSerializer,
)
from tinyforge.errors import Conflict


@extend_schema_view(
    list=extend_schema(summary="Datasets of your projects", responses={200: DatasetSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One dataset", responses={200: DatasetSerializer, **OBJECT_ERRORS}),
    create=extend_schema(summary="Create a dataset in a project", responses={201: DatasetSerializer, **WRITE_ERRORS}),
    partial_update=extend_schema(summary="Rename or describe a dataset", responses={200: DatasetSerializer, **WRITE_ERRORS}),
    destroy=extend_schema(summary="Delete a dataset with all its versions", responses={204: None, **errors(401, 403, 404, 409)}),
)
class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = Dataset
    serializer_class = DatasetSerializer
    select_related = ("project",)
    filterset_class = DatasetFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        project = serializer.validated_data["project"]
        require_role(self.request, project.team_id, Role.MEMBER, action="create datasets")
        serializer.instance = services.create_dataset(
            self.request, project=project, name=serializer.validated_data["name"],
            description=serializer.validated_data.get("description", ""),
        )

    def perform_update(self, serializer):
        serializer.instance = services.update_dataset(self.request, serializer.instance, serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_dataset(self.request, instance)

    @extend_schema(request={"multipart/form-data": UploadSerializer},
                   responses={201: DatasetVersionSerializer, **WRITE_ERRORS, **errors(413)},
                   summary="Upload files as a new version (multipart; streamed to disk)")
    @action(detail=True, methods=["post"], parser_classes=[parsers.MultiPartParser])
    def upload(self, request, pk=None):
        dataset = self.get_object()
        upload = UploadSerializer(data=request.data, context={"team_id": dataset.project.team_id})
        upload.is_valid(raise_exception=True)
        version = services.create_upload_version(
            request, dataset=dataset, files=upload.validated_data["files"],
            options=upload.validated_data.get("options") or {}, note=upload.validated_data.get("note", ""),
        )
        return Response(DatasetVersionSerializer(version, context={"request": request}).data, status=status.HTTP_201_CREATED)


    @extend_schema(responses={200: KnowledgeOptionsInfoSerializer, **errors(401)},
                   summary="The knowledge recipe's teachers allowed here, default prompts and knobs")
    @action(detail=False, methods=["get"], url_path="knowledge-options")
    def knowledge_options(self, request):
        return Response(services.knowledge_options())

    @extend_schema(request={"multipart/form-data": KnowledgePreviewSerializer},
                   responses={200: KnowledgePreviewResultSerializer, **WRITE_ERRORS, **errors(413)},
                   summary="Knowledge recipe dry run: the estimate of teacher calls and tokens for the files, and the "
                           "rows and fact-check questions of their first chunks (nothing is saved)")
    @action(detail=True, methods=["post"], url_path="knowledge-preview", parser_classes=[parsers.MultiPartParser])
    def knowledge_preview(self, request, pk=None):
        dataset = self.get_object()
        require_role(request, team_id_of(dataset), Role.MEMBER, action="import data")
        preview = KnowledgePreviewSerializer(data=request.data, context={"team_id": dataset.project.team_id})
        preview.is_valid(raise_exception=True)
        fields = preview.validated_data
        return Response(services.knowledge_preview(dataset, fields["files"], fields["options"], fields["chunks"]))


@extend_schema_view(
    list=extend_schema(summary="Dataset versions (filter by project, dataset, status)",
                       responses={200: DatasetVersionSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One version with its statistics and validation report",
                           responses={200: DatasetVersionSerializer, **OBJECT_ERRORS}),
    destroy=extend_schema(summary="Delete a version (not while runs use it)", responses={204: None, **errors(401, 403, 404, 409)}),
)
class DatasetVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                            mixins.DestroyModelMixin, TeamScopedViewSet):
    """Versions are immutable: there is no update. A new import makes a new version."""

    model = DatasetVersion
    serializer_class = DatasetVersionSerializer
    select_related = ("dataset",)
    filterset_class = DatasetVersionFilter
    ordering_fields = ["created_at", "number", "row_count"]

    @extend_schema(summary="Import from a source (SQL connection, Google Docs, an earlier version) as a new version",
                   responses={201: DatasetVersionSerializer, **WRITE_ERRORS})
    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        dataset = fields["dataset"]
        require_role(request, team_id_of(dataset), Role.MEMBER, action="import data")
        version = services.create_version(
            request, dataset=dataset, source_kind=fields["source_kind"], source_config=fields.get("source_config", {}),
            connection=fields.get("connection"), parent=fields.get("parent"), note=fields.get("note", ""),
        )
        return Response(self.get_serializer(version).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.delete_version(self.request, instance)

    @extend_schema(responses={(200, "application/x-ndjson"): OpenApiTypes.BINARY, **errors(401, 403, 404, 409)},
                   summary="Download the version's rows as JSONL")
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        version = self.get_object()
        if version.status != DatasetVersionStatus.READY:
            raise Conflict(f"Version {version.number} is {version.status}; only ready versions can be downloaded.")
        filename = f"{version.dataset.name}-v{version.number}.jsonl"
        response = FileResponse(storage.open_for_download(version.storage_key), as_attachment=True, filename=filename,
                                content_type="application/x-ndjson")
        response["ETag"] = f'"{version.sha256}"'
        return response

    @extend_schema(parameters=[ReportQuerySerializer], responses={200: ValidationReportSerializer, **errors(400, 401, 403, 404, 409)},
                   summary="Validation report: valid/invalid rows with line and reason, duplicates, empty outputs, "
                           "token-length histogram and rows over context for a base model")
    @action(detail=True, methods=["get"])
    def report(self, request, pk=None):
        version = self.get_object()
        query = _query(ReportQuerySerializer, request, team_id=version.dataset.project.team_id)
        return Response(services.version_report(version, query.get("base_model", ""), query.get("max_seq_length")))

    @extend_schema(parameters=[PreviewQuerySerializer], responses={200: VersionPreviewSerializer, **errors(400, 401, 403, 404, 409)},
                   summary="Rows, a page at a time; with base_model, each rendered through its chat template as "
                           "segments marked trained or not")
    @action(detail=True, methods=["get"])
    def preview(self, request, pk=None):
        version = self.get_object()
        query = _query(PreviewQuerySerializer, request, team_id=version.dataset.project.team_id)
        page, size = query["page"], query["page_size"]
        body = services.version_preview(version, page=page, page_size=size, base_model=query.get("base_model", ""),
                                        max_seq_length=query.get("max_seq_length"), source=query.get("source", ""),
                                        fact=query.get("fact", ""))

        def page_url(number):
            return request.build_absolute_uri(request.path + "?" + _with_page(request, number))

        body["next"] = page_url(page + 1) if page * size < body["count"] else None
        body["previous"] = page_url(page - 1) if page > 1 else None
        return Response(body)

    @extend_schema(parameters=[DiffQuerySerializer], responses={200: VersionDiffSerializer, **errors(400, 401, 403, 404, 409)},
                   summary="Rows added and removed between this version and another (?against=<id>)")
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        version = self.get_object()
        query = _query(DiffQuerySerializer, request)
        against = self.get_queryset().filter(pk=query["against"]).first()
        if against is None:
            raise ValidationError({"against": ["No such dataset version in your teams."]})
        return Response(services.version_diff(version, against, query["limit"]))


def _query(serializer_class, request, team_id: int | None = None) -> dict:
    """Validated query parameters (400 naming the bad one); `team_id` owns what is read."""
    serializer = serializer_class(data=request.query_params.dict(), context={"team_id": team_id})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _with_page(request, number: int) -> str:
    params = request.query_params.copy()
    params["page"] = str(number)
    return params.urlencode()


@extend_schema_view(
    list=extend_schema(summary="Saved data connections (credentials never returned)",
                       responses={200: DataConnectionSerializer(many=True), **READ_ERRORS}),
    retrieve=extend_schema(summary="One connection", responses={200: DataConnectionSerializer, **OBJECT_ERRORS}),
    create=extend_schema(summary="Save a SQL or Google connection", responses={201: DataConnectionSerializer, **WRITE_ERRORS}),
    partial_update=extend_schema(summary="Change a connection (credentials replaced when given)",
                                 responses={200: DataConnectionSerializer, **WRITE_ERRORS}),
    destroy=extend_schema(summary="Delete a connection", responses={204: None, **OBJECT_ERRORS}),
)
class DataConnectionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                            mixins.UpdateModelMixin, mixins.DestroyModelMixin, TeamScopedViewSet):
    model = DataConnection
    serializer_class = DataConnectionSerializer
    filterset_class = DataConnectionFilter
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        project = serializer.validated_data["project"]
        require_role(self.request, project.team_id, Role.MEMBER, action="add connections")
        credentials = serializer.validated_data.pop("credentials")
        serializer.instance = services.save_connection(
            self.request, DataConnection(**serializer.validated_data), credentials, created=True
        )

    def perform_update(self, serializer):
        credentials = serializer.validated_data.pop("credentials", None)
        connection = serializer.instance
        for name, value in serializer.validated_data.items():
            setattr(connection, name, value)
        services.save_connection(self.request, connection, credentials, created=False)

    def perform_destroy(self, instance):
        services.delete_connection(self.request, instance)

    @extend_schema(request=ConnectionProbeSerializer, responses={200: ConnectionTestResultSerializer, **WRITE_ERRORS},
                   summary="Test a connection: connect and run a query (default SELECT 1) or read a Google Doc; "
                           "failures answer ok=false with the reason (never the password)")
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        connection = self.get_object()
        probe = ConnectionProbeSerializer(data=request.data)
        probe.is_valid(raise_exception=True)
        return Response(services.test_connection(connection, probe.validated_data))

    @extend_schema(request=ConnectionProbeSerializer, responses={200: ConnectionPreviewSerializer, **WRITE_ERRORS},
                   summary="The first rows of a query (or blocks of Google Docs), and the rows as examples "
                           "under a column mapping")
    @action(detail=True, methods=["post"])
    def preview(self, request, pk=None):
        connection = self.get_object()
        probe = ConnectionProbeSerializer(data=request.data)
        probe.is_valid(raise_exception=True)
        return Response(services.preview_connection(connection, probe.validated_data))
