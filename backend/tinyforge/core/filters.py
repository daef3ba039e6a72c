from functools import cache

from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.core.events import in_log_of
from tinyforge.core.models import AuditEvent, Event, EventLevel, event_subjects

LEVEL_ORDER = [EventLevel.DEBUG, EventLevel.INFO, EventLevel.WARNING, EventLevel.ERROR]


class EventFilterBase(filters.FilterSet):
    team = IdFilter(field_name="project__team_id")
    project = IdFilter(field_name="project_id")
    level = filters.MultipleChoiceFilter(choices=EventLevel.choices)
    min_level = filters.ChoiceFilter(choices=EventLevel.choices, method="filter_min_level",
                                     label="This level and above")
    source = filters.CharFilter()
    q = filters.CharFilter(field_name="message", lookup_expr="icontains", label="Text in the message")

    class Meta:
        model = Event
        fields = ["team", "project", "level", "source"]

    def filter_min_level(self, queryset, name, value):
        return queryset.filter(level__in=LEVEL_ORDER[LEVEL_ORDER.index(value):])


@cache
def event_filter() -> type[filters.FilterSet]:
    """The events API's filters: the base ones, one id filter per subject the apps declare
    (?run=<id>: the lines in that run's log) and ?kind= (the lines in any log of that kind).
    Built on first use, once every app's models (and so their subjects) are loaded."""
    subjects = {subject.kind: subject.model for subject in event_subjects()}
    declared = {
        subject.subject_name: IdFilter(method=lambda queryset, name, value, model=subject.model:
                                       queryset.filter(in_log_of(model, value)))
        for subject in event_subjects()
    }
    declared["kind"] = filters.ChoiceFilter(
        choices=[(subject.kind, subject.kind_label) for subject in event_subjects()],
        method=lambda queryset, name, value: queryset.filter(in_log_of(subjects[value])),
        label="What the events are about",
    )
    return type("EventFilter", (EventFilterBase,), declared)


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
