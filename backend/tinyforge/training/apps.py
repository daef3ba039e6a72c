from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "tinyforge.training"
    label = "training"
    verbose_name = "Training runs"
