"""Query parameters: the one parser of numbers in URLs, and the filter backend every list uses.

A parameter given twice, a number outside its bounds or a filter value the filter cannot read is
a 400 naming it, never silently the last value, a clipped number or no filter at all.
Kept apart from core.api: DRF imports its filter backends while its generic views load.
"""

from __future__ import annotations

import re

from django_filters import rest_framework as filters
from rest_framework import exceptions

# Digits only: int() would also take "1_000", " 7 " and other scripts' digits.
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,30}")


def bounded_int(value, name: str, minimum: int, maximum: int, message: str | None = None) -> int:
    """A whole number from a URL (a path part, a query parameter) between `minimum` and `maximum`,
    else a 400 naming `name`. The one parser of numbers in URLs."""
    text = str(value)
    if not _WHOLE_NUMBER.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise exceptions.ValidationError({name: [message or f"Must be a whole number from {minimum} to {maximum}."]})
    return int(text)


def query_int(request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """?name= as bounded_int; `default` when absent or empty; given twice is a 400 too."""
    return bounded_int(value, name, minimum, maximum) if (value := single_query_value(request, name)) else default


def single_query_value(request, name: str) -> str | None:
    """?name= when given at most once (None when absent); twice is a 400, not silently the last one."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise exceptions.ValidationError({name: ["Given more than once; give it once."]})
    return values[0] if values else None


_BOOLEANS = {"true", "false", "1", "0"}


class FilterBackend(filters.DjangoFilterBackend):
    """django-filter's backend, stricter: each single-valued filter given at most once, and a
    true/false filter given true or false (django-filter reads anything else as "no filter")."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is not None:
            problems = {}
            for name, field in filterset.filters.items():
                values = request.query_params.getlist(name)
                if len(values) > 1 and not isinstance(field, filters.MultipleChoiceFilter):
                    problems[name] = ["Given more than once; give it once."]
                elif values and isinstance(field, filters.BooleanFilter) and values[0].lower() not in _BOOLEANS:
                    problems[name] = ["Must be true or false."]
            if problems:
                raise exceptions.ValidationError(problems)
        return super().filter_queryset(request, queryset, view)
