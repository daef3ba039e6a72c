from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.deployments.models import Deployment, DeploymentStatus, Export, ExportFormat, ExportStatus, Runtime


class DeploymentFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")
    team = IdFilter(field_name="team_id")
    run = IdFilter(field_name="run_id")
    status = filters.MultipleChoiceFilter(choices=DeploymentStatus.choices)
    runtime = filters.ChoiceFilter(choices=Runtime.choices)

    class Meta:
        model = Deployment
        fields = ["project", "team", "run", "status", "runtime"]


class ExportFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")
    run = IdFilter(field_name="run_id")
    status = filters.MultipleChoiceFilter(choices=ExportStatus.choices)
    format = filters.ChoiceFilter(choices=ExportFormat.choices)

    class Meta:
        model = Export
        fields = ["project", "run", "status", "format"]
