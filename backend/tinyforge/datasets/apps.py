from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "tinyforge.datasets"
    label = "datasets"
    verbose_name = "Datasets"

    def ready(self) -> None:
        from tinyforge.core import storage
        from tinyforge.core.reconcile import TrackedKind, register
        from tinyforge.datasets import lifecycle
        from tinyforge.datasets.models import DatasetVersion, DatasetVersionStatus as S
        from tinyforge.datasets.jobs import retry_lost_import
        from tinyforge.datasets.services import INGEST_JOB, ingest_job_id

        def remove_partial_file(version: DatasetVersion) -> None:
            if version.storage_key:
                storage.delete(version.storage_key)

        # The ingest job beats from a thread, so one long step (a huge PDF page, token counting)
        # never looks like a dead worker.
        register(TrackedKind(
            name="versions", model=DatasetVersion, queue="ingest", job=INGEST_JOB,
            waiting=(S.PENDING,), working=(S.INGESTING, S.VALIDATING), mark_failed=lifecycle.mark_failed,
            job_id_for=ingest_job_id, noun="version", doing="importing", job_label="ingest",
            failed_label="import failed", remedy=lambda version: "import the data again",
            lost_detail=lambda version: f", last: {version.progress_message or version.status}",
            on_lost=remove_partial_file, select_related=("dataset",), retry_lost=retry_lost_import,
        ))
