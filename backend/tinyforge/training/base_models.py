"""What the API accepts as a model to train from, tokenize with or preview with.

A reference is one of:
- a preset of the engine (`smollm2-135m-instruct`), or a model folder the administrator named in
  TINYFORGE_MODEL_FOLDERS (`name=/path`): names, never paths;
- a Hugging Face id (`org/name`), where the server can reach the Hub or has the model cached;
- `run:<id>` or `checkpoint:<id>`: a finished run's model or a checkpoint of the team that owns
  the object being made or read.

A server path is never accepted: with one, a caller could read another team's run folder (its
tokenizer and chat template) or learn which folders exist from the error messages. Every refusal
says the same thing whatever exists on the server.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from rest_framework import serializers

from tinyforge.core import storage
from tinyforge.errors import TinyforgeError

# The Hub's repo id syntax (owner/name); a leading letter or digit keeps ".", "/" and "~" out.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_OWN = re.compile(r"(run|checkpoint):([0-9]{1,19})")


HELP = ("A preset or a model folder this server names (GET /api/v1/runs/config-options/), a Hugging Face id "
        "(org/name), or run:<id> / checkpoint:<id> of the same team; never a server path")


class UnusableBaseModel(TinyforgeError):
    """A model reference the API does not accept, or that names nothing of the team."""


class StartingModelNotFound(UnusableBaseModel):
    """run:<id> / checkpoint:<id> names nothing of the team (unknown, or another team's: the same
    words either way). Starting a run from it is a 404; as a tokenizer for a report, a 400."""


class StartingModelNotReady(UnusableBaseModel):
    """run:<id> names a run of the team that has no weights to start from (queued, running, failed,
    cancelled, or its files are gone). Starting a run from it is a 409."""


class BaseModelField(serializers.CharField):
    """A model reference in a request, checked against the team in the serializer's context
    ("team_id": the team that owns what is being made or read; none accepts no run or checkpoint)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 500)
        kwargs.setdefault("help_text", HELP)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            try:
                check(value, self.context.get("team_id"))
            except UnusableBaseModel as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value


def choices_text() -> str:
    from tinyforge.ml.models import PRESETS

    names = [*PRESETS, *settings.MODEL_FOLDERS]
    return (f"give a preset ({', '.join(names)}), a Hugging Face id such as HuggingFaceTB/SmolLM2-135M-Instruct, "
            "or run:<id> or checkpoint:<id> of your team")


def check(reference: str, team_id: int | None) -> None:
    """Raise UnusableBaseModel unless `reference` is one the API accepts for `team_id`."""
    _folder_or_hub_id(reference, team_id)


def folder(reference: str, team_id: int) -> Path:
    """The local model folder of an accepted reference (a Hub model is downloaded or read from the
    cache); what the engine and the tokenizer load."""
    from tinyforge.ml.models import hub_folder, resolve_base_model

    found = _folder_or_hub_id(reference, team_id)
    if isinstance(found, Path):
        return found
    if found in _presets():
        return resolve_base_model(found)
    return hub_folder(found)


def _presets():
    from tinyforge.ml.models import PRESETS

    return PRESETS


def _folder_or_hub_id(reference: str, team_id: int | None) -> Path | str:
    """A preset's name or a Hub id as given, or the folder a named model, run or checkpoint is in."""
    name = (reference or "").strip()
    if name in _presets():
        return name
    if name in settings.MODEL_FOLDERS:
        return Path(settings.MODEL_FOLDERS[name])
    own = _OWN.fullmatch(name)
    if own:
        return _team_folder(own.group(1), int(own.group(2)), team_id)
    if _HUB_ID.fullmatch(name) and ".." not in name:
        if not _hub_reachable(name):
            raise UnusableBaseModel(f"{name} is not in this server's model cache and the server does not reach "
                                    f"Hugging Face; {choices_text()}.")
        return name
    raise UnusableBaseModel(f"Unknown base model {name[:100]!r}: {choices_text()}.")


def _team_folder(kind: str, pk: int, team_id: int | None) -> Path:
    from tinyforge.training.models import Checkpoint, RunStatus, TrainingRun

    teams = [team_id] if team_id else []
    if kind == "run":
        run = TrainingRun.objects.for_teams(teams).filter(pk=pk).first()
        if run is None:
            raise StartingModelNotFound(f"No run {pk} in this team.")
        if run.status != RunStatus.SUCCEEDED or not run.output_key:
            raise StartingModelNotReady(f"Run {pk} is {run.status}" + (" without a final model" if run.status ==
                                        RunStatus.SUCCEEDED else "") + ": only a finished run's weights can be "
                                        "started from (or give checkpoint:<id> of one of its checkpoints).")
        key = run.output_key
    else:
        checkpoint = Checkpoint.objects.for_teams(teams).filter(pk=pk).first()
        if checkpoint is None:
            raise StartingModelNotFound(f"No checkpoint {pk} in this team.")
        key = checkpoint.storage_key
    if not key or not storage.exists(key):
        raise StartingModelNotReady(f"The files of {kind} {pk} are missing from the data directory.")
    return storage.path(key)


def _hub_reachable(repo_id: str) -> bool:
    """Online, or the model's config is in the local Hub cache."""
    from huggingface_hub import is_offline_mode, try_to_load_from_cache

    if not is_offline_mode():
        return True
    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
