from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.training.models import Checkpoint, Method, RunStatus, TrainingRun


class TrainingRunFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")
    dataset_version = IdFilter(field_name="dataset_version_id")
    status = filters.MultipleChoiceFilter(choices=RunStatus.choices)
    method = filters.ChoiceFilter(choices=Method.choices)
    base_model = filters.CharFilter()
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = TrainingRun
        fields = ["project", "dataset_version", "status", "method", "base_model", "name"]


class CheckpointFilter(filters.FilterSet):
    run = IdFilter(field_name="run_id")
    project = IdFilter(field_name="run__project_id")
    is_best = filters.BooleanFilter()

    class Meta:
        model = Checkpoint
        fields = ["run", "project", "is_best"]
