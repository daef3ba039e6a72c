"""Which trackers a team's runs go to: the team's own settings, else the server-wide ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.text import slugify

from tinyforge.ml.tracking import MlflowCredentials, MlflowTracker, Tracker, WandbTracker
from tinyforge.tracking.models import TeamTracking

# Schemes a team may give: the server makes the requests, so a file: (or sqlite:, or a Databricks
# profile) URI would let a team write into the server's own disk and accounts.
TEAM_URI_SCHEMES = ("http", "https")


def check_tracking_uri(value: str, field: str) -> str:
    """The URI, or ValueError saying what is wrong with it."""
    parts = urlsplit(value.strip())
    if parts.scheme not in TEAM_URI_SCHEMES or not parts.netloc:
        raise ValueError(f"{field}: {value!r} is not an http:// or https:// URL of a tracking server "
                         f"(file: and other local stores are refused: the server would write into its own disk)")
    return value.strip().rstrip("/")


@dataclass
class MlflowSettings:
    tracking_uri: str
    credentials: MlflowCredentials
    experiment: str


@dataclass
class WandbSettings:
    api_key: str
    entity: str
    project: str
    base_url: str
    mode: str


@dataclass
class TeamTrackers:
    mlflow: MlflowSettings | None
    wandb: WandbSettings | None
    log_model: bool

    def build(self, project, wandb_directory: Path | None) -> list[Tracker]:
        team = project.team
        trackers: list[Tracker] = []
        if self.mlflow:
            trackers.append(MlflowTracker(self.mlflow.tracking_uri, self.mlflow.credentials,
                                          experiment=self.mlflow.experiment or f"tinyforge/{team.slug}/{project.name}"))
        if self.wandb:
            trackers.append(WandbTracker(
                project=self.wandb.project or slugify(f"tinyforge-{team.slug}-{project.name}")[:128],
                api_key=self.wandb.api_key, entity=self.wandb.entity, base_url=self.wandb.base_url,
                mode=self.wandb.mode, directory=wandb_directory))
        return trackers


def team_trackers(team) -> TeamTrackers:
    """The trackers of a team's runs. Raises ValueError when its stored secrets cannot be read."""
    own = TeamTracking.all_teams.filter(team=team).first()
    secrets = own.secrets() if own else {}
    mlflow = None
    if own and own.mlflow_tracking_uri:
        mlflow = MlflowSettings(own.mlflow_tracking_uri, MlflowCredentials(
            own.mlflow_username, secrets.get("mlflow_password", ""), secrets.get("mlflow_token", "")),
            own.mlflow_experiment)
    elif settings.MLFLOW_TRACKING_URI:
        mlflow = MlflowSettings(settings.MLFLOW_TRACKING_URI, MlflowCredentials(
            settings.MLFLOW_USERNAME, settings.MLFLOW_PASSWORD, settings.MLFLOW_TOKEN), settings.MLFLOW_EXPERIMENT)
    wandb = None
    if own and secrets.get("wandb_api_key"):
        wandb = WandbSettings(secrets["wandb_api_key"], own.wandb_entity, own.wandb_project, own.wandb_base_url,
                              "online")
    elif settings.WANDB_API_KEY or settings.WANDB_MODE == "offline":
        wandb = WandbSettings(settings.WANDB_API_KEY, settings.WANDB_ENTITY, settings.WANDB_PROJECT,
                              settings.WANDB_BASE_URL or "", settings.WANDB_MODE)
    log_model = (own.log_model if own else False) or settings.TRACKING_LOG_MODEL
    return TeamTrackers(mlflow, wandb, log_model)
