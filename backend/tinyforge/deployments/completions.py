"""The answers the inference service keeps, so that feedback can name them by id.

The platform's CompletionLog (inference.py) calls `keep_completion` for each answer it returns to
a person, with the prompt, the deployment and the run and checkpoint behind it. A team keeps at
most COMPLETIONS_KEPT_PER_TEAM of them (plus DROP_EVERY per inference process between two
drops); the oldest without feedback go first, and an answer with feedback stays (it is data).
What the feedback becomes is deployments/feedback.py's.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from tinyforge.deployments.models import Completion, Deployment
from tinyforge.serving.answers import Answer

# Counting a team's answers past the limit reads that many index entries: done once every this many
# answers a process keeps, so a team holds at most the limit plus this many per inference process.
DROP_EVERY = 100
_kept_since_drop: dict[int, int] = {}


def keep_completion(answer: Answer, deployment_id: int, source: str) -> Completion | None:
    """Store one answer of a deployment (None when the deployment is gone meanwhile); every
    DROP_EVERY answers of a team, drop its oldest past the limit."""
    deployment = (Deployment.all_teams.filter(pk=deployment_id).only("pk", "team_id", "run_id", "checkpoint_id")
                  .first())
    if deployment is None:
        return None
    completion = Completion.all_teams.create(
        id=answer.id, team_id=deployment.team_id, deployment=deployment, run_id=deployment.run_id,
        checkpoint_id=deployment.checkpoint_id, model=answer.model_id[:100], kind=answer.kind,
        prompt=without_nul(answer.prompt), answer=without_nul(answer.text), finish_reason=answer.finish_reason[:16],
        prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens, source=source)
    kept = _kept_since_drop.get(deployment.team_id, 0) + 1
    _kept_since_drop[deployment.team_id] = kept % DROP_EVERY
    if kept >= DROP_EVERY:
        drop_oldest_completions(deployment.team_id)
    return completion


def without_nul(value):
    """`value` (text, or a prompt's messages) with each NUL character replaced by U+FFFD, the mark
    a decoder puts for what it cannot show. PostgreSQL's text and jsonb refuse NUL, so the answer
    was not kept and feedback on its id was a 404; and a dataset import refuses rows holding it
    (connectors/mapping.py). Models do write it: a byte-level tokenizer has a token for byte 0."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def drop_oldest_completions(team_id: int, keep: int | None = None) -> int:
    """Delete the team's answers older than its `keep` newest (COMPLETIONS_KEPT_PER_TEAM), except
    those that have feedback; returns how many went."""
    keep = settings.COMPLETIONS_KEPT_PER_TEAM if keep is None else keep
    team_rows = Completion.objects.for_team(team_id)
    first_dropped = team_rows.order_by("-created_at", "-id").values("created_at", "id")[keep:keep + 1]
    first_dropped = next(iter(first_dropped), None)
    if first_dropped is None:
        return 0
    older = Q(created_at__lt=first_dropped["created_at"]) | Q(created_at=first_dropped["created_at"],
                                                              id__lte=first_dropped["id"])
    deleted, _ = team_rows.filter(older, feedback__isnull=True, compared_in__isnull=True).delete()
    return deleted
