from rest_framework import serializers

from tinyforge.core.api import CleanJSONField, StrictModelSerializer
from tinyforge.datasets.models import DataConnection, Dataset, DatasetVersion


class DatasetSerializer(StrictModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "description", "latest_version", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["project"].read_only = True
        return fields

    def get_latest_version(self, dataset) -> int | None:
        latest = dataset.versions.order_by("-number").values_list("id", flat=True).first()
        return latest


class DatasetVersionSerializer(StrictModelSerializer):
    project = serializers.IntegerField(source="dataset.project_id", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id", "dataset", "project", "number", "note", "status", "source_kind", "source_config", "connection",
            "parent", "sha256", "size_bytes", "row_count", "stats", "validation_report", "error", "progress",
            "progress_message", "heartbeat_at", "started_at", "finished_at", "created_by", "created_at",
        ]
        read_only_fields = [
            "number", "status", "sha256", "size_bytes", "row_count", "stats", "validation_report", "error",
            "progress", "progress_message", "heartbeat_at", "started_at", "finished_at", "created_by",
        ]

    def validate(self, attrs):
        dataset = attrs["dataset"]
        for name in ("connection", "parent"):
            other = attrs.get(name)
            other_project = getattr(other, "project_id", None) if name == "connection" else (
                other.dataset.project_id if other else None)
            if other is not None and other_project != dataset.project_id:
                raise serializers.ValidationError({name: ["Must belong to the dataset's project."]})
        return attrs


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), allow_empty=False)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)
    options = CleanJSONField(required=False, help_text="Import options (mapping, chunking, recipe) as JSON")


class DataConnectionSerializer(StrictModelSerializer):
    credentials = CleanJSONField(
        write_only=True, help_text="Secret part (password or connection URL, Google key). Stored encrypted, never returned."
    )

    class Meta:
        model = DataConnection
        fields = ["id", "project", "name", "kind", "options", "credentials", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["project"].read_only = True
            fields["credentials"].required = False
        return fields

    def validate_credentials(self, value):
        if not isinstance(value, dict) or not value:
            raise serializers.ValidationError("Must be a non-empty JSON object.")
        return value
