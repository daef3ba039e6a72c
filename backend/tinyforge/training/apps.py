from datetime import timedelta

from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "tinyforge.training"
    label = "training"
    verbose_name = "Training runs"

    def ready(self) -> None:
        from tinyforge.core.reconcile import TrackedKind, register
        from tinyforge.training import lifecycle, reconcile
        from tinyforge.training.models import RunStatus, TrainingRun
        from tinyforge.training.services import TRAIN_JOB, job_id_for

        register(TrackedKind(
            name="runs", model=TrainingRun, queue="train", job=TRAIN_JOB,
            waiting=(RunStatus.QUEUED,), working=(RunStatus.RUNNING,), mark_failed=lifecycle.mark_failed,
            job_id_for=job_id_for, job_args=lambda run: (run.pk, run.attempt),
            noun="run", job_label="train", remedy=reconcile.remedy, lost_detail=reconcile.lost_detail,
            retry_lost=reconcile.retry_lost_run, passes=(reconcile.stop_overdue_cancels,),
            # A run is created by a short request that commits at once; a queued run waits for
            # minutes of nobody's work when its job is lost, so it is looked for sooner.
            grace=timedelta(seconds=5),
        ))
