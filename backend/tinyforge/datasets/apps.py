from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "tinyforge.datasets"
    label = "datasets"
    verbose_name = "Datasets"
