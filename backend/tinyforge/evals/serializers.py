from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers

from tinyforge.core.api import CleanJSONField, StrictModelSerializer, StrictSerializer, TeamScopedRelatedField
from tinyforge.deployments.models import Deployment
from tinyforge.evals.models import EvalResult, EvalSet, EvalSetVersion, Evaluation, Gate
from tinyforge.evaluation.judges import JUDGE_MODES
from tinyforge.evaluation.scorers import SCORERS
from tinyforge.training.models import Checkpoint, TrainingRun

TARGET_KINDS = ("run", "base", "deployment", "endpoint")


class EvalSetSerializer(StrictModelSerializer):
    latest_version = serializers.SerializerMethodField(help_text="Id of the newest version (null: none yet)")

    class Meta:
        model = EvalSet
        fields = ["id", "project", "name", "description", "latest_version", "created_by", "created_at"]
        read_only_fields = ["created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["project"].read_only = True
        return fields

    def get_latest_version(self, eval_set) -> int | None:
        return eval_set.versions.order_by("-number").values_list("pk", flat=True).first()


class EvalSetVersionSerializer(StrictModelSerializer):
    class Meta:
        model = EvalSetVersion
        fields = ["id", "eval_set", "number", "source_kind", "source", "sha256", "row_count", "tags", "created_by",
                  "created_at"]
        read_only_fields = fields


class PlaygroundRowSerializer(StrictSerializer):
    """A Playground conversation saved as one more row of the set."""

    messages = serializers.ListField(child=CleanJSONField(), allow_empty=False,
                                     help_text="The conversation up to the user's prompt: [{role, content}], the last "
                                               "one the user's")
    reference = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=100_000,
                                      help_text="The reference answer (e.g. the model's answer, edited; blank: none)")
    must_include = serializers.ListField(child=CleanJSONField(), required=False,
                                         help_text="Key facts a right answer contains")
    deployment = TeamScopedRelatedField(queryset=Deployment.objects, required=False, allow_null=True,
                                        help_text="The deployment the conversation was held with")


class NewVersionSerializer(StrictSerializer):
    """Exactly one source of rows (an uploaded file goes as multipart `file` instead)."""

    rows = serializers.ListField(child=CleanJSONField(), required=False, allow_empty=True,
                                 help_text="Rows: {input, reference?, must_include?, tags?, id?}")
    run = TeamScopedRelatedField(queryset=TrainingRun.objects, required=False, help_text="A run's validation rows")
    dataset_version = serializers.IntegerField(required=False, min_value=1,
                                               help_text="Rows of a ready dataset version of this team")
    row_numbers = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False,
                                        help_text="With dataset_version: the rows to take (1-based; empty: all)")
    general = serializers.BooleanField(required=False, help_text="The shipped general set (the forgetting check)")
    playground = PlaygroundRowSerializer(required=False, help_text="A Playground conversation: the new version holds "
                                         "the previous version's rows and this one")

    def validate(self, attrs):
        given = [name for name in ("rows", "run", "dataset_version", "general", "playground")
                 if attrs.get(name) not in (None, False)]
        if "rows" in attrs and "rows" not in given:
            given.append("rows")
        if len(given) != 1:
            raise serializers.ValidationError(
                {"non_field_errors": ["Give exactly one of rows, run, dataset_version, general, playground (or upload a file)."]})
        if attrs.get("row_numbers") and "dataset_version" not in given:
            raise serializers.ValidationError({"row_numbers": ["Only with dataset_version."]})
        return attrs


class TargetObjectField(TeamScopedRelatedField):
    """What a target answers with: a run, checkpoint or deployment that is not the caller's (unknown,
    or another team's: the same words either way) is a 404, as when it is named in the URL."""

    def fail(self, key, **kwargs):
        if key == "does_not_exist":
            raise exceptions.NotFound(f"No {self.queryset.model._meta.verbose_name} {kwargs['pk_value']} in your teams.")
        super().fail(key, **kwargs)


class TargetSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=TARGET_KINDS, help_text="run (its model), base (its base model), "
                                   "deployment, or endpoint (an allow-listed OpenAI-compatible server)")
    label = serializers.CharField(required=False, max_length=100, help_text="Its name in results (default: derived)")
    run = TargetObjectField(queryset=TrainingRun.objects, required=False)
    checkpoint = TargetObjectField(queryset=Checkpoint.objects, required=False, allow_null=True)
    deployment = TargetObjectField(queryset=Deployment.objects, required=False)
    base_url = serializers.URLField(required=False)
    model = serializers.CharField(required=False, max_length=200)

    NEEDS = {"run": ("run",), "base": ("run",), "deployment": ("deployment",), "endpoint": ("base_url", "model")}

    def validate(self, attrs):
        kind = attrs["kind"]
        missing = {name: [f"A {kind} target needs {name}."] for name in self.NEEDS[kind] if not attrs.get(name)}
        extra = {name: [f"Not used by a {kind} target."] for name in ("run", "checkpoint", "deployment", "base_url", "model")
                 if attrs.get(name) and name not in self.NEEDS[kind] and not (name == "checkpoint" and kind == "run")}
        if missing or extra:
            raise serializers.ValidationError({**missing, **extra})
        checkpoint = attrs.get("checkpoint")
        if checkpoint is not None and checkpoint.run_id != attrs["run"].pk:
            raise serializers.ValidationError({"checkpoint": ["Must be a checkpoint of the chosen run."]})
        label = attrs.get("label") or {
            "run": lambda: attrs["run"].name + (f" @ step {checkpoint.step}" if checkpoint else ""),
            "base": lambda: f"base: {attrs['run'].base_model}",
            "deployment": lambda: f"deployed: {attrs['deployment'].name}",
            "endpoint": lambda: attrs["model"],
        }[kind]()
        stored = {"kind": kind, "label": label[:100]}
        if kind in ("run", "base"):
            stored["run"] = attrs["run"].pk
        if kind == "run":
            stored["checkpoint"] = checkpoint.pk if checkpoint else None
        if kind == "deployment":
            stored["deployment"] = attrs["deployment"].pk
        if kind == "endpoint":
            stored.update(base_url=attrs["base_url"], model=attrs["model"])
        return stored


class JudgeTargetSerializer(TargetSerializer):
    kind = serializers.ChoiceField(choices=("deployment", "endpoint"),
                                   help_text="A deployment of this team, or an allow-listed endpoint")


class JudgeSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=JUDGE_MODES, required=False, help_text="Default: pointwise")
    prompt = serializers.CharField(required=False, allow_blank=True, max_length=20_000,
                                   help_text="The judge prompt template (empty: the default one of the mode)")
    rubric = serializers.CharField(required=False, allow_blank=True, max_length=5_000)
    max_tokens = serializers.IntegerField(required=False, min_value=16, max_value=4096, help_text="Default: 256")
    target = JudgeTargetSerializer(help_text="The judge model")


class ScorerSerializer(StrictSerializer):
    name = serializers.ChoiceField(choices=SCORERS)
    pattern = serializers.CharField(required=False, max_length=2000, help_text="regex: the pattern")
    schema = CleanJSONField(required=False, help_text="json_schema: the JSON Schema")
    threshold = serializers.FloatField(required=False, min_value=0, max_value=1,
                                       help_text="Where a row passes (default: 1, or 0.5 for rouge_l and token_f1)")


class StoredAs(serializers.Field):
    """Validated by `serializer_class` on the way in; shown as stored (ids, derived labels) on the way out."""

    serializer_class: type[serializers.Serializer]
    many = False

    def to_internal_value(self, data):
        checked = self.serializer_class(data=data, many=self.many, context=self.context)
        checked.is_valid(raise_exception=True)
        return checked.validated_data

    def to_representation(self, value):
        return value


@extend_schema_field(TargetSerializer(many=True))
class TargetsField(StoredAs):
    serializer_class, many = TargetSerializer, True


@extend_schema_field(ScorerSerializer(many=True))
class ScorersField(StoredAs):
    serializer_class, many = ScorerSerializer, True


@extend_schema_field(JudgeSerializer(allow_null=True))
class JudgeField(StoredAs):
    serializer_class = JudgeSerializer


class EvaluationSerializer(StrictModelSerializer):
    targets = TargetsField(help_text="1-4; the first is the baseline of comparisons")
    scorers = ScorersField(required=False)
    judge = JudgeField(required=False, allow_null=True)
    project = serializers.IntegerField(source="project_id", read_only=True)
    eval_set_version = TeamScopedRelatedField(queryset=EvalSetVersion.objects)

    class Meta:
        model = Evaluation
        fields = ["id", "project", "name", "eval_set_version", "targets", "scorers", "judge", "max_tokens", "purpose",
                  "run", "status", "rows_done", "row_count", "summary", "gate_passed", "gate_reason", "error",
                  "metadata", "created_by", "created_at", "started_at", "finished_at"]
        read_only_fields = ["purpose", "run", "status", "rows_done", "row_count", "summary", "gate_passed",
                            "gate_reason", "error", "metadata", "created_by", "started_at", "finished_at"]
        extra_kwargs = {"max_tokens": {"min_value": 1, "max_value": 4096}}

    def validate_targets(self, value):
        if not 1 <= len(value) <= 4:
            raise serializers.ValidationError("Choose 1 to 4 targets.")
        return value



class EvalResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = EvalResult
        fields = ["id", "index", "input", "reference", "must_include", "tags", "answers", "pairwise", "regression",
                  "disagreement"]
        read_only_fields = fields


class GateSerializer(StrictModelSerializer):
    scorer = ScorerSerializer(required=False, allow_null=True, help_text="The scorer that decides (or give judge)")
    judge = JudgeField(required=False, allow_null=True,
                       help_text="The judge that decides (or give scorer): pointwise, the run's mean score (1-5) "
                                 "reaches threshold; pairwise, the run's win rate against the deployed model (a tie "
                                 "counts half) reaches threshold (0-1)")

    class Meta:
        model = Gate
        fields = ["id", "project", "eval_set", "scorer", "judge", "threshold", "max_drop", "enabled", "updated_by",
                  "created_at", "updated_at"]
        read_only_fields = ["updated_by"]
        # One gate per project: setting it again replaces it (services.set_gate).
        validators = []
        extra_kwargs = {"project": {"validators": []}}

    def validate(self, attrs):
        eval_set, project = attrs.get("eval_set"), attrs.get("project")
        if eval_set is not None and project is not None and eval_set.project_id != project.pk:
            raise serializers.ValidationError({"eval_set": ["Must be an eval set of the gate's project."]})
        scorer, judge = attrs.get("scorer"), attrs.get("judge")
        if (scorer is None) == (judge is None):
            raise serializers.ValidationError({"non_field_errors": ["Give exactly one of scorer and judge: what decides."]})
        mode = (judge or {}).get("mode", "pointwise")
        threshold = attrs.get("threshold")
        if judge is not None and mode == "pairwise":
            if attrs.get("max_drop") is not None:
                raise serializers.ValidationError({"max_drop": [
                    "A pairwise judge compares the run with the deployed model already; leave max_drop empty."]})
            if threshold is not None and not 0 <= threshold <= 1:
                raise serializers.ValidationError({"threshold": ["A win rate: from 0 to 1 (0.5: as good as deployed)."]})
        if judge is not None and mode == "pointwise" and threshold is not None and not 1 <= threshold <= 5:
            raise serializers.ValidationError({"threshold": ["A pointwise judge scores 1 to 5: from 1 to 5."]})
        return attrs

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["scorer"] = instance.scorer
        return data


class GateCheckSerializer(StrictSerializer):
    run = TeamScopedRelatedField(queryset=TrainingRun.objects)


class GateStatusSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=("none", "pending", "passes", "fails"))
    reason = serializers.CharField()
    evaluation = serializers.IntegerField(allow_null=True, help_text="The gate evaluation it comes from")
