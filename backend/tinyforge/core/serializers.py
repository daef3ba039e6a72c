from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from tinyforge.core.models import AuditEvent, Event, event_subjects


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


class LinkedIdField(serializers.IntegerField):
    """The id of the record of one subject model whose log the event is in, else null."""

    def __init__(self, model):
        super().__init__(source="*", read_only=True, allow_null=True)
        self.linked_model = model

    def to_representation(self, event: Event) -> int | None:
        return event.linked_id(self.linked_model)


class EventSerializer(serializers.ModelSerializer):
    # A log line, with one field per subject the apps declare (run, dataset_version, deployment,
    # export...): the id of that record when the line is in its log, else null.

    class Meta:
        model = Event
        fields = ["id", "created_at", "level", "source", "message", "data", "project", "attempt"]

    def get_fields(self):
        fields = super().get_fields()
        fields.update({subject.subject_name: LinkedIdField(subject.model) for subject in event_subjects()})
        return fields


@extend_schema_serializer(many=False)  # the list action answers one page object, not an array
class EventPageSerializer(serializers.Serializer):
    results = EventSerializer(many=True)
    next_after = serializers.IntegerField(help_text="Pass as ?after= to get what comes next")
    has_more = serializers.BooleanField()
