"""Recipes: document chunks -> dataset rows.

- "text": each chunk becomes the answer to a short prompt naming where it comes from. The row
  schema has no bare-text form, so this is how continued pre-training on a corpus is expressed:
  the model is trained on the chunk's tokens.
- "sections": each section (split into parts when long) becomes the answer to an instruction
  built from its heading path; chunks before the first heading have no question and are skipped.
- "qa": a model behind any OpenAI-compatible API writes question/answer pairs about each chunk;
  the chunk is kept in the row's metadata (`source_chunk`) so every answer can be checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tinyforge import bounded_json
from tinyforge.connectors.chunking import Chunk
from tinyforge.errors import TinyforgeError

RECIPES = ("text", "sections", "qa")
_JSON_ARRAY = re.compile(r"\[.*\]", re.DOTALL)


@dataclass
class QAOptions:
    """The model that writes question/answer pairs, reachable over the OpenAI API."""

    base_url: str  # e.g. http://localhost:8000/v1 (a TinyForge deployment) or any compatible server
    model: str
    api_key: str = "none"  # many local servers want no key, but the client needs a value
    questions_per_chunk: int = 3
    temperature: float = 0.2
    timeout_s: float = 120.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.questions_per_chunk <= 20:
            raise TinyforgeError("questions per chunk must be between 1 and 20")


_QA_SYSTEM = ("You write training data. Given a passage, write question and answer pairs that the passage "
              "alone answers. Reply with only a JSON array of objects with the keys \"question\" and \"answer\".")


@dataclass
class QAGenerator:
    options: QAOptions
    failed_chunks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # first few {"location", "reason"}
    _client: Any = None

    def pairs(self, chunk: Chunk) -> list[tuple[str, str]]:
        import openai

        if self._client is None:
            self._client = openai.OpenAI(base_url=self.options.base_url, api_key=self.options.api_key,
                                         timeout=self.options.timeout_s, max_retries=self.options.max_retries)
        where = " > ".join(chunk.heading_path)
        prompt = (f"Write {self.options.questions_per_chunk} question and answer pairs about this passage"
                  + (f" from the section \"{where}\"" if where else "") + f":\n\n{chunk.text}")
        try:
            reply = self._client.chat.completions.create(
                model=self.options.model, temperature=self.options.temperature,
                messages=[{"role": "system", "content": _QA_SYSTEM}, {"role": "user", "content": prompt}])
        except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError,
                openai.NotFoundError) as exc:
            # Nothing will work for the next chunk either: stop the import and say why.
            raise TinyforgeError(f"question generation: the model {self.options.model!r} at "
                                 f"{self.options.base_url} cannot be used: {exc}") from None
        except openai.APIError as exc:
            return self._failed(chunk, f"the API answered with an error: {exc}")
        content = (reply.choices[0].message.content or "") if reply.choices else ""
        match = _JSON_ARRAY.search(content)
        try:
            items = bounded_json.loads(match.group(0)) if match else None
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list):
            return self._failed(chunk, f"the reply is not a JSON array: {content[:200]!r}")
        pairs = [(str(i["question"]).strip(), str(i["answer"]).strip()) for i in items
                 if isinstance(i, dict) and i.get("question") and i.get("answer")]
        if not pairs:
            return self._failed(chunk, f"the reply holds no question/answer objects: {content[:200]!r}")
        return pairs[: self.options.questions_per_chunk]

    def _failed(self, chunk: Chunk, reason: str) -> list:
        self.failed_chunks += 1
        if len(self.failures) < 20:
            self.failures.append({"source": chunk.source, "location": chunk.location, "reason": reason})
        return []


@dataclass
class Recipe:
    """Applies one recipe to chunks; counts what it had to skip."""

    name: str = "text"
    section_prompt: str = 'What does the section "{path}" of {document} say?'
    text_prompt: str = "Write the passage from {where}."
    qa: QAOptions | None = None
    chunks_without_heading: int = 0

    def __post_init__(self) -> None:
        if self.name not in RECIPES:
            raise TinyforgeError(f"unknown recipe {self.name!r}; choose one of {', '.join(RECIPES)}")
        if self.name == "qa" and self.qa is None:
            raise TinyforgeError("the qa recipe needs a model: give its OpenAI-compatible base URL and model name")
        self.generator = QAGenerator(self.qa) if self.name == "qa" else None

    def examples(self, chunk: Chunk) -> Iterator[dict[str, Any]]:
        metadata = chunk.metadata() | {"recipe": self.name}
        path = " > ".join(chunk.heading_path)
        if self.name == "text":
            where = f"{chunk.source}, {path}" if path else chunk.source
            yield {"instruction": self.text_prompt.format(where=where), "output": chunk.text, "metadata": metadata}
        elif self.name == "sections":
            if not chunk.heading_path:
                self.chunks_without_heading += 1
                return
            instruction = self.section_prompt.format(path=path, heading=chunk.heading_path[-1], document=chunk.source)
            if chunk.part > 1:
                instruction += f" (part {chunk.part})"
            yield {"instruction": instruction, "output": chunk.text, "metadata": metadata}
        else:
            for question, answer in self.generator.pairs(chunk):
                yield {"instruction": question, "output": answer,
                       "metadata": metadata | {"source_chunk": chunk.text, "generator_model": self.qa.model}}
