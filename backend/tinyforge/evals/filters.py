from django_filters import rest_framework as filters

from tinyforge.core.api import IdFilter
from tinyforge.evals.models import EvalSet, EvalSetVersion, EvalStatus, Evaluation, Gate, Purpose


class EvalSetFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")

    class Meta:
        model = EvalSet
        fields = ["project"]


class EvalSetVersionFilter(filters.FilterSet):
    eval_set = IdFilter(field_name="eval_set_id")
    project = IdFilter(field_name="eval_set__project_id")

    class Meta:
        model = EvalSetVersion
        fields = ["eval_set", "project"]


class EvaluationFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")
    run = IdFilter(field_name="run_id")
    eval_set_version = IdFilter(field_name="eval_set_version_id")
    status = filters.MultipleChoiceFilter(choices=EvalStatus.choices)
    purpose = filters.MultipleChoiceFilter(choices=Purpose.choices)

    class Meta:
        model = Evaluation
        fields = ["project", "run", "eval_set_version", "status", "purpose"]


class GateFilter(filters.FilterSet):
    project = IdFilter(field_name="project_id")

    class Meta:
        model = Gate
        fields = ["project"]
