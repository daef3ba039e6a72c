"""A team's own experiment trackers (Settings), and where each run was mirrored."""

from __future__ import annotations

from django.db import models

from tinyforge.core.encryption import decrypt_json, encrypt_json
from tinyforge.core.tenancy import TeamOwnedModel

# The secret fields of TeamTracking, kept encrypted together and never sent back by the API.
SECRET_FIELDS = ("mlflow_password", "mlflow_token", "wandb_api_key")


class TeamTracking(TeamOwnedModel):
    """A team's MLflow and W&B settings; they replace the server-wide ones (TINYFORGE_MLFLOW_*,
    TINYFORGE_WANDB_*) for the team's runs. Changed by owners only."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="tracking")
    mlflow_tracking_uri = models.CharField(max_length=500, blank=True, help_text="http(s) URL of an MLflow tracking "
                                           "server; empty: the server-wide one, if any")
    mlflow_experiment = models.CharField(max_length=200, blank=True, help_text="Empty: tinyforge/<team>/<project>")
    mlflow_username = models.CharField(max_length=200, blank=True)
    wandb_project = models.CharField(max_length=128, blank=True, help_text="Empty: tinyforge-<team>-<project>")
    wandb_entity = models.CharField(max_length=128, blank=True)
    wandb_base_url = models.CharField(max_length=500, blank=True, help_text="Empty: W&B's cloud")
    log_model = models.BooleanField(default=False, help_text="Also upload the final model folder (large)")
    encrypted_secrets = models.BinaryField(editable=False, default=b"")
    updated_at = models.DateTimeField(auto_now=True)

    team_path = "team"

    def __str__(self) -> str:
        return f"tracking of {self.team}"

    def secrets(self) -> dict[str, str]:
        if not self.encrypted_secrets:
            return {}
        return decrypt_json(self.encrypted_secrets, f"the tracking settings of team {self.team_id}")

    def set_secrets(self, values: dict[str, str]) -> None:
        self.encrypted_secrets = encrypt_json({k: v for k, v in values.items() if v})


class TrackedRun(TeamOwnedModel):
    """A training run's latest attempt as a run in one tracker."""

    run = models.ForeignKey("training.TrainingRun", on_delete=models.CASCADE, related_name="tracked")
    tracker = models.CharField(max_length=16, choices=[("mlflow", "MLflow"), ("wandb", "Weights & Biases")])
    attempt = models.PositiveIntegerField(default=1)
    external_id = models.CharField(max_length=200, help_text="The run's id in the tracker")
    experiment_id = models.CharField(max_length=200, blank=True)
    # The settings it was sent with, so a deployment registers in the same MLflow.
    tracking_uri = models.CharField(max_length=500, blank=True)
    url = models.CharField(max_length=1000, blank=True, help_text="The run's page in the tracker (none offline)")
    logged_model = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    team_path = "run__project__team"

    class Meta:
        ordering = ["tracker"]
        constraints = [models.UniqueConstraint(fields=["run", "tracker"], name="tracked_run_unique_tracker")]
