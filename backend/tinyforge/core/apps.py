from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "tinyforge.core"
    label = "core"
    verbose_name = "TinyForgeAI core"
