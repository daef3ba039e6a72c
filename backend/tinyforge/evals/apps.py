from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "tinyforge.evals"
    label = "evals"
    verbose_name = "Evaluations"

    def ready(self) -> None:
        from tinyforge.core.reconcile import TrackedKind, register
        from tinyforge.deployments.services import register_deploy_check
        from tinyforge.evals import lifecycle, services
        from tinyforge.evals.models import EvalStatus as S, Evaluation
        from tinyforge.training.signals import run_succeeded

        register(TrackedKind(
            name="evaluations", model=Evaluation, queue="eval", job=services.EVAL_JOB,
            waiting=(S.QUEUED,), working=(S.RUNNING,), mark_failed=lifecycle.mark_failed,
            job_id_for=services.evaluation_job_id, noun="evaluation", job_label="eval",
            remedy=lambda evaluation: "start the evaluation again (the rows it finished are kept)",
        ))
        register_deploy_check(services.check_deploy)
        run_succeeded.connect(lambda sender, run, **kwargs: services.evaluate_finished_run(run),
                              dispatch_uid="evals.evaluate_finished_run", weak=False)
