from rest_framework import serializers

from tinyforge.core.api import StrictModelSerializer
from tinyforge.deployments.models import Deployment, Export


class DeploymentSerializer(StrictModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "project", "team", "run", "checkpoint", "runtime", "merge_adapter", "status", "error",
            "request_count", "error_count", "tokens_in", "tokens_out", "latency_p50_ms", "latency_p95_ms",
            "memory_bytes", "stats_updated_at", "ready_at", "stopped_at", "created_by", "created_at", "updated_at",
        ]
        read_only_fields = [
            "team", "status", "error", "request_count", "error_count", "tokens_in", "tokens_out", "latency_p50_ms",
            "latency_p95_ms", "memory_bytes", "stats_updated_at", "ready_at", "stopped_at", "created_by",
        ]
        # Uniqueness per team is checked by the service (the team comes from the run).
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            for name in ("run", "checkpoint", "runtime", "merge_adapter"):
                fields[name].read_only = True
        return fields

    def validate(self, attrs):
        run, checkpoint = attrs.get("run"), attrs.get("checkpoint")
        if run is not None and checkpoint is not None and checkpoint.run_id != run.pk:
            raise serializers.ValidationError({"checkpoint": ["Must be a checkpoint of the chosen run."]})
        return attrs


class ExportSerializer(StrictModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True)

    class Meta:
        model = Export
        fields = ["id", "project", "run", "checkpoint", "format", "quantize", "status", "size_bytes",
                  "verification", "error", "progress", "heartbeat_at", "started_at", "finished_at", "created_by",
                  "created_at"]
        read_only_fields = ["status", "size_bytes", "verification", "error", "progress", "heartbeat_at",
                            "started_at", "finished_at", "created_by"]

    def validate(self, attrs):
        run, checkpoint = attrs.get("run"), attrs.get("checkpoint")
        if run is not None and checkpoint is not None and checkpoint.run_id != run.pk:
            raise serializers.ValidationError({"checkpoint": ["Must be a checkpoint of the chosen run."]})
        return attrs


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class PlaygroundChatSerializer(serializers.Serializer):
    """OpenAI's chat completion body without `model` (the deployment is the model). The inference
    service validates it fully; this documents it in the schema."""

    messages = ChatMessageSerializer(many=True)
    temperature = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    top_p = serializers.FloatField(required=False)
    max_tokens = serializers.IntegerField(required=False, min_value=1)
    stop = serializers.ListField(child=serializers.CharField(), required=False)
    seed = serializers.IntegerField(required=False)
    stream = serializers.BooleanField(required=False, default=True,
                                      help_text="true (default): text/event-stream of chat.completion.chunk events "
                                                "ending with `data: [DONE]`; false: one chat.completion object")
