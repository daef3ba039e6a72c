from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tinyforge.tracking"
    label = "tracking"
    verbose_name = "Experiment tracking and platform metrics"

    def ready(self) -> None:
        # Every training run and every deployment reaches the trackers through these hooks.
        from tinyforge.deployments.jobs import DEPLOYED_HOOKS
        from tinyforge.tracking.registry import register_deployment
        from tinyforge.tracking.runs import run_tracking
        from tinyforge.training.jobs import RUN_CALLBACK_FACTORIES

        if run_tracking not in RUN_CALLBACK_FACTORIES:
            RUN_CALLBACK_FACTORIES.append(run_tracking)
        if register_deployment not in DEPLOYED_HOOKS:
            DEPLOYED_HOOKS.append(register_deployment)
