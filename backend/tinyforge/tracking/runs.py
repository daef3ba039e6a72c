"""A training run mirrored to its team's trackers: the callback the train job adds to every run
(training.jobs.RUN_CALLBACK_FACTORIES), and what it sends when the attempt ends."""

from __future__ import annotations

import json
import logging

from django.conf import settings

from tinyforge.core import storage
from tinyforge.core.models import EventLevel
from tinyforge.ml.tracking import Artifact, TrackedRun, TrackerLink, TrackingCallback, model_artifacts
from tinyforge.tracking.models import TrackedRun as TrackedRunRow
from tinyforge.tracking.services import team_trackers

logger = logging.getLogger(__name__)

SOURCE = "tracking"


def run_url(run) -> str:
    return f"{settings.PUBLIC_URL}/projects/{run.project_id}/runs/{run.pk}"


def run_tags(run, attempt: int) -> dict[str, str]:
    version = run.dataset_version
    team = run.project.team
    return {
        "tinyforge.team": team.slug, "tinyforge.project": run.project.name, "tinyforge.run_id": str(run.pk),
        "tinyforge.run_name": run.name, "tinyforge.run_url": run_url(run), "tinyforge.attempt": str(attempt),
        "tinyforge.dataset": version.dataset.name, "tinyforge.dataset_version": str(version.number),
        "tinyforge.dataset_version_id": str(version.pk), "tinyforge.dataset_sha256": version.sha256 or "",
        "tinyforge.base_model": run.base_model, "tinyforge.method": run.method,
    }


class RunTracking(TrackingCallback):
    def __init__(self, run, attempt: int, recorder, trackers, tracked: TrackedRun, log_model: bool):
        self.run, self.attempt, self.recorder, self.log_model = run, attempt, recorder, log_model
        super().__init__(trackers, tracked, warn=self._warn, on_notice=self._notice)

    def _warn(self, message: str) -> None:
        self.recorder.log(message, level=EventLevel.WARNING, source=SOURCE)

    def _notice(self, kind: str, payload) -> None:
        if kind == "linked":
            link: TrackerLink = payload
            tracker = next(feed.tracker for feed in self.feeds if feed.tracker.name == link.tracker)
            TrackedRunRow.all_teams.update_or_create(run_id=self.run.pk, tracker=link.tracker, defaults={
                "attempt": self.attempt, "external_id": link.run_id, "experiment_id": link.experiment_id or "",
                "url": link.url or "", "tracking_uri": getattr(tracker, "tracking_uri", ""),
                "logged_model": self.log_model})
            where = f": {link.url}" if link.url else ""
            self.recorder.log(f"tracked in {dict(mlflow='MLflow', wandb='W&B')[link.tracker]}{where}", source=SOURCE)
        else:
            self.recorder.log(str(payload), source=SOURCE)

    def attempt_ended(self, outcome: str) -> None:
        """After the run's outcome is recorded: send the rest, the artifacts and the final status."""
        outcome = outcome if outcome in ("succeeded", "failed", "cancelled") else "cancelled"
        try:
            self.finish(outcome, self._artifacts(outcome), timeout=settings.TRACKING_FINISH_SECONDS)
            self.recorder.flush(force=True)
        except Exception:  # the run's outcome is already recorded; tracking never changes it
            logger.exception("run %s: finishing experiment tracking failed", self.run.pk)

    def _artifacts(self, outcome: str) -> list[Artifact]:
        artifacts = [Artifact("validation_report.json",
                              content=json.dumps(self.run.dataset_version.validation_report, indent=2))]
        model_dir = storage.path(storage.run_output_key(self.run.project_id, self.run.pk))
        if outcome == "succeeded":
            for name, target in (("README.md", "model_card.md"), ("eval_results.json", "eval_results.json")):
                if (model_dir / name).is_file():
                    artifacts.append(Artifact(target, source=model_dir / name))
            if self.log_model:
                artifacts += model_artifacts(model_dir)
        return artifacts


def run_tracking(run, attempt: int, recorder) -> RunTracking | None:
    """The tracking callback of a run, or None when its team tracks nowhere. A setting that
    cannot be used costs a warning on the run, never the run."""
    try:
        trackers_config = team_trackers(run.project.team)
        wandb_directory = storage.folder(f"{storage.run_key(run.project_id, run.pk)}/wandb") \
            if trackers_config.wandb and trackers_config.wandb.mode == "offline" else None
        trackers = trackers_config.build(run.project, wandb_directory)
        if not trackers:
            return None
        tracked = TrackedRun(name=f"{run.name} (run {run.pk}, attempt {attempt})", params=run.config,
                             tags=run_tags(run, attempt))
        return RunTracking(run, attempt, recorder, trackers, tracked, trackers_config.log_model)
    except Exception as exc:
        recorder.log(f"experiment tracking is off for this run: {exc}", level=EventLevel.WARNING, source=SOURCE)
        return None
