from tinyforge.core.audit import audit, save_changes
from tinyforge.projects.models import Project


def create_project(request, *, team, name: str, description: str = "") -> Project:
    project = Project.all_teams.create(team=team, name=name, description=description, created_by=request.user)
    audit(request, "created", project)
    return project


def update_project(request, project: Project, changes: dict) -> Project:
    return save_changes(request, project, changes)


def delete_project(request, project: Project) -> None:
    audit(request, "deleted", project, changes={"name": project.name}, project_id=None)
    project.delete()
