"""Recipes: document chunks -> dataset rows.

- "text": each chunk becomes the answer to a short prompt naming where it comes from. The row
  schema has no bare-text form, so this is how continued pre-training on a corpus is expressed:
  the model is trained on the chunk's tokens.
- "sections": each section (split into parts when long) becomes the answer to an instruction
  built from its heading path; chunks before the first heading have no question and are skipped.
- "qa": a model behind any OpenAI-compatible API writes question/answer pairs about each chunk;
  the chunk is kept in the row's metadata (`source_chunk`) so every answer can be checked.
- "knowledge": a teacher lists each chunk's facts and writes several grounded questions and answers
  per fact, and a held-out fact check (knowledge.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tinyforge.connectors.chunking import Chunk
from tinyforge.connectors.knowledge import KnowledgeGenerator, KnowledgeOptions
from tinyforge.connectors.teacher import (Teacher, TeacherFailed, TeacherOptions, TeacherUnusable, json_array,
                                         list_schema, text_schema)
from tinyforge.errors import TinyforgeError

RECIPES = ("text", "sections", "qa", "knowledge")


@dataclass
class QAOptions(TeacherOptions):
    """The model that writes question/answer pairs (the qa recipe's teacher)."""

    questions_per_chunk: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.questions_per_chunk <= 20:
            raise TinyforgeError("questions per chunk must be between 1 and 20")


_QA_SYSTEM = ("You write training data. Given a passage, write question and answer pairs that the passage "
              "alone answers. Reply with only a JSON array of objects with the keys \"question\" and \"answer\".")

_PAIR = {"type": "object", "properties": {"question": text_schema(200), "answer": text_schema(400)},
         "required": ["question", "answer"], "additionalProperties": False}


@dataclass
class QAGenerator:
    options: QAOptions
    failed_chunks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # first few {"location", "reason"}

    def __post_init__(self) -> None:
        self.teacher = Teacher(self.options)

    def pairs(self, chunk: Chunk) -> list[tuple[str, str]]:
        where = " > ".join(chunk.heading_path)
        prompt = (f"Write {self.options.questions_per_chunk} question and answer pairs about this passage"
                  + (f" from the section \"{where}\"" if where else "") + f":\n\n{chunk.text}")
        try:
            content, _ = self.teacher.chat(_QA_SYSTEM, prompt, schema=("pairs", list_schema(
                _PAIR, self.options.questions_per_chunk, fewer=True)))
        except TeacherUnusable as exc:
            # Nothing will work for the next chunk either: stop the import and say why.
            raise TinyforgeError(f"question generation: {exc}") from None
        except TeacherFailed as exc:
            return self._failed(chunk, str(exc))
        items = json_array(content).items  # a reply cut off at its token limit keeps the pairs before the cut
        if items is None:
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
    knowledge: KnowledgeOptions | None = None
    journal: str | None = None  # knowledge: where finished chunks are kept for a resume
    chunks_without_heading: int = 0

    def __post_init__(self) -> None:
        if self.name not in RECIPES:
            raise TinyforgeError(f"unknown recipe {self.name!r}; choose one of {', '.join(RECIPES)}")
        if self.name == "qa" and self.qa is None:
            raise TinyforgeError("the qa recipe needs a model: give its OpenAI-compatible base URL and model name")
        if self.name == "knowledge" and self.knowledge is None:
            raise TinyforgeError("the knowledge recipe needs a teacher: give its OpenAI-compatible base URL and "
                                 "model name")
        self.generator = QAGenerator(self.qa) if self.name == "qa" else None
        self.knowledge_generator = (KnowledgeGenerator(self.knowledge, self.journal)
                                    if self.name == "knowledge" else None)

    def apply(self, chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, Iterable[dict[str, Any]]]]:
        """(chunk, its rows) in document order; the knowledge recipe works on several chunks at once."""
        if self.knowledge_generator:
            return self.knowledge_generator.rows(chunks)
        return ((chunk, self.examples(chunk)) for chunk in chunks)

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
