from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "tinyforge.deployments"
    label = "deployments"
    verbose_name = "Deployments and exports"
