from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "tinyforge.deployments"
    label = "deployments"
    verbose_name = "Deployments and exports"

    def ready(self) -> None:
        from tinyforge.core import storage
        from tinyforge.core.reconcile import TrackedKind, register
        from tinyforge.deployments import lifecycle
        from tinyforge.deployments.models import Deployment, DeploymentStatus as D, Export, ExportStatus as E
        from tinyforge.deployments.services import DEPLOY_JOB, EXPORT_JOB, deploy_job_id, export_job_id

        # A deployment has no running status: it stays pending while its job prepares the model
        # folder (model_path) and until the inference service loads it, so only a pending one
        # without a folder waits for its job.
        register(TrackedKind(
            name="deployments", model=Deployment, queue="deploy", job=DEPLOY_JOB,
            waiting=(D.PENDING,), waiting_filter={"model_path": ""}, mark_failed=lifecycle.mark_deployment_failed,
            job_id_for=deploy_job_id, noun="deployment", job_label="deploy", failed_label="deploy failed",
            remedy=lambda deployment: "start the deployment again",
        ))
        register(TrackedKind(
            name="exports", model=Export, queue="deploy", job=EXPORT_JOB,
            waiting=(E.PENDING,), working=(E.RUNNING,), mark_failed=lifecycle.mark_export_failed,
            job_id_for=export_job_id, noun="export", job_label="export", failed_label="export failed",
            remedy=lambda export: "export again",
            on_lost=lambda export: storage.delete(storage.export_folder_key(export.project_id, export.pk)),
        ))
