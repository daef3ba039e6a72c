from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.tracking.models import TrackedRun


class TrackedRunFilter(filters.FilterSet):
    run = IdFilter(field_name="run_id")

    class Meta:
        model = TrackedRun
        fields = ["run", "tracker"]
