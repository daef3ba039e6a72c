"""Team scoping that fails closed.

Every model that belongs to a team has `team_path` (the lookup from the model to its Team) and
two managers:

- `Model.objects`: the tenant-facing manager. Its querysets refuse to run (TenancyError) until
  they are narrowed with `.for_team(team)` or `.for_teams(team_ids)`; passing None raises too.
  Views use nothing else, so a forgotten scope is an exception, never another team's rows.
- `Model.all_teams`: unscoped, and the default manager, for jobs (which receive ids from the
  platform itself), the admin, migrations and Django's own uniqueness checks. Grep for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models


class TenancyError(RuntimeError):
    """A team-scoped model was queried without a team."""


class TeamScopedQuerySet(models.QuerySet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._team_scoped = False

    def _clone(self):
        clone = super()._clone()
        clone._team_scoped = self._team_scoped
        return clone

    def for_team(self, team) -> "TeamScopedQuerySet":
        if team is None:
            raise TenancyError(f"{self.model.__name__}.objects.for_team() needs a team, got None")
        return self.for_teams([team.pk if isinstance(team, models.Model) else team])

    def for_teams(self, teams: Iterable | None) -> "TeamScopedQuerySet":
        if teams is None:
            raise TenancyError(f"{self.model.__name__}.objects.for_teams() needs team ids, got None")
        ids = [t.pk if isinstance(t, models.Model) else t for t in teams]
        if any(i is None for i in ids):
            raise TenancyError(f"{self.model.__name__}.objects.for_teams() got a team without an id")
        clone = self.filter(**{f"{self.model.team_path}__in": ids})
        clone._team_scoped = True
        return clone

    def _require_team(self) -> None:
        if not self._team_scoped:
            raise TenancyError(
                f"{self.model.__name__} queried without a team: narrow it with "
                f".for_team(team) / .for_teams(ids), or use {self.model.__name__}.all_teams in jobs"
            )

    def _fetch_all(self):
        self._require_team()
        super()._fetch_all()

    def iterator(self, *args, **kwargs):
        self._require_team()
        return super().iterator(*args, **kwargs)

    def count(self):
        self._require_team()
        return super().count()

    def exists(self):
        self._require_team()
        return super().exists()

    def aggregate(self, *args, **kwargs):
        self._require_team()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs):
        self._require_team()
        return super().update(**kwargs)

    def delete(self):
        self._require_team()
        return super().delete()


class TeamOwnedModel(models.Model):
    """Base of every model that belongs to a team (directly or through its project)."""

    # Declared first, so it is the default manager Django's internals and the admin use.
    all_teams = models.Manager()
    objects = TeamScopedQuerySet.as_manager()

    team_path: str = "project__team"

    class Meta:
        abstract = True
