import pytest

from tinyforge.core.tenancy import TenancyError
from tinyforge.projects.models import Project
from tinyforge.training.models import RunEvent, TrainingRun


def test_it_refuses_an_unscoped_query(acme):
    with pytest.raises(TenancyError):
        list(Project.objects.all())
    with pytest.raises(TenancyError):
        Project.objects.filter(name="x").count()
    with pytest.raises(TenancyError):
        Project.objects.get(pk=acme.project.pk)
    with pytest.raises(TenancyError):
        Project.objects.filter(pk=acme.project.pk).update(name="y")
    with pytest.raises(TenancyError):
        Project.objects.filter(pk=acme.project.pk).delete()


def test_it_refuses_a_missing_team(acme):
    with pytest.raises(TenancyError):
        Project.objects.for_team(None)
    with pytest.raises(TenancyError):
        TrainingRun.objects.for_teams(None)


def test_it_returns_only_the_teams_rows(acme, globex):
    assert list(Project.objects.for_team(acme.team)) == [acme.project]
    assert list(TrainingRun.objects.for_teams([globex.team.pk])) == [globex.run]
    assert list(RunEvent.objects.for_team(acme.team)) == [RunEvent.all_teams.get(pk=acme.event.pk)]
    assert list(Project.objects.for_teams([])) == []


def test_it_keeps_the_scope_through_chained_filters(acme, globex):
    assert Project.objects.for_team(acme.team).filter(name__icontains="project").exclude(pk=0).count() == 1
