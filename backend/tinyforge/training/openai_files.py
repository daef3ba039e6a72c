"""OpenAI's files API over dataset versions: POST /v1/files (purpose "fine-tune") makes a version
of the project's "OpenAI files" dataset; GET lists, shows and downloads them (see openai_api.py)."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, parsers
from rest_framework.response import Response

from tinyforge.core import storage
from tinyforge.core.access import require_role
from tinyforge.core.roles import Role
from tinyforge.datasets.models import Dataset, DatasetVersion, DatasetVersionStatus, SourceKind
from tinyforge.datasets.services import create_dataset, create_version, save_uploads
from tinyforge.training.openai_api import (FILES_DATASET, IgnoreAcceptHeader, OpenAIView, _limit, _ordered_after, _page,
                                         _row_id, _unix)
from tinyforge.training.serializers import OpenAIFileSerializer


def file_object(version: DatasetVersion) -> dict:
    files = version.source_config.get("files") or [{}]
    status = {DatasetVersionStatus.READY: "processed", DatasetVersionStatus.FAILED: "error"}.get(version.status, "uploaded")
    return {
        "id": f"file-{version.pk}", "object": "file", "bytes": files[0].get("size") or version.size_bytes or 0,
        "created_at": _unix(version.created_at), "filename": files[0].get("name") or f"version-{version.number}.jsonl",
        "purpose": "fine-tune", "status": status, "status_details": version.error or None, "expires_at": None,
    }


class FilesView(OpenAIView):
    parser_classes = [parsers.MultiPartParser]

    @extend_schema(exclude=True)
    def get(self, request):
        versions = _ordered_after(request, DatasetVersion.objects.for_teams([self.team_id()]).filter(
            source_kind=SourceKind.OPENAI_FILE), "file-", default="desc")
        if request.query_params.get("purpose") not in (None, "", "fine-tune"):
            versions = versions.none()
        # OpenAI's limits for files: 1 to 10,000, all of them by default.
        return Response(_page(versions, _limit(request, 10_000, most=10_000), file_object))

    @extend_schema(exclude=True)
    def post(self, request):
        body = OpenAIFileSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        project = self.project()
        require_role(request, project.team_id, Role.MEMBER, action="upload files")
        dataset = Dataset.objects.for_teams([project.team_id]).filter(project=project, name=FILES_DATASET).first()
        if dataset is None:
            dataset = create_dataset(request, project=project, name=FILES_DATASET,
                                     description="Training files uploaded through POST /v1/files")
        saved = save_uploads(project.pk, [upload])
        try:
            version = create_version(request, dataset=dataset, source_kind=SourceKind.OPENAI_FILE,
                                     source_config={"files": saved, "format": "jsonl"}, note=saved[0]["name"])
        except BaseException:
            for item in saved:
                storage.delete(item["key"])
            raise
        return Response(file_object(version))


class FileView(OpenAIView):
    def version(self, file_id: str) -> DatasetVersion:
        version = DatasetVersion.objects.for_teams([self.team_id()]).filter(
            pk=_row_id(file_id, "file-"), source_kind=SourceKind.OPENAI_FILE).first()
        if version is None:
            raise exceptions.NotFound(f"No file {file_id}.")
        return version

    @extend_schema(exclude=True)
    def get(self, request, file_id: str):
        return Response(file_object(self.version(file_id)))


class FileContentView(FileView):
    # The client asks for application/binary; the content is the file as uploaded, and errors
    # are the usual JSON body whatever the Accept header said.
    content_negotiation_class = IgnoreAcceptHeader

    @extend_schema(exclude=True)
    def get(self, request, file_id: str):
        version = self.version(file_id)
        upload = (version.source_config.get("files") or [{}])[0]
        if not upload.get("key"):
            raise exceptions.NotFound(f"File {file_id} has no uploaded content.")
        return FileResponse(storage.open_for_download(upload["key"]), content_type="application/octet-stream",
                            as_attachment=True, filename=upload.get("name") or f"{file_id}.jsonl")
