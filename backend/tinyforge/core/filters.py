from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.core.models import AuditEvent, Event, EventLevel

LEVEL_ORDER = [EventLevel.DEBUG, EventLevel.INFO, EventLevel.WARNING, EventLevel.ERROR]


class EventFilter(filters.FilterSet):
    team = IdFilter(field_name="project__team_id")
    project = IdFilter(field_name="project_id")
    run = IdFilter(field_name="run_id")
    dataset_version = IdFilter(field_name="dataset_version_id")
    deployment = IdFilter(field_name="deployment_id")
    export = IdFilter(field_name="export_id")
    level = filters.MultipleChoiceFilter(choices=EventLevel.choices)
    min_level = filters.ChoiceFilter(choices=EventLevel.choices, method="filter_min_level",
                                     label="This level and above")
    source = filters.CharFilter()
    kind = filters.ChoiceFilter(
        choices=[("run", "Training runs"), ("ingest", "Dataset imports"), ("deployment", "Deployments"),
                 ("export", "Exports")],
        method="filter_kind", label="What the events are about",
    )
    q = filters.CharFilter(field_name="message", lookup_expr="icontains", label="Text in the message")

    class Meta:
        model = Event
        fields = ["team", "project", "run", "dataset_version", "deployment", "export", "level", "source"]

    def filter_min_level(self, queryset, name, value):
        return queryset.filter(level__in=LEVEL_ORDER[LEVEL_ORDER.index(value):])

    def filter_kind(self, queryset, name, value):
        field = {"run": "run", "ingest": "dataset_version", "deployment": "deployment", "export": "export"}[value]
        return queryset.filter(**{f"{field}__isnull": False})


class AuditEventFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    project = IdFilter(field_name="project_id")
    actor = IdFilter(field_name="actor_id")
    action = filters.CharFilter()
    target_type = filters.CharFilter()
    target_id = filters.CharFilter()
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["team", "project", "actor", "action", "target_type", "target_id"]
