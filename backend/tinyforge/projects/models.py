from django.conf import settings
from django.db import models

from tinyforge.core.tenancy import TeamOwnedModel


class Project(TeamOwnedModel):
    """A team's workspace: its datasets, runs, deployments and exports live inside it."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=5000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    team_path = "team"

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="project_unique_name_per_team")]

    def __str__(self) -> str:
        return self.name
