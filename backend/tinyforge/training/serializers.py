from rest_framework import serializers

from tinyforge.core.api import StrictModelSerializer, StrictSerializer, TeamScopedRelatedField
from tinyforge.errors import InvalidInput
from tinyforge.training import base_models
from tinyforge.training.models import Checkpoint, RunMetric, TrainingRun
from tinyforge.training.services import resolve_config


class TrainingRunSerializer(StrictModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id", "project", "name", "dataset_version", "validation_version", "base_model", "method", "config",
            "status", "attempt", "resumed_from", "progress_step", "progress_total", "eta_seconds",
            "tokens_per_second", "heartbeat_at", "started_at", "finished_at", "error", "cancel_requested",
            "summary_metrics", "eval_results", "created_by", "created_at", "updated_at", "queue_position",
        ]
        read_only_fields = [
            "status", "attempt", "resumed_from", "progress_step", "progress_total", "eta_seconds",
            "tokens_per_second", "heartbeat_at", "started_at", "finished_at", "error", "cancel_requested",
            "summary_metrics", "eval_results", "created_by",
        ]
        extra_kwargs = {"base_model": {"help_text": base_models.HELP}}

    queue_position = serializers.SerializerMethodField(
        help_text="1 for the next run a free worker takes; null unless queued (or when the queue is unreachable)")

    def get_queue_position(self, run) -> int | None:
        positions = self.context.get("queue_positions")
        if positions is None or run.status != "queued":
            return None
        return positions.get(run.job_id)

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            # What a run trains on is fixed once it exists; only its name changes.
            for name in ("project", "dataset_version", "validation_version", "base_model", "method", "config"):
                fields[name].read_only = True
        return fields

    def validate(self, attrs):
        project = attrs.get("project")
        if project is not None:
            for name in ("dataset_version", "validation_version"):
                version = attrs.get(name)
                if version is not None and version.dataset.project_id != project.pk:
                    raise serializers.ValidationError({name: ["Must be a dataset version of the run's project."]})
        if self.instance is None:
            try:
                attrs["config"] = resolve_config(base_model=attrs.get("base_model", ""),
                                                 method=attrs.get("method", "lora"), config=attrs.get("config") or {},
                                                 team_id=project.team_id if project is not None else None)
            except InvalidInput as exc:
                raise serializers.ValidationError(exc.fields) from None
        return attrs


class ResumeSerializer(StrictSerializer):
    checkpoint = TeamScopedRelatedField(
        queryset=Checkpoint.all_teams.all(), required=False, allow_null=True,
        help_text="Default: the latest checkpoint of the run",
    )


class CheckpointSerializer(StrictModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "run", "attempt", "step", "eval_loss", "is_best", "created_at"]
        read_only_fields = fields


class RunMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunMetric
        fields = ["id", "attempt", "step", "name", "value", "created_at"]


class MetricPageSerializer(serializers.Serializer):
    results = RunMetricSerializer(many=True)
    next_after = serializers.IntegerField()
    has_more = serializers.BooleanField()
