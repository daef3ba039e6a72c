from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.projects.models import Project


class ProjectFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["team", "name"]
