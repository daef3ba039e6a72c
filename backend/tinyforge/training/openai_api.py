"""OpenAI's fine-tuning API over the platform's runs, so existing tools (the official `openai`
client, scripts written for OpenAI) automate training unchanged:

    POST /v1/files                                   purpose "fine-tune": a JSONL file -> a dataset version
    GET  /v1/files, /v1/files/{id}, /v1/files/{id}/content
    POST /v1/fine_tuning/jobs                        -> a training run (LoRA on the base model `model`)
    GET  /v1/fine_tuning/jobs, /v1/fine_tuning/jobs/{id}
    POST /v1/fine_tuning/jobs/{id}/cancel
    GET  /v1/fine_tuning/jobs/{id}/events, /v1/fine_tuning/jobs/{id}/checkpoints

Authenticated by API tokens only (`Authorization: Bearer`), and scoped to the token's team: files
go to the team's project named by the `OpenAI-Project` header (an id or a name), else to a project
"OpenAI API" created on first use. Ids carry OpenAI's prefixes over our row ids (file-12,
ftjob-34, ftevent-56, ftckpt-78); lists are newest first (files: `order`) with an `after` cursor
and `has_more`, like OpenAI's, so the client's auto-pagination walks them. Errors use the
platform's one error body, whose `error.message` the client shows.

This module holds what both halves share (ids, pages, the token's team and project); the files
are training/openai_files.py, the jobs training/openai_jobs.py, their request bodies
training/serializers.py and their routes training/openai_urls.py.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.views import APIView

from tinyforge.accounts.authentication import BearerTokenAuthentication
from tinyforge.core.access import require_role, token_of
from tinyforge.core.api import parse_id
from tinyforge.core.query import query_int
from tinyforge.core.parsers import JSONParser
from tinyforge.core.roles import Role
from tinyforge.projects.models import Project
from tinyforge.projects.services import create_project
from tinyforge.training.models import TrainingRun

DEFAULT_PROJECT = "OpenAI API"
FILES_DATASET = "OpenAI files"
LEVELS = {"debug": "info", "info": "info", "warning": "warn", "error": "error"}


def _unix(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


def _row_id(value: str, prefix: str) -> int:
    """ftjob-12 -> 12; anything else is simply not found."""
    try:
        if not value.startswith(prefix):
            raise exceptions.ValidationError("no prefix")
        return parse_id(value.removeprefix(prefix))
    except exceptions.ValidationError:
        raise exceptions.NotFound(f"No such object: {value}") from None


def _limit(request, default: int = 20, most: int = 100) -> int:
    return query_int(request, "limit", default=default, minimum=1, maximum=most)


def _ordered_after(request, rows, prefix: str, default: str = "asc"):
    """OpenAI's list cursor: ?order=asc|desc by id, and ?after=<prefix><id> for what follows."""
    order = request.query_params.get("order") or default
    if order not in ("asc", "desc"):
        raise exceptions.ValidationError({"order": ["Must be 'asc' or 'desc'."]})
    rows = rows.order_by("pk" if order == "asc" else "-pk")
    if request.query_params.get("after"):
        after = _row_id(request.query_params["after"], prefix)
        rows = rows.filter(pk__gt=after) if order == "asc" else rows.filter(pk__lt=after)
    return rows


def _page(rows, limit: int, render) -> dict:
    rows = list(rows[: limit + 1])
    data = [render(row) for row in rows[:limit]]
    page = {"object": "list", "data": data, "has_more": len(rows) > limit}
    if data:
        page["first_id"], page["last_id"] = data[0]["id"], data[-1]["id"]
    return page


class IgnoreAcceptHeader(BaseContentNegotiation):
    """Answers in the view's first renderer (JSON) whatever the Accept header asks for."""

    def select_parser(self, request, parsers):
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class OpenAIView(APIView):
    authentication_classes = [BearerTokenAuthentication]
    parser_classes = [JSONParser]

    def team_id(self) -> int:
        token = token_of(self.request)
        if token is None:
            raise exceptions.NotAuthenticated("The OpenAI-compatible API needs an API token (Authorization: Bearer).")
        return token.team_id

    def project(self) -> Project:
        team_id = self.team_id()
        wanted = (self.request.headers.get("OpenAI-Project") or "").strip()
        projects = Project.objects.for_teams([team_id])
        if wanted:
            try:
                found = projects.filter(pk=parse_id(wanted)).first()
            except exceptions.ValidationError:  # not an id: a project's name
                found = projects.filter(name=wanted).first()
            if found is None:
                raise exceptions.ValidationError({"OpenAI-Project": [f"No project {wanted!r} in this token's team."]})
            return found
        found = projects.filter(name=DEFAULT_PROJECT).order_by("pk").first()
        if found is None:
            require_role(self.request, team_id, Role.MEMBER, action="create the OpenAI API project")
            found = create_project(self.request, team=token_of(self.request).team, name=DEFAULT_PROJECT,
                                   description="Files and fine-tuning jobs created through the OpenAI API")
        return found

    def run(self, job_id: str) -> TrainingRun:
        run = TrainingRun.objects.for_teams([self.team_id()]).select_related(
            "dataset_version", "validation_version", "project__team").filter(pk=_row_id(job_id, "ftjob-")).first()
        if run is None:
            raise exceptions.NotFound(f"No fine-tuning job {job_id}.")
        return run
