from rest_framework import serializers

from tinyforge.core.api import StrictModelSerializer, StrictSerializer, TeamScopedRelatedField
from tinyforge.errors import InvalidInput
from tinyforge.training import base_models
from tinyforge.training.models import Checkpoint, RunMetric, TrainingRun
from tinyforge.training.services import resolve_config


class TrainingRunSerializer(StrictModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id", "project", "name", "dataset_version", "validation_version", "base_model", "method", "config",
            "status", "attempt", "resumed_from", "progress_step", "progress_total", "eta_seconds",
            "tokens_per_second", "heartbeat_at", "started_at", "finished_at", "error", "cancel_requested",
            "summary_metrics", "eval_results", "created_by", "created_at", "updated_at", "queue_position",
        ]
        read_only_fields = [
            "status", "attempt", "resumed_from", "progress_step", "progress_total", "eta_seconds",
            "tokens_per_second", "heartbeat_at", "started_at", "finished_at", "error", "cancel_requested",
            "summary_metrics", "eval_results", "created_by",
        ]
        extra_kwargs = {"base_model": {"help_text": base_models.HELP}}

    queue_position = serializers.SerializerMethodField(
        help_text="1 for the next run a free worker takes; null unless queued (or when the queue is unreachable)")

    def get_queue_position(self, run) -> int | None:
        positions = self.context.get("queue_positions")
        if positions is None or run.status != "queued":
            return None
        return positions.get(run.job_id)

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            # What a run trains on is fixed once it exists; only its name changes.
            for name in ("project", "dataset_version", "validation_version", "base_model", "method", "config"):
                fields[name].read_only = True
        return fields

    def validate(self, attrs):
        project = attrs.get("project")
        if project is not None:
            for name in ("dataset_version", "validation_version"):
                version = attrs.get(name)
                if version is not None and version.dataset.project_id != project.pk:
                    raise serializers.ValidationError({name: ["Must be a dataset version of the run's project."]})
        if self.instance is None:
            try:
                attrs["config"] = resolve_config(base_model=attrs.get("base_model", ""),
                                                 method=attrs.get("method", "lora"), config=attrs.get("config") or {},
                                                 team_id=project.team_id if project is not None else None)
            except InvalidInput as exc:
                raise serializers.ValidationError(exc.fields) from None
        return attrs


class ResumeSerializer(StrictSerializer):
    checkpoint = TeamScopedRelatedField(
        queryset=Checkpoint.all_teams.all(), required=False, allow_null=True,
        help_text="Default: the latest checkpoint of the run",
    )


class CheckpointSerializer(StrictModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "run", "attempt", "step", "eval_loss", "is_best", "created_at"]
        read_only_fields = fields


class RunMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunMetric
        fields = ["id", "attempt", "step", "name", "value", "created_at"]


class MetricPageSerializer(serializers.Serializer):
    results = RunMetricSerializer(many=True)
    next_after = serializers.IntegerField()
    has_more = serializers.BooleanField()


# ---- OpenAI's fine-tuning API (training/openai_files.py, training/openai_jobs.py): its request bodies


class OpenAIFileSerializer(serializers.Serializer):
    """POST /v1/files (multipart): OpenAI's client sends the purpose and the file."""

    purpose = serializers.ChoiceField(choices=["fine-tune"], error_messages={
        "required": "Only purpose 'fine-tune' is supported here, not None.",
        "invalid_choice": "Only purpose 'fine-tune' is supported here, not {input!r}."})
    file = serializers.FileField(error_messages={
        "required": "Send the JSONL training file as the multipart field 'file'."})


class AutoOrNumber(serializers.Field):
    """OpenAI's "auto" (or nothing: the preset decides) or a number of the given kind."""

    def __init__(self, kind: type, **kwargs):
        self.kind = kind
        super().__init__(required=False, allow_null=True, **kwargs)

    def validate_empty_values(self, data):
        if data in (serializers.empty, None, "auto"):
            return True, None
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)) or (self.kind is int and int(data) != data):
            raise serializers.ValidationError(f"Must be 'auto' or a {self.kind.__name__}.")
        return self.kind(data)

    def to_representation(self, value):
        return value


class OpenAIHyperparametersSerializer(StrictSerializer):
    n_epochs = AutoOrNumber(int)
    batch_size = AutoOrNumber(int)
    learning_rate_multiplier = AutoOrNumber(float)
    beta = AutoOrNumber(float)  # method dpo only

    default_error_messages = {"not_a_dict": "Must be an object."}

    def to_internal_value(self, data):
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:  # OpenAI's word for an unknown name
            raise serializers.ValidationError({key: ["Unknown hyperparameter."] if messages == [
                "Unknown or read-only field."] else messages for key, messages in exc.detail.items()}) from None


def metadata_problem(value) -> str | None:
    """What is wrong with a job's metadata by OpenAI's rules: at most 16 pairs, string keys of up to
    64 characters, string values of up to 512."""
    if not isinstance(value, dict):
        return "Must be an object of string keys and string values."
    if len(value) > 16:
        return f"At most 16 keys, not {len(value)}."
    for key, item in value.items():
        if len(key) > 64:
            return f"The key {key[:20]!r}... is longer than 64 characters."
        if not isinstance(item, str):
            return f"The value of {key!r} must be a string."
        if len(item) > 512:
            return f"The value of {key!r} is longer than 512 characters."
    return None


# OpenAI's method types and the engine objective each trains with.
OPENAI_METHODS = {"supervised": "sft", "dpo": "dpo"}


class OpenAIJobSerializer(StrictSerializer):
    """POST /v1/fine_tuning/jobs: OpenAI's fields; the files are ids (file-12) the view looks up."""

    model = serializers.CharField(error_messages={"required": "Required.", "blank": "Required."})
    training_file = serializers.CharField(error_messages={"required": "Required.", "blank": "Required."})
    validation_file = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    hyperparameters = serializers.JSONField(required=False, allow_null=True)
    method = serializers.JSONField(required=False, allow_null=True)
    suffix = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64,
                                   error_messages={"max_length": "At most 64 characters."})
    seed = AutoOrNumber(int)
    metadata = serializers.JSONField(required=False, allow_null=True)
    integrations = serializers.JSONField(required=False, allow_null=True)

    def validate_method(self, value):
        method = value or {"type": "supervised"}
        if not isinstance(method, dict) or method.get("type", "supervised") not in OPENAI_METHODS:
            raise serializers.ValidationError("Only the 'supervised' and 'dpo' methods are supported.")
        return {"type": "supervised", **method}

    def validate_metadata(self, value):
        if value is not None and (problem := metadata_problem(value)):
            raise serializers.ValidationError(problem)
        return value

    def validate_integrations(self, value):
        if value:
            raise serializers.ValidationError("Integrations are not supported.")
        return value

    def validate(self, attrs):
        """The hyperparameters, given at the top level or inside method.<type>, as numbers."""
        method = attrs.get("method") or {"type": "supervised"}
        attrs["method"] = method
        inside = method.get(method["type"]) or {}
        given = attrs.get("hyperparameters") or (inside.get("hyperparameters") if isinstance(inside, dict) else None) or {}
        hyper = OpenAIHyperparametersSerializer(data=given)
        if not hyper.is_valid():
            raise serializers.ValidationError({"hyperparameters": hyper.errors})
        if method["type"] != "dpo" and hyper.validated_data.get("beta") is not None:
            raise serializers.ValidationError({"hyperparameters": {"beta": ["Only method dpo takes beta."]}})
        attrs["hyperparameters"] = hyper.validated_data
        attrs["suffix"] = attrs.get("suffix") or ""
        return attrs
