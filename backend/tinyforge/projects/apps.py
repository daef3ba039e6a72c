from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "tinyforge.projects"
    label = "projects"
    verbose_name = "Projects"
