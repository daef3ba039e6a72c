from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from tinyforge.core.api import StrictModelSerializer
from tinyforge.tracking.models import SECRET_FIELDS, TeamTracking, TrackedRun
from tinyforge.tracking.services import check_tracking_uri


class TeamTrackingSerializer(StrictModelSerializer):
    """A team's trackers. Secrets are write-only: leave one out to keep it, send "" to remove it."""

    mlflow_password = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=1000,
                                            trim_whitespace=False, help_text="Basic-auth password (stored encrypted)")
    mlflow_token = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=4000,
                                         help_text="Bearer token instead of a user and password (stored encrypted)")
    wandb_api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=200,
                                          help_text="W&B API key; W&B is on for the team while one is set (stored encrypted)")
    has_mlflow_password = serializers.SerializerMethodField()
    has_mlflow_token = serializers.SerializerMethodField()
    has_wandb_api_key = serializers.SerializerMethodField()
    server_mlflow = serializers.SerializerMethodField(
        help_text="The server-wide MLflow URI that the team's runs use while its own is empty (null: none)")
    server_wandb = serializers.SerializerMethodField(
        help_text="Whether W&B is on server-wide for teams without their own key")

    class Meta:
        model = TeamTracking
        fields = ["team", "mlflow_tracking_uri", "mlflow_experiment", "mlflow_username", "mlflow_password",
                  "mlflow_token", "wandb_project", "wandb_entity", "wandb_base_url", "wandb_api_key", "log_model",
                  "has_mlflow_password", "has_mlflow_token", "has_wandb_api_key", "server_mlflow", "server_wandb",
                  "updated_at"]
        read_only_fields = ["team"]

    def _secrets(self, instance) -> dict:
        if instance is None or not instance.pk:
            return {}
        try:
            return instance.secrets()
        except ValueError:
            return {}

    def get_has_mlflow_password(self, instance) -> bool:
        return bool(self._secrets(instance).get("mlflow_password"))

    def get_has_mlflow_token(self, instance) -> bool:
        return bool(self._secrets(instance).get("mlflow_token"))

    def get_has_wandb_api_key(self, instance) -> bool:
        return bool(self._secrets(instance).get("wandb_api_key"))

    def get_server_mlflow(self, instance) -> str | None:
        return settings.MLFLOW_TRACKING_URI

    def get_server_wandb(self, instance) -> bool:
        return bool(settings.WANDB_API_KEY) or settings.WANDB_MODE == "offline"

    def _uri(self, value: str, field: str) -> str:
        if not value:
            return ""
        try:
            return check_tracking_uri(value, field)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_mlflow_tracking_uri(self, value: str) -> str:
        return self._uri(value, "mlflow_tracking_uri")

    def validate_wandb_base_url(self, value: str) -> str:
        return self._uri(value, "wandb_base_url")

    def save_to(self, instance: TeamTracking) -> TeamTracking:
        data = dict(self.validated_data)
        secrets = {**self._secrets(instance), **{k: data.pop(k) for k in SECRET_FIELDS if k in data}}
        for name, value in data.items():
            setattr(instance, name, value)
        instance.set_secrets(secrets)
        instance.save()
        return instance


class TrackedRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrackedRun
        fields = ["id", "run", "tracker", "attempt", "external_id", "experiment_id", "url", "created_at", "updated_at"]
        read_only_fields = fields
