from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.deployments.models import (Completion, CompletionSource, Deployment, DeploymentStatus, Export,
                                          ExportFormat, ExportStatus, Feedback, FeedbackKind, Quantize, Runtime)


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
    team = IdFilter(field_name="project__team_id")
    run = IdFilter(field_name="run_id")
    checkpoint = IdFilter(field_name="checkpoint_id")
    status = filters.MultipleChoiceFilter(choices=ExportStatus.choices)
    # Not `format`: DRF reads ?format= as the response's renderer.
    export_format = filters.MultipleChoiceFilter(field_name="format", choices=ExportFormat.choices)
    quantize = filters.ChoiceFilter(choices=Quantize.choices)

    class Meta:
        model = Export
        fields = ["project", "team", "run", "checkpoint", "status", "export_format", "quantize"]


class CompletionFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    deployment = IdFilter(field_name="deployment_id")
    run = IdFilter(field_name="run_id")
    source = filters.ChoiceFilter(choices=CompletionSource.choices)

    class Meta:
        model = Completion
        fields = ["team", "deployment", "run", "source"]


class FeedbackFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    deployment = IdFilter(method="on_deployment", help_text="Feedback on the deployment's answers, choices with "
                                                            "one of its answers on either side included")
    completion = filters.CharFilter(field_name="completion_id", max_length=64)
    kind = filters.ChoiceFilter(choices=FeedbackKind.choices)

    class Meta:
        model = Feedback
        fields = ["team", "deployment", "completion", "kind"]

    def on_deployment(self, queryset, name, value):
        return queryset.filter(Feedback.on_deployment(value))
