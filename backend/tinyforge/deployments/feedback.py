"""Feedback on deployed answers, and the preference data it becomes.

1. The inference service keeps every answer it returns (deployments/completions.py) under the id
   its caller got, with the prompt, the deployment and the run and checkpoint behind it.
2. People judge answers by id (`give_feedback`): a rating (thumbs up or down), a correction (what
   it should have said), or a choice between two answers to the same prompt (or a tie). From the
   Playground with their session, from a team's own application with its API token.
3. `create_feedback_version` turns the team's feedback into a dataset version in TRL's shapes
   (ml/schema.py), one kind of row per version:
   - pairs {prompt, chosen, rejected} for DPO and ORPO: choices (the winner chosen) and
     corrections (the correction chosen, the original answer rejected);
   - unpaired {prompt, completion, label} for KTO: ratings;
   - supervised {messages} (or {instruction, output} for text completions): corrections.
   A person who changes their mind counts once: the latest rating and the latest correction of
   each answer, the latest choice of each two answers. The rows are written when the version is
   made and imported like an upload, so the version never changes with later feedback.
"""

from __future__ import annotations

import json
import uuid

from django.conf import settings
from django.db import transaction

from tinyforge.core import storage
from tinyforge.core.access import has_role, role_in, token_of, visible_team_ids
from tinyforge.core.roles import Role, Scope
from tinyforge.datasets.models import Dataset, SourceKind
from tinyforge.datasets.services import create_version
from tinyforge.deployments.models import Completion, CompletionSource, Deployment, Feedback, FeedbackKind
from tinyforge.errors import InvalidInput, NotAllowed, NotFound

ROW_KINDS = {
    "pairs": "preference pairs {prompt, chosen, rejected} from choices and corrections (DPO, ORPO)",
    "unpaired": "unpaired preferences {prompt, completion, label} from thumbs up and down (KTO)",
    "supervised": "supervised rows from corrections (the answer it should have given)",
}


# --- feedback ------------------------------------------------------------------------------


def find_completion(request, completion_id: str, field: str = "completion") -> Completion:
    """A kept answer of the caller's teams; another team's id reads as an unknown one (404)."""
    completion = (Completion.objects.for_teams(visible_team_ids(request)).select_related("team")
                  .filter(pk=completion_id).first())
    if completion is None:
        raise NotFound(f"{field}: no completion {completion_id!r} in your teams (answers are kept for "
                       f"{settings.COMPLETIONS_KEPT_PER_TEAM} per team, and never for requests sent with store: false).")
    return completion


def require_feedback_permission(request, team) -> None:
    """Anyone who may chat with the team's deployments may judge their answers, unless the team
    requires write access for feedback: then an API token needs the 'write' scope and a person
    the member role."""
    token = token_of(request)
    if team.feedback_requires_write:
        if token is not None and not token.has_scope(Scope.WRITE):
            raise NotAllowed(f"Team {team.name} requires the 'write' scope for feedback (its setting "
                             f"feedback_requires_write); this token has {', '.join(sorted(token.scopes)) or 'no scopes'}.")
        if token is None and not has_role(role_in(request, team.pk), Role.MEMBER):
            raise NotAllowed(f"Team {team.name} requires the member role for feedback; yours is viewer.")
    elif token is not None and not (token.has_scope(Scope.INFERENCE) or token.has_scope(Scope.WRITE)):
        raise NotAllowed("Feedback needs an API token with the 'inference' or 'write' scope.")


def _source(request) -> str:
    return CompletionSource.API if token_of(request) is not None else CompletionSource.PLAYGROUND


def give_feedback(request, *, completion: str, rating: str | None = None, correction: str | None = None,
                  compared_with: str | None = None, preferred: str | None = None, comment: str = "") -> Feedback:
    """Record a rating ("up"/"down"), a correction, or a choice (compared_with + preferred: one of
    the two ids or "tie") on a kept answer. Exactly one of the three."""
    answer = find_completion(request, completion)  # first: another team's id is a 404 whatever the body
    given = [name for name, value in (("rating", rating), ("correction", correction),
                                      ("compared_with", compared_with)) if value is not None]
    if len(given) != 1:
        message = "Give exactly one of rating, correction or compared_with (with preferred)" + (
            f"; got {' and '.join(given)}." if given else ".")
        raise InvalidInput({name: [message] for name in (given or ["non_field_errors"])})
    if preferred is not None and compared_with is None:
        raise InvalidInput({"preferred": ["Only with compared_with: the choice between two answers."]})
    require_feedback_permission(request, answer.team)
    fields = {"kind": FeedbackKind.RATING}
    if rating is not None:
        if rating not in ("up", "down"):
            raise InvalidInput({"rating": [f"Use \"up\" or \"down\", not {rating!r}."]})
        fields = {"kind": FeedbackKind.RATING, "rating": rating == "up"}
    elif correction is not None:
        if not correction.strip():
            raise InvalidInput({"correction": ["The correction is blank: write the answer it should have given."]})
        if correction.strip() == answer.answer.strip():
            raise InvalidInput({"correction": ["The correction is the answer itself, so there is no preference to "
                                               "learn; rate it up instead."]})
        fields = {"kind": FeedbackKind.CORRECTION, "correction": correction}
    else:
        other = find_completion(request, compared_with, "compared_with")
        if other.pk == answer.pk:
            raise InvalidInput({"compared_with": ["Compare two different answers."]})
        if other.team_id != answer.team_id:
            raise NotFound(f"compared_with: no completion {compared_with!r} in the team of {completion!r}.")
        if other.prompt != answer.prompt:
            raise InvalidInput({"compared_with": [f"{other.pk} answers another prompt than {answer.pk}; a choice "
                                                  "compares two answers to the same prompt."]})
        if preferred not in (answer.pk, other.pk, "tie"):
            raise InvalidInput({"preferred": [f"Give {answer.pk!r}, {other.pk!r} or \"tie\"."]})
        if preferred != "tie" and other.answer.strip() == answer.answer.strip():
            raise InvalidInput({"preferred": ["The two answers are the same text, so neither is better: send \"tie\"."]})
        fields = {"kind": FeedbackKind.CHOICE, "compared_with": other,
                  "preferred": None if preferred == "tie" else (answer if preferred == answer.pk else other)}
    user = request.user if request.user.is_authenticated else None
    return Feedback.all_teams.create(team_id=answer.team_id, completion=answer, comment=comment or "",
                                     source=_source(request), created_by=user, token=token_of(request), **fields)


# --- dataset versions ----------------------------------------------------------------------


def _feedback(team_id: int, deployment_id: int | None, up_to: int | None):
    rows = Feedback.objects.for_team(team_id).select_related("completion", "compared_with", "preferred")
    if deployment_id is not None:
        rows = rows.filter(Feedback.on_deployment(deployment_id))
    if up_to is not None:
        rows = rows.filter(pk__lte=up_to)
    return rows.order_by("pk")


def feedback_rows(team_id: int, kind: str, *, deployment_id: int | None = None, up_to: int | None = None) -> list[dict]:
    """The rows of `kind` (ROW_KINDS) the team's feedback gives, oldest feedback first; the latest
    judgement of each answer (or pair of answers) counts."""
    latest: dict[tuple, Feedback] = {}
    for item in _feedback(team_id, deployment_id, up_to):
        if item.kind == FeedbackKind.CHOICE:
            key = ("choice", *sorted((item.completion_id, item.compared_with_id)))
        else:
            key = (item.kind, item.completion_id)
        latest.pop(key, None)  # re-inserted last: rows keep the order of the latest judgements
        latest[key] = item
    rows = []
    for item in latest.values():
        answer = item.completion
        source = {"feedback": item.pk, "completion": answer.pk, "deployment": answer.deployment_id,
                  "run": answer.run_id, "checkpoint": answer.checkpoint_id}
        if kind == "pairs" and item.kind == FeedbackKind.CHOICE and item.preferred_id is not None:
            loser = item.compared_with if item.preferred_id == answer.pk else answer
            if item.preferred.answer != loser.answer:
                rows.append({"prompt": answer.prompt, "chosen": item.preferred.answer, "rejected": loser.answer,
                             "metadata": {**source, "compared_with": item.compared_with_id}})
        elif kind == "pairs" and item.kind == FeedbackKind.CORRECTION:
            rows.append({"prompt": answer.prompt, "chosen": item.correction, "rejected": answer.answer,
                         "metadata": source})
        elif kind == "unpaired" and item.kind == FeedbackKind.RATING:
            rows.append({"prompt": answer.prompt, "completion": answer.answer, "label": bool(item.rating),
                         "metadata": source})
        elif kind == "supervised" and item.kind == FeedbackKind.CORRECTION:
            if answer.kind == "chat":
                rows.append({"messages": [*answer.prompt, {"role": "assistant", "content": item.correction}],
                             "metadata": source})
            else:
                rows.append({"instruction": answer.prompt, "output": item.correction, "metadata": source})
    return rows


def create_feedback_version(request, *, dataset: Dataset, kind: str, deployment: Deployment | None = None,
                            note: str = ""):
    """A new version of `dataset` holding the rows of `kind` that the team's feedback (on one
    deployment's answers, or all) gives now; imported and validated like an upload."""
    team_id = dataset.project.team_id
    if deployment is not None and deployment.team_id != team_id:
        raise InvalidInput({"deployment": ["Must be a deployment of the dataset's team."]})
    last = _feedback(team_id, deployment.pk if deployment else None, None).values_list("pk", flat=True).last()
    rows = feedback_rows(team_id, kind, deployment_id=deployment.pk if deployment else None, up_to=last)
    if not rows:
        whose = f"deployment {deployment.name}" if deployment else "the team's deployments"
        raise InvalidInput({"kind": [f"No feedback on {whose} gives {ROW_KINDS[kind]} yet."]})
    key = storage.upload_key(dataset.project_id, f"feedback-{uuid.uuid4().hex}", "feedback.jsonl")
    with storage.atomic_write(key) as handle:
        for row in rows:
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
    config = {"files": [{"key": key, "name": f"feedback ({kind}).jsonl"}], "format": "jsonl",
              "feedback": {"kind": kind, "deployment": deployment.pk if deployment else None, "up_to": last,
                           "rows": len(rows)}}
    try:
        with transaction.atomic():
            version = create_version(request, dataset=dataset, source_kind=SourceKind.FEEDBACK, source_config=config,
                                     note=note or f"{len(rows)} rows from feedback ({kind})")
    except BaseException:
        storage.delete(key)
        raise
    return version
