from rest_framework import serializers

from tinyforge.core.api import StrictModelSerializer, StrictSerializer, TeamScopedRelatedField
from tinyforge.datasets.models import Dataset
from tinyforge.deployments.feedback import ROW_KINDS
from tinyforge.deployments.models import (Completion, Deployment, Export, ExportFormat, Feedback, GgufType, Quantize,
                                          Runtime)


class DeploymentSerializer(StrictModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True)
    override_gate = serializers.BooleanField(
        write_only=True, required=False,
        help_text="Deploy although the run fails the project's gate (recorded in the audit log)")
    override_reason = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500,
                                            help_text="Why the gate is overridden, for the audit log")

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "project", "team", "run", "checkpoint", "runtime", "merge_adapter", "gguf_type", "precision",
            "serving_precision", "precision_reason", "precision_quality", "status", "error", "request_count", "error_count", "tokens_in", "tokens_out", "latency_p50_ms", "latency_p95_ms",
            "own_memory_bytes", "shared_memory_bytes", "stats_updated_at", "ready_at", "stopped_at", "created_by",
            "created_at", "updated_at", "override_gate", "override_reason",
        ]
        read_only_fields = [
            "team", "serving_precision", "precision_reason", "precision_quality", "status", "error", "request_count", "error_count", "tokens_in", "tokens_out", "latency_p50_ms",
            "latency_p95_ms", "own_memory_bytes", "shared_memory_bytes", "stats_updated_at", "ready_at", "stopped_at",
            "created_by",
        ]
        # Uniqueness per team is checked by the service (the team comes from the run).
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            for name in ("run", "checkpoint", "runtime", "merge_adapter", "gguf_type", "override_gate",
                         "override_reason"):
                fields[name].read_only = True
        return fields

    def validate(self, attrs):
        run, checkpoint = attrs.get("run"), attrs.get("checkpoint")
        if run is not None and checkpoint is not None and checkpoint.run_id != run.pk:
            raise serializers.ValidationError({"checkpoint": ["Must be a checkpoint of the chosen run."]})
        runtime = attrs.get("runtime") or getattr(self.instance, "runtime", Runtime.PYTORCH)
        if attrs.get("precision", "auto") != "auto" and runtime != Runtime.PYTORCH:
            raise serializers.ValidationError(
                {"precision": [f"Applies to the PyTorch runtime; a {runtime} deployment serves its export's own precision."]})
        if attrs.get("gguf_type", GgufType.F16) != GgufType.F16 and runtime != Runtime.LLAMA_CPP:
            raise serializers.ValidationError(
                {"gguf_type": [f"Applies to the llama.cpp runtime; a {runtime} deployment does not serve a GGUF."]})
        return attrs


GGUF_QUANTIZE = (Quantize.Q8_0, Quantize.Q4_K_M)


class ExportSerializer(StrictModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True)
    filename = serializers.SerializerMethodField(help_text="The zip's name, once the export succeeded")
    quality_warning = serializers.CharField(
        read_only=True, help_text="Non-empty when a quantized model missed its quality budget and was kept anyway "
                                  "(keep_anyway): it says what it missed. Such a file is worse than the trained model.")

    class Meta:
        model = Export
        fields = ["id", "project", "run", "checkpoint", "format", "quantize", "runtime", "keep_anyway", "status",
                  "filename", "size_bytes", "verification", "quality_warning", "error", "progress", "heartbeat_at", "started_at", "finished_at",
                  "created_by", "created_at"]
        read_only_fields = ["status", "size_bytes", "verification", "error", "progress", "heartbeat_at",
                            "started_at", "finished_at", "created_by"]
        extra_kwargs = {"checkpoint": {"help_text": "Empty: the run's best checkpoint (else its final model)"}}

    def get_filename(self, export) -> str | None:
        return export.storage_key.rsplit("/", 1)[-1] if export.storage_key else None

    def validate(self, attrs):
        """Every problem with the combination at once, each under its field."""
        run, checkpoint = attrs.get("run"), attrs.get("checkpoint")
        format, quantize = attrs.get("format"), attrs.get("quantize", Quantize.NONE)
        runtime = attrs.get("runtime", "")
        problems = {}
        if attrs.get("keep_anyway") and quantize == Quantize.NONE:
            problems["keep_anyway"] = ["Applies to quantized exports (quantize int8, q8_0 or q4_k_m): an fp32 ONNX "
                                       "or f16 GGUF export that does not reproduce PyTorch is never kept."]
        if run is not None and checkpoint is not None and checkpoint.run_id != run.pk:
            problems["checkpoint"] = ["Must be a checkpoint of the chosen run."]
        if quantize in GGUF_QUANTIZE and format not in (ExportFormat.GGUF, ExportFormat.BUNDLE):
            problems["quantize"] = [f"{quantize} applies to GGUF exports (format gguf) and llama.cpp bundles "
                                    "(format bundle, runtime llama.cpp)."]
        elif format == ExportFormat.GGUF and quantize not in (Quantize.NONE, *GGUF_QUANTIZE):
            problems["quantize"] = [f"A GGUF is f16 (none), q8_0 or q4_k_m, not {quantize}."]
        elif quantize != Quantize.NONE and format == ExportFormat.GGUF_LORA:
            problems["quantize"] = ["A GGUF LoRA adapter is f16 (none); it runs on a base GGUF of any precision."]
        elif quantize != Quantize.NONE and format not in (ExportFormat.ONNX, ExportFormat.BUNDLE, ExportFormat.GGUF):
            problems["quantize"] = [f"{quantize} applies to ONNX exports and bundles (format onnx or bundle); "
                                    "a Hugging Face export keeps the trained weights."]
        if format == ExportFormat.BUNDLE:
            # Without a runtime, the quantization says which: int8 is ONNX, q8_0 and q4_k_m a GGUF.
            wanted = (Runtime.ONNX if quantize == Quantize.INT8 else Runtime.LLAMA_CPP if quantize in GGUF_QUANTIZE
                      else None)
            if not runtime:
                runtime = wanted or Runtime.PYTORCH
            elif wanted is not None and runtime != wanted:
                problems["runtime"] = [f"A {quantize} bundle runs on {wanted.label}: use runtime {wanted.value}, "
                                       "or leave it out."]
        elif runtime:
            problems["runtime"] = ["Applies to bundles only (format bundle)."]
        if problems:
            raise serializers.ValidationError(problems)
        attrs["runtime"] = runtime
        return attrs


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)


class PlaygroundChatSerializer(serializers.Serializer):
    """OpenAI's chat completion body without `model` (the deployment is the model). The inference
    service validates it fully; this documents it in the schema."""

    messages = ChatMessageSerializer(many=True)
    temperature = serializers.FloatField(required=False, min_value=0.0, max_value=2.0)
    top_p = serializers.FloatField(required=False)
    max_tokens = serializers.IntegerField(required=False, min_value=1)
    stop = serializers.ListField(child=serializers.CharField(), required=False)
    seed = serializers.IntegerField(required=False)
    stream = serializers.BooleanField(required=False, default=True,
                                      help_text="true (default): text/event-stream of chat.completion.chunk events "
                                                "ending with `data: [DONE]`; false: one chat.completion object")


class CompletionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Completion
        fields = ["id", "team", "deployment", "run", "checkpoint", "model", "kind", "prompt", "answer",
                  "finish_reason", "prompt_tokens", "completion_tokens", "source", "created_at"]
        read_only_fields = fields
        extra_kwargs = {"prompt": {"help_text": "Chat: the messages [{role, content}]; text completion: the prompt"}}


class FeedbackSerializer(serializers.ModelSerializer):
    rating = serializers.SerializerMethodField(help_text="Ratings: up or down")

    class Meta:
        model = Feedback
        fields = ["id", "team", "completion", "kind", "rating", "correction", "compared_with", "preferred", "comment",
                  "source", "created_by", "created_at"]
        read_only_fields = fields

    def get_rating(self, feedback) -> str | None:
        return None if feedback.rating is None else ("up" if feedback.rating else "down")


class GiveFeedbackSerializer(StrictSerializer):
    """Exactly one of rating, correction or compared_with (with preferred)."""

    completion = serializers.CharField(max_length=64, help_text="The id the API returned (chatcmpl-…, cmpl-…)")
    rating = serializers.ChoiceField(required=False, choices=["up", "down"], help_text="Thumbs up or down")
    correction = serializers.CharField(required=False, max_length=100_000, trim_whitespace=False,
                                       help_text="What the answer should have been")
    compared_with = serializers.CharField(required=False, max_length=64,
                                          help_text="Another completion of the same prompt, for a choice")
    preferred = serializers.CharField(required=False, max_length=64,
                                      help_text="With compared_with: the better one's id, or \"tie\"")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class FeedbackVersionSerializer(StrictSerializer):
    dataset = TeamScopedRelatedField(queryset=Dataset.all_teams.all(), help_text="The dataset that gets the new version")
    kind = serializers.ChoiceField(choices=list(ROW_KINDS.items()), help_text="The kind of rows the version holds")
    deployment = TeamScopedRelatedField(queryset=Deployment.all_teams.all(), required=False, allow_null=True,
                                        help_text="Only feedback on this deployment's answers (default: all of the team)")
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class FeedbackSummarySerializer(serializers.Serializer):
    feedback = serializers.IntegerField(help_text="Feedback given (ratings, corrections and choices)")
    rows = serializers.DictField(child=serializers.IntegerField(),
                                 help_text="How many rows of each kind (pairs, unpaired, supervised) a version would hold now")
