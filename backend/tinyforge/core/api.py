"""Building blocks every API view uses: strict serializers, team-scoped viewsets and filters."""

from __future__ import annotations

from collections.abc import Mapping

from django import forms
from django.db import models
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers, viewsets
from rest_framework.generics import get_object_or_404

from tinyforge.core.access import visible_team_ids
from tinyforge.core.query import bounded_int, query_int

# Largest id any of our tables can hold (BigAutoField); anything outside is no id at all.
MAX_ID = 2**63 - 1


def parse_id(value, name: str = "id") -> int:
    return bounded_int(value, name, 1, MAX_ID, "Must be a positive whole number.")


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(v) for v in value)
    return False


class CleanJSONField(serializers.JSONField):
    """JSON without NUL characters (PostgreSQL refuses them in jsonb)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if contains_nul(value):
            raise serializers.ValidationError("Null characters are not allowed.")
        return value


class TeamScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key the caller may only point at objects of their own teams; another team's id
    is answered exactly like an id that does not exist (400)."""

    def get_queryset(self):
        request = self.context.get("request")
        model = self.queryset.model
        # No request means no caller, hence no team: for_teams(None) refuses (fails closed).
        return model.objects.for_teams(visible_team_ids(request) if request is not None else None)

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool) and not 1 <= data <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """Rejects fields it does not know (or that are read-only) instead of ignoring them, so a
    typo in a hyperparameter name is an error, not a silently different run."""

    serializer_related_field = TeamScopedRelatedField
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.JSONField: CleanJSONField,
    }

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(key) for key in data.keys() if key not in writable)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown or read-only field."] for key in unknown})
        return super().to_internal_value(data)


class StrictSerializer(serializers.Serializer):
    """A plain serializer (actions' request bodies) that rejects unknown fields too."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data.keys() if key not in self.fields or self.fields[key].read_only)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown or read-only field."] for key in unknown})
        return super().to_internal_value(data)


class TeamScopedViewSet(viewsets.GenericViewSet):
    """Its queryset is the model's rows in the caller's teams, nothing else (see core.tenancy)."""

    model = None
    select_related: tuple[str, ...] = ()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no caller, no rows
            return self.model.objects.for_teams([])
        queryset = self.model.objects.for_teams(visible_team_ids(self.request))
        if self.select_related:
            queryset = queryset.select_related(*self.select_related)
        return queryset

    def get_object(self):
        lookup = self.lookup_url_kwarg or self.lookup_field
        pk = parse_id(self.kwargs[lookup])
        # Unlike DRF's default, the list's filters are not applied: an action's own query
        # parameters may share their names (/runs/42/metrics/?name=loss).
        obj = get_object_or_404(self.get_queryset(), **{self.lookup_field: pk})
        self.check_object_permissions(self.request, obj)
        return obj


class IdFilter(filters.NumberFilter):
    """Filter by an id: a positive whole number, else 400."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


AFTER_PARAMETERS = [
    OpenApiParameter("after", OpenApiTypes.INT, description="Only rows with an id above this (the tail cursor)."),
    OpenApiParameter("limit", OpenApiTypes.INT, description="At most this many rows (default 200, max 1000)."),
]


def rows_after(queryset, request, default_limit: int = 200, max_limit: int = 1000):
    """The tail of a log: rows with id > ?after, oldest first, at most ?limit. Returns
    (rows, next cursor, whether more are waiting)."""
    after_id = query_int(request, "after", default=0, minimum=0, maximum=MAX_ID)
    limit = query_int(request, "limit", default=default_limit, minimum=1, maximum=max_limit)
    rows = list(queryset.filter(id__gt=after_id).order_by("id")[: limit + 1])
    has_more = len(rows) > limit
    rows = rows[:limit]
    cursor = rows[-1].id if rows else after_id
    return rows, cursor, has_more
