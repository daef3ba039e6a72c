from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from tinyforge.core.models import AuditEvent, Event


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True, default=None, allow_null=True)
    actor_token = serializers.CharField(source="actor_token.prefix", read_only=True, default=None, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "team", "project", "created_at", "actor", "actor_token", "action", "target_type",
                  "target_id", "target_repr", "changes", "ip_address"]
        read_only_fields = fields


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField()
    database = serializers.CharField()


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "created_at", "level", "source", "message", "data", "project", "run", "attempt",
                  "dataset_version", "deployment", "export"]


@extend_schema_serializer(many=False)  # the list action answers one page object, not an array
class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as ?after= to get what comes next")
    has_more = serializers.BooleanField()
