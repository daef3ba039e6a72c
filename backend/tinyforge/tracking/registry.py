"""Deployments as model versions in MLflow's Model Registry (deployments.jobs.DEPLOYED_HOOKS)."""

from __future__ import annotations

import logging
from urllib.parse import quote

from django.conf import settings

from tinyforge.core.models import EventLevel
from tinyforge.ml.tracking import MlflowTracker
from tinyforge.tracking.models import TrackedRun
from tinyforge.tracking.services import team_trackers

logger = logging.getLogger(__name__)


def deployment_url(deployment) -> str:
    return f"{settings.PUBLIC_URL}/projects/{deployment.project_id}/services?deployment={deployment.pk}"


def register_deployment(deployment, say) -> str | None:
    """Register the deployed model as a new version of the registered model named like the
    deployment, in the MLflow its run was tracked in. Returns the version, or None when the run
    was not tracked there or the registry refused (a warning on the deployment; never a failed deploy)."""
    tracked = TrackedRun.all_teams.filter(run_id=deployment.run_id, tracker="mlflow").first()
    if tracked is None:
        return None
    try:
        mlflow = team_trackers(deployment.team).mlflow
        if mlflow is None or mlflow.tracking_uri != tracked.tracking_uri:
            say(f"not registered in MLflow's Model Registry: the run was tracked at {tracked.tracking_uri}, "
                "which this team no longer uses", EventLevel.WARNING)
            return None
        tracker = MlflowTracker(mlflow.tracking_uri, mlflow.credentials)
        source = (f"runs:/{tracked.external_id}/model" if tracked.logged_model
                  else tracker.artifact_uri(tracked.external_id))
        checkpoint = f"checkpoint at step {deployment.checkpoint.step}" if deployment.checkpoint_id else "final model"
        link = deployment_url(deployment)
        version = tracker.register_model_version(
            deployment.name, tracked.external_id, source=source,
            description=f"TinyForgeAI deployment {deployment.name} ({checkpoint} of run {deployment.run.name}): {link}",
            tags={"tinyforge.deployment": deployment.name, "tinyforge.deployment_id": str(deployment.pk),
                  "tinyforge.deployment_url": link, "tinyforge.run_id": str(deployment.run_id),
                  "tinyforge.source": checkpoint, "tinyforge.runtime": deployment.runtime})
    except Exception as exc:
        logger.info("deployment %s: registering in MLflow failed: %s", deployment.pk, exc)
        say(f"not registered in MLflow's Model Registry: {exc}", EventLevel.WARNING)
        return None
    say(f"registered in MLflow's Model Registry as {deployment.name} version {version}: "
        f"{mlflow.tracking_uri}/#/models/{quote(deployment.name)}/versions/{version}")
    return version
