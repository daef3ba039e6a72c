"""Where the service hands each finished answer, so that its id means something later.

Every completion the OpenAI routes return carries an id (`chatcmpl-…`, `cmpl-…`). A server that
is given an AnswerLog passes it each finished answer under that id, with what was asked; the
platform plugs in one that stores them per team, so that feedback sent for the id (a rating, a
correction, a choice between two answers) can be resolved to the prompt, the answer and the
deployment behind it. A bundle or `tinyforge serve` has none, and keeps nothing.

A request with `"store": false` is not passed on: the caller asked that nothing be kept.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    id: str  # the id the client got
    served_name: str  # the served model (the registry's name, not the caller's id)
    model_id: str  # the id the caller asked for
    kind: str  # "chat" or "completion"
    prompt: list[dict[str, str]] | str  # chat: the messages (roles normalised); completion: the prompt text
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    caller: str  # Caller.name: who asked (a token's prefix, the Playground of a deployment...)


class AnswerLog(ABC):
    @abstractmethod
    def record(self, answer: Answer) -> None:
        """Keep `answer`. Called from a worker thread after the answer's last token and before the
        client receives the end of it, so feedback sent as soon as the answer arrives finds it."""
