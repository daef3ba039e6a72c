from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.datasets.models import DataConnection, Dataset, DatasetVersion, DatasetVersionStatus, SourceKind


class DatasetFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Dataset
        fields = ["project", "name"]


class DatasetVersionFilter(filters.FilterSet):
    project = IdFilter(field_name="dataset__project_id")
    dataset = IdFilter(field_name="dataset_id")
    status = filters.ChoiceFilter(choices=DatasetVersionStatus.choices)
    source_kind = filters.ChoiceFilter(choices=SourceKind.choices)

    class Meta:
        model = DatasetVersion
        fields = ["project", "dataset", "status", "source_kind"]


class DataConnectionFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")

    class Meta:
        model = DataConnection
        fields = ["project", "kind"]
