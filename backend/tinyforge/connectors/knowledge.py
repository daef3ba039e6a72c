"""The knowledge recipe: documents -> many grounded questions and answers per fact, and a held-out fact check.

A small model learns a fact from many differently phrased questions about it and from restatements
of it, written by a stronger teacher (synthetic continued pre-training, Kiln, Easy Dataset). Per
chunk a teacher behind any OpenAI-compatible API (teacher.py) is asked, in turn:

1. for the atomic facts the chunk states, each with its key terms (a sentence of the chunk that the
   teacher's facts leave out becomes a fact of its own: `uncovered_sentences`);
2. for `questions_per_fact` + 1 questions per fact, phrased differently (the last one is held out);
3. for the answer to each training question, from the chunk alone;
4. optionally, for `restatements_per_chunk` rewrites of the chunk (continued pre-training rows).

Each fact also gives a gap-fill row (`gap_fills`, no teacher call): the fact with its key terms
blanked out, answered by the fact. It ties the words around a fact's key terms to them, which
questions do only when the teacher writes questions about their fact.

Everything the teacher writes is checked against its chunk (`ungrounded`): every number and name
must occur in the chunk and most of its content words too. A fact or answer that fails is dropped
and counted with the reason, never kept; a question whose answer is dropped is answered by its fact,
which passed the same check (counted as answers_from_fact). The held-out questions (one per fact) become the fact
check: an eval set file (input, reference = the fact, must_include = the fact's key terms) from
which questions that repeat a training question, exactly or nearly, are dropped.

Chunks are worked on concurrently (at most `concurrency` in flight, a few more read ahead, so a
document of any length holds a bounded number of chunks in memory) and come out in document order.
Each finished chunk is appended to a journal; an import that is stopped (a killed worker) and started
again reuses the journal's chunks that match the document (and did not fail) and asks the teacher
only for the rest. A token budget stops the import cleanly, with the rows made so far, and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from tinyforge.connectors.chunking import Chunk, sentences
from tinyforge.connectors.cleaning import Deduplicator
from tinyforge.connectors.teacher import (Teacher, TeacherFailed, TeacherOptions, json_array, list_schema,
                                         text_schema)
from tinyforge.errors import TinyforgeError
from tinyforge.evaluation.scorers import included

# Each prompt ends with an example reply: without one a 135M teacher (SmolLM2, the platform's offline
# deployment) answers in prose or in JSON of its own shape, and every chunk fails; with it, it replies
# with the array asked for. A teacher that copies the example's car park is caught by the grounding check.
# The examples follow one another (facts -> questions of fact 1 -> their answers), as the recipe's calls do.
_EXAMPLE_PASSAGE = "Section: Parking\nPassage:\n<<<\nStaff park behind the office. The car park closes at 20:00.\n>>>"
FACTS_PROMPT = (
    "You extract facts for training data. List at most {facts_per_chunk} atomic facts that the passage "
    "states: each one short, self-contained sentence, in the passage's language, with its key terms (the "
    "names, numbers and words an answer about it must contain) copied exactly from the passage. Reply with "
    "only a JSON array of objects with the keys \"fact\" and \"key_terms\" (a list of strings); reply [] "
    "when the passage states no facts."
    "\n\nExample passage:\n" + _EXAMPLE_PASSAGE + "\nExample reply:\n"
    "[{\"fact\": \"The car park closes at 20:00.\", \"key_terms\": [\"20:00\"]}, "
    "{\"fact\": \"Staff park behind the office.\", \"key_terms\": [\"behind the office\"]}]")
QUESTIONS_PROMPT = (
    "You write questions for training data. For each numbered fact write {questions} questions whose answer "
    "is that fact, each phrased differently: direct, indirect, terse, as a customer would ask, as a new "
    "colleague would ask. Do not copy the fact's wording. Reply with only a JSON array of objects with the "
    "keys \"fact\" (the fact's number) and \"questions\" (a list of strings)."
    "\n\nExample request:\n" + _EXAMPLE_PASSAGE + "\n\nFacts:\n1. The car park closes at 20:00.\nExample reply:\n"
    "[{\"fact\": 1, \"questions\": [\"When does the car park close?\", \"Until what time can I leave my car "
    "there?\", \"Car park closing time?\"]}]")
ANSWERS_PROMPT = (
    "You answer questions for training data. Each numbered question comes with the fact it asks about. "
    "Answer it in one or two sentences from that fact and the passage alone, in the passage's language, with "
    "the passage's exact names and numbers. Reply with only a JSON array of objects with the keys "
    "\"question\" (its number) and \"answer\"."
    "\n\nExample request:\n" + _EXAMPLE_PASSAGE + "\n\nQuestions:\n1. When does the car park close?\n"
    "   Fact: The car park closes at 20:00.\n2. Until what time can I leave my car there?\n"
    "   Fact: The car park closes at 20:00.\nExample reply:\n"
    "[{\"question\": 1, \"answer\": \"The car park closes at 20:00.\"}, "
    "{\"question\": 2, \"answer\": \"Until 20:00, when the car park closes.\"}]")
RESTATEMENTS_PROMPT = (
    "You rewrite passages for training data. Rewrite the passage {restatements} times, each time in different "
    "words and order, keeping every fact, name and number and adding nothing. Reply with only a JSON array "
    "of strings."
    "\n\nExample passage (two rewrites):\n" + _EXAMPLE_PASSAGE + "\nExample reply:\n"
    "[\"The car park behind the office, where staff park, closes at 20:00.\", "
    "\"At 20:00 the staff car park behind the office closes.\"]")
PROMPTS = {"facts": FACTS_PROMPT, "questions": QUESTIONS_PROMPT, "answers": ANSWERS_PROMPT,
           "restatements": RESTATEMENTS_PROMPT}
RESTATEMENT_INSTRUCTION = "What does {where} say?"
GAP_FILL_INSTRUCTION = "Fill in the gap: {gapped}"
GAP = "___"
# Rough sizes for the estimate: tokens of a system prompt, a fact, a question, an answer.
_PROMPT_TOKENS, _FACT_TOKENS, _QUESTION_TOKENS, _ANSWER_TOKENS = 120, 25, 20, 35
MAX_LISTED = 50


@dataclass
class KnowledgeOptions:
    """The knowledge recipe's teacher and knobs. Defaults suit a handbook and a 1-10B teacher."""

    teacher: TeacherOptions
    facts_per_chunk: int = 8
    questions_per_fact: int = 4  # training questions; one more per fact is asked for the fact check
    restatements_per_chunk: int = 0
    gap_fills: bool = True  # a gap-fill row per fact (gap_fill)
    temperature: float = 0.7  # for questions and restatements (facts and answers use the teacher's own)
    prompts: dict[str, str] = field(default_factory=dict)  # "facts", "questions", "answers", "restatements"
    concurrency: int = 4  # chunks worked on at once
    token_budget: int | None = None  # teacher tokens (prompt + completion) after which the import stops

    def __post_init__(self) -> None:
        for name, low, high in (("facts per chunk", 1, 50), ("questions per fact", 1, 20),
                                ("restatements per chunk", 0, 20), ("concurrency", 1, 32)):
            value = getattr(self, name.replace(" ", "_"))
            if not low <= value <= high:
                raise TinyforgeError(f"knowledge recipe: {name} must be between {low} and {high} (got {value})")
        if not 0.0 <= self.temperature <= 2.0:
            raise TinyforgeError("knowledge recipe: the temperature must be between 0 and 2")
        if self.token_budget is not None and self.token_budget < 1:
            raise TinyforgeError("knowledge recipe: the token budget must be a positive number of tokens")
        unknown = set(self.prompts) - set(PROMPTS)
        if unknown:
            raise TinyforgeError(f"knowledge recipe: unknown prompt {sorted(unknown)[0]!r}; the prompts are "
                                 f"{', '.join(PROMPTS)}")
        for name, text in self.prompts.items():
            if not text.strip():
                raise TinyforgeError(f"knowledge recipe: the {name} prompt is blank")

    def prompt(self, name: str) -> str:
        text = self.prompts.get(name) or PROMPTS[name]
        # Plain replacement, not str.format: an edited prompt may hold braces (a JSON example).
        for key, value in (("{facts_per_chunk}", self.facts_per_chunk), ("{questions}", self.questions_per_fact + 1),
                           ("{restatements}", self.restatements_per_chunk)):
            text = text.replace(key, str(value))
        return text

    def calls_per_chunk(self) -> int:
        return 3 + (1 if self.restatements_per_chunk else 0)


# --- the grounding check ---------------------------------------------------------------------------

_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\W*$")
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having
he her here hers him his how i if in into is it its itself just me more most must my no nor not of off on
once only or other our out over own same she should so some such than that the their theirs them then there
these they this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yes according passage text states stated says said mentioned answer
question fact facts
""".split())
_MIN_CONTENT_SHARE = 0.6  # of an answer's content words that must occur in its chunk


class ChunkWords:
    """What the check compares with: the chunk's numbers, words and word stems, lowercased."""

    def __init__(self, text: str):
        self.text = text.lower()
        self.numbers = {_plain_number(n) for n in _NUMBER.findall(text)}
        self.words = {w.lower() for w in _WORD.findall(text)}
        self.stems = {_stem(w) for w in self.words}


def _plain_number(number: str) -> str:
    return number.replace(",", "").rstrip(".")


def _stem(word: str) -> str:
    # Crude but language-neutral: a shared first five letters counts as the same word (run/runs, policy/policies).
    return word[:5]


def _content_words(text: str) -> list[str]:
    # Four letters or more, stop words aside: the words that carry what a sentence says.
    return [w for w in _WORD.findall(text) if len(w) >= 4 and w.lower() not in STOPWORDS]


def prompt_stems(prompt: str) -> frozenset[str]:
    """The stems of a prompt's content words: what `ungrounded` calls an echo of the prompt."""
    return frozenset(_stem(w.lower()) for w in _content_words(prompt))


def ungrounded(text: str, chunk: ChunkWords, prompt: frozenset[str] = frozenset()) -> str | None:
    """Why `text` is not supported by the chunk, or None when its numbers, names and most words are in it.

    A word that is not in the chunk but is in the `prompt` (its stems, `prompt_stems`) is an echo: a
    small teacher copies its prompt's example. SmolLM2-135M wrote "The car park closes every second
    Tuesday, led by Mirela Costa." of the benchmark's glaze workshop, two words of seven from the
    example's car park, which most words in the chunk let through; a student trained on those rows
    (with gap fills) answered 8 of the 30 colleague questions with that sentence."""
    for number in _NUMBER.findall(text):
        if _plain_number(number) not in chunk.numbers:
            return f"the number {number} is not in the chunk"
    content = []
    for match in _WORD.finditer(text):
        word, lower = match.group(0), match.group(0).lower()
        if lower in STOPWORDS:
            continue
        if word[0].isupper() and not _SENTENCE_START.search(text[:match.start()]) and lower not in chunk.words:
            return f"the name {word!r} is not in the chunk"
        if len(word) >= 4:
            content.append(lower)
    missing = [w for w in content if _stem(w) not in chunk.stems]
    echoed = [w for w in missing if _stem(w) in prompt]
    if echoed:
        return f"it repeats the prompt, not the chunk ({', '.join(dict.fromkeys(echoed[:5]))})"
    if content and len(missing) > (1 - _MIN_CONTENT_SHARE) * len(content):
        return f"its key terms are not in the chunk ({', '.join(dict.fromkeys(missing[:5]))})"
    return None


def key_terms(fact: str, proposed: Iterable[Any], chunk: ChunkWords, most: int = 3) -> list[str]:
    """The terms an answer about `fact` must contain: the teacher's, when they occur in the chunk, else
    the fact's numbers and names, else its longest content words."""
    terms = [str(t).strip() for t in proposed if isinstance(t, (str, int, float)) and str(t).strip()]
    terms = [t for t in terms if t.lower() in chunk.text]
    if not terms:
        terms = [n for n in _NUMBER.findall(fact)]
        terms += [w for m in _WORD.finditer(fact) if (w := m.group(0))[0].isupper()
                  and w.lower() not in STOPWORDS and not _SENTENCE_START.search(fact[:m.start()])]
    if not terms:
        words = sorted(set(_content_words(fact)), key=lambda w: (-len(w), w))
        terms = words[:1]
    return list(dict.fromkeys(terms))[:most]


# --- the work on one chunk -------------------------------------------------------------------------


def gap_fill(fact: str, terms: Iterable[str]) -> str | None:
    """The fact with its key terms blanked out (whole words, case folded), or None when it holds none.

    The gap-fill row ("Fill in the gap: On Fridays everyone stops at ___ ...", answered by the fact)
    teaches which words surround a key term without a teacher. On the benchmark's handbook, with
    SmolLM2-135M as the teacher (whose questions are mostly about something else), adding one per
    fact raised the colleague questions a tuned model answered from 13% to 33%."""
    gapped = fact
    for term in sorted(terms, key=len, reverse=True):  # "16:45" before "16"
        gapped = re.sub(rf"(?<!\w){re.escape(term)}(?!\w)", GAP, gapped, flags=re.IGNORECASE)
    return gapped if gapped != fact else None


def first_saying(text: str) -> str:
    """The text up to its first repeated sentence, without a last sentence cut off unfinished.

    A small teacher loops: SmolLM2-135M answered "The town's founding day is 12 June. The town's
    founding day is 12 June. The town's ..." until the answer's length limit cut it. A row like that
    teaches the student to loop; the first sentence is the answer."""
    kept: list[str] = []
    for sentence in sentences(text):
        if sentence.casefold() in {k.casefold() for k in kept}:
            break
        kept.append(sentence)
    if len(kept) > 1 and not kept[-1].endswith((".", "!", "?", "。")):
        kept.pop()  # cut off mid-sentence by the length limit
    return " ".join(kept)


_PARAGRAPH = re.compile(r"\n\s*\n")
_LONGEST_SENTENCE = 300  # characters: longer "sentences" are tables or lists run together, not one statement


def uncovered_sentences(text: str, facts: Iterable[str]) -> list[str]:
    """The sentences of `text` that `facts` leave out: those whose numbers, names and most words the
    facts do not state (the grounding check, with the facts standing in for the chunk).

    A small teacher lists a few of a chunk's facts and skips the rest: SmolLM2-135M found 10-14 of
    the benchmark handbook's 30, so a colleague asking about any of the others found no row that
    taught it. The chunk's own sentences are grounded by construction."""
    told = ChunkWords(" ".join(facts))
    found = []
    for paragraph in _PARAGRAPH.split(text):
        for sentence in sentences(paragraph):
            if len(_content_words(sentence)) < 2 or len(sentence) > _LONGEST_SENTENCE or not ungrounded(sentence, told):
                continue
            found.append(sentence)
    return found


def chunk_hash(chunk: Chunk) -> str:
    return hashlib.sha256(f"{chunk.source}\0{chunk.location}\0{chunk.text}".encode()).hexdigest()


class BudgetExhausted(Exception):
    pass


@dataclass
class ChunkResult:
    """What one chunk gave: the journal's line."""

    index: int
    sha: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)  # {"what", "text", "reason"}
    heldout: list[dict[str, Any]] = field(default_factory=list)  # eval rows
    failed: str | None = None
    no_facts: bool = False
    tokens: int = 0

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False).encode() + b"\n"


def _passage(chunk: Chunk) -> str:
    where = " > ".join(chunk.heading_path)
    return (f"Section: {where}\n" if where else "") + f"Passage:\n<<<\n{chunk.text}\n>>>"


def _numbered(items: Iterable[str]) -> str:
    return "\n".join(f"{n}. {text}" for n, text in enumerate(items, 1))


def answers_request(passage: str, asked: Iterable[tuple[str, str]]) -> str:
    """The answers call's message: each question with the fact it asks about. Given only the
    questions, SmolLM2-135M answered every one of 43 on the benchmark's handbook without its fact's
    names and numbers (all dropped); a teacher that sees the fact answers about that fact."""
    lines = (f"{n}. {question}\n   Fact: {fact}" for n, (question, fact) in enumerate(asked, 1))
    return f"{passage}\n\nQuestions:\n" + "\n".join(lines)


# The shape of each reply, asked for as structured output (Teacher.chat). Lengths are bounded so a
# small teacher looping inside a string is cut short, not at its token limit. The numbered replies fix
# their numbers and count: the teacher fills in the text of every fact's questions and every
# question's answer, and cannot skip or renumber one.
# One or two sentences are about 250 characters: SmolLM2 looping in an answer ("The deadline is 14:00,
# and the workshop is closed on weekends. The deadline is ...") stops there, not 400 characters later.
_FACT, _TERM, _QUESTION, _ANSWER, _RESTATEMENT = (text_schema(n) for n in (200, 60, 150, 250, 2000))


def facts_schema(most: int) -> dict:
    return list_schema({"type": "object", "properties": {"fact": _FACT, "key_terms": list_schema(_TERM, 5, fewer=True)},
                     "required": ["fact", "key_terms"], "additionalProperties": False}, most, fewer=True)


def numbered_schema(key: str, count: int, name: str, value: dict) -> dict:
    """`count` objects, the n-th {key: n, name: value}: the teacher writes only the values."""
    items = [{"type": "object", "properties": {key: {"const": n}, name: value}, "required": [key, name],
              "additionalProperties": False} for n in range(1, count + 1)]
    return {"type": "array", "prefixItems": items, "minItems": count, "maxItems": count}


def _by_number(items: list, key: str, count: int) -> dict[int, Any]:
    """{1-based number: item} for the reply's objects that name a number in range."""
    found = {}
    for item in items:
        if isinstance(item, dict):
            try:
                number = int(item.get(key))
            except (TypeError, ValueError):
                continue
            if 1 <= number <= count and number not in found:
                found[number] = item
    return found


@dataclass
class KnowledgeStats:
    chunks_done: int = 0
    chunks_resumed: int = 0
    chunks_failed: int = 0
    chunks_without_facts: int = 0
    facts: int = 0
    facts_from_chunk: int = 0  # sentences the teacher's facts left out, made facts (uncovered_sentences)
    rows_kept: int = 0
    rows_dropped: int = 0  # the teacher's facts, answers and restatements the checks dropped
    answers_from_fact: int = 0  # questions whose teacher answer was dropped, answered by their fact (_answer)
    gap_fills: int = 0  # gap-fill rows (gap_fill)
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    dropped: list[dict[str, str]] = field(default_factory=list)  # the first few, with where and why
    failures: list[dict[str, str]] = field(default_factory=list)  # {"source", "location", "reason"}
    teacher_calls: int = 0
    teacher_tokens: int = 0
    budget_exhausted: bool = False
    heldout_questions: int = 0
    heldout_duplicates: int = 0
    eval_out: str | None = None


class KnowledgeGenerator:
    """Runs the recipe over chunks: `rows(chunks)` yields (chunk, rows) in order; `finish()` writes the fact check."""

    def __init__(self, options: KnowledgeOptions, journal: str | os.PathLike | None = None,
                 on_chunk: Callable[[KnowledgeStats], None] | None = None):
        self.options = options
        self.teacher = Teacher(options.teacher)
        self.stats = KnowledgeStats()
        self.journal = Journal(Path(journal)) if journal else None
        self.on_chunk = on_chunk
        self._resumed_tokens = 0
        self._heldout: list[dict[str, Any]] = []
        self._echo = {name: prompt_stems(options.prompt(name)) for name in PROMPTS}  # per prompt, for ungrounded
        # Every training question, to keep the fact check's questions out of the training rows.
        self._questions = Deduplicator(exact=True, near=True, threshold=0.7)
        self._lock = threading.Lock()

    # The budget counts what earlier attempts (the journal) spent too.
    def _tokens(self) -> int:
        return self.teacher.tokens + self._resumed_tokens

    def rows(self, chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, list[dict[str, Any]]]]:
        read_ahead = 2 * self.options.concurrency
        window: deque[tuple[Chunk, Future]] = deque()
        chunk_iter = enumerate(chunks)
        with ThreadPoolExecutor(self.options.concurrency, thread_name_prefix="teacher") as pool:
            def submit() -> None:
                for index, chunk in islice(chunk_iter, read_ahead - len(window)):
                    sha = chunk_hash(chunk)
                    future: Future = Future()
                    earlier = self.journal.reuse(index, sha) if self.journal else None
                    if earlier is not None:
                        future.set_result(earlier)
                    else:
                        future = pool.submit(self._work, index, sha, chunk)
                    window.append((chunk, future))

            try:
                submit()
                while window:
                    chunk, future = window.popleft()
                    try:
                        result = future.result()
                    except BudgetExhausted:
                        self.stats.budget_exhausted = True
                        break
                    self._account(chunk, result)
                    yield chunk, result.rows
                    submit()
            finally:
                for _, future in window:
                    future.cancel()
                if self.journal:
                    self.journal.close()

    def _account(self, chunk: Chunk, result: ChunkResult) -> None:
        stats = self.stats
        resumed = getattr(result, "resumed", False)
        if resumed:
            stats.chunks_resumed += 1
            self._resumed_tokens += result.tokens
        elif self.journal:
            self.journal.append(result)
        stats.chunks_done += 1
        stats.chunks_failed += bool(result.failed)
        stats.chunks_without_facts += result.no_facts
        stats.facts += len({row["metadata"]["fact"] for row in result.rows} - {None})  # restatements have none
        stats.facts_from_chunk += len({row["metadata"]["fact"] for row in result.rows
                                       if row["metadata"].get("fact_from") == "chunk"})
        stats.rows_kept += len(result.rows)
        stats.rows_dropped += len(result.dropped)
        stats.answers_from_fact += sum(row["metadata"].get("answer_from") == "fact" for row in result.rows)
        stats.gap_fills += sum(row["metadata"]["kind"] == "gap_fill" for row in result.rows)
        for drop in result.dropped:
            reason = drop["reason"].split(" (")[0]
            stats.dropped_by_reason[reason] = stats.dropped_by_reason.get(reason, 0) + 1
            if len(stats.dropped) < MAX_LISTED:
                stats.dropped.append({"source": chunk.source, "location": chunk.location, **drop})
        if result.failed and len(stats.failures) < MAX_LISTED:
            stats.failures.append({"source": chunk.source, "location": chunk.location, "reason": result.failed})
        questions = [row["instruction"] for row in result.rows if row["metadata"]["kind"] == "question"]
        self._questions.duplicates(questions)
        self._heldout.extend(result.heldout)
        stats.teacher_calls = self.teacher.calls
        stats.teacher_tokens = self._tokens()
        if self.on_chunk:
            self.on_chunk(stats)

    def _ask(self, name: str, chunk_user: str, result: ChunkResult, schema: dict,
             temperature: float | None = None) -> list | None:
        budget = self.options.token_budget
        if budget is not None and self._tokens() >= budget:
            raise BudgetExhausted
        content, tokens = self.teacher.chat(self.options.prompt(name), chunk_user, temperature, (name, schema))
        result.tokens += tokens
        reply = json_array(content)
        if reply.items is None:
            result.failed = f"the teacher's {name} are not a JSON array: {content[:200]!r}"
        elif reply.unread:
            result.dropped.append({"what": name, "text": reply.unread[:300],
                                   "reason": f"the teacher's {name} broke off (not JSON after item {len(reply.items)})"})
        return reply.items

    def _work(self, index: int, sha: str, chunk: Chunk) -> ChunkResult:
        result = ChunkResult(index, sha)
        try:
            self._make(chunk, result)
        except TeacherFailed as exc:
            result.failed = str(exc)
            result.rows, result.heldout = [], []
        return result

    def _make(self, chunk: Chunk, result: ChunkResult) -> None:
        options = self.options
        words = ChunkWords(chunk.text)
        passage = _passage(chunk)
        base = chunk.metadata() | {"recipe": "knowledge", "chunk_sha256": sha_short(result.sha),
                                   "teacher_model": options.teacher.model}

        items = self._ask("facts", passage, result, facts_schema(options.facts_per_chunk))
        if items is None:
            return
        facts: list[tuple[str, list[str]]] = []
        from_chunk: set[str] = set()  # facts that are sentences the teacher's facts left out
        for item in items:
            text = (item.get("fact") if isinstance(item, dict) else item)
            if not isinstance(text, str) or not text.strip():
                continue
            text = " ".join(text.split())
            reason = ungrounded(text, words, self._echo["facts"])
            if reason:
                result.dropped.append({"what": "fact", "text": text[:300], "reason": f"fact not in the chunk: {reason}"})
                continue
            proposed = item.get("key_terms") or [] if isinstance(item, dict) else []
            facts.append((text, key_terms(text, proposed if isinstance(proposed, list) else [], words)))
            if len(facts) == options.facts_per_chunk:
                break
        if not facts:  # the teacher says the passage states none (a contents page, a greeting): trusted
            result.no_facts = True
            return
        for sentence in uncovered_sentences(chunk.text, [f for f, _ in facts]):
            if len(facts) == options.facts_per_chunk:
                break
            facts.append((sentence, key_terms(sentence, [], words)))
            from_chunk.add(sentence)

        questions = list_schema(_QUESTION, options.questions_per_fact + 1)
        items = self._ask("questions", f"{passage}\n\nFacts:\n{_numbered(f for f, _ in facts)}", result,
                          numbered_schema("fact", len(facts), "questions", questions), options.temperature)
        if items is None:
            return
        asked: list[tuple[int, str]] = []  # (fact number, training question)
        for number, item in sorted(_by_number(items, "fact", len(facts)).items()):
            questions = item.get("questions")
            if not isinstance(questions, list):
                continue
            distinct = list(dict.fromkeys(" ".join(q.split()) for q in questions if isinstance(q, str) and q.strip()))
            fact, terms = facts[number - 1]
            if len(distinct) > 1 and terms:
                result.heldout.append({"id": f"{sha_short(result.sha)}-{number}", "input": distinct.pop(),
                                       "reference": fact, "must_include": terms,
                                       "tags": ["knowledge", chunk.source]})
            asked += [(number, q) for q in distinct[:options.questions_per_fact]]
        if not asked:
            result.failed = "the teacher wrote no questions for the chunk's facts"
            return

        request = answers_request(passage, [(question, facts[number - 1][0]) for number, question in asked])
        items = self._ask("answers", request, result, numbered_schema("question", len(asked), "answer", _ANSWER))
        if items is None:
            result.heldout = []
            return
        answers = _by_number(items, "question", len(asked))
        for n, (number, question) in enumerate(asked, 1):
            fact, terms = facts[number - 1]
            answer, dropped = self._answer(answers.get(n, {}).get("answer"), question, fact, terms, words,
                                           self._echo["answers"])
            if dropped:
                result.dropped.append(dropped)
            result.rows.append({"instruction": question, "output": answer,
                                "metadata": base | {"kind": "question", "fact": fact,
                                                    "fact_id": f"{sha_short(result.sha)}-{number}",
                                                    "fact_from": "chunk" if fact in from_chunk else "teacher",
                                                    "answer_from": "fact" if dropped else "teacher"}})
        if options.gap_fills:
            for number, (fact, terms) in enumerate(facts, 1):
                gapped = gap_fill(fact, terms)
                if gapped:
                    result.rows.append({"instruction": GAP_FILL_INSTRUCTION.format(gapped=gapped), "output": fact,
                                        "metadata": base | {"kind": "gap_fill", "fact": fact,
                                                            "fact_id": f"{sha_short(result.sha)}-{number}",
                                                            "fact_from": "chunk" if fact in from_chunk else "teacher"}})

        if options.restatements_per_chunk:
            items = self._ask("restatements", passage, result,
                              list_schema(_RESTATEMENT, options.restatements_per_chunk, fewer=True), options.temperature)
            if items is None:
                result.failed = None  # the questions stand; only the restatements are lost
                result.dropped.append({"what": "restatement", "text": "", "reason": "restatements not a JSON array"})
                return
            where = " > ".join(chunk.heading_path) or chunk.source
            for text in [t for t in items if isinstance(t, str) and t.strip()][:options.restatements_per_chunk]:
                reason = ungrounded(text, words, self._echo["restatements"])
                if reason:
                    result.dropped.append({"what": "restatement", "text": text[:300],
                                           "reason": f"restatement not in the chunk: {reason}"})
                    continue
                result.rows.append({"instruction": RESTATEMENT_INSTRUCTION.format(where=where), "output": text.strip(),
                                    "metadata": base | {"kind": "restatement", "fact": None, "fact_id": None}})

    @staticmethod
    def _answer(answer: Any, question: str, fact: str, terms: list[str], words: ChunkWords,
                echo: frozenset[str]) -> tuple[str, dict | None]:
        """The training answer to a question about `fact`: the teacher's, when it passes the checks,
        else the fact itself, with the teacher's answer dropped and counted. The fact passed the same
        grounding check and states its own key terms, so the question keeps a grounded answer: a
        small teacher's answers failed far more often than its facts (SmolLM2-135M on the benchmark's
        handbook: 31 of 41 answers dropped, 5 of its facts), and every dropped answer had cost its
        fact one of its few rows."""
        if not isinstance(answer, str) or not answer.strip():
            return fact, {"what": "answer", "text": question[:300], "reason": "the teacher gave no answer"}
        answer = first_saying(answer)
        reason = ungrounded(answer, words, echo)
        if reason:
            return fact, {"what": "answer", "text": answer[:300], "reason": f"answer not in the chunk: {reason}"}
        # What the fact check asks of the trained model (must_include), asked of its training answers
        # first: a grounded sentence that misses them answers another question (a small teacher's
        # rambling, a neighbouring fact).
        missing = [term for term in terms if term not in included(terms, answer)]
        if missing:
            return fact, {"what": "answer", "text": answer[:300],
                          "reason": f"answer does not state its fact ({', '.join(missing)} missing)"}
        return answer, None

    def finish(self, eval_out: str | os.PathLike | None) -> None:
        """Write the fact check: the held-out questions that repeat no training question (nor each other)."""
        # Near duplicates only of training questions: held-out questions of different facts may share a
        # template ("What is true about X?") and differ in the one word that matters.
        near = self._questions.duplicates([row["input"] for row in self._heldout], remember=False)
        seen: set[str] = set()
        kept = []
        for row, duplicate in zip(self._heldout, near):
            folded = " ".join(row["input"].lower().split())
            if not duplicate and folded not in seen:
                seen.add(folded)
                kept.append(row)
        self.stats.teacher_calls, self.stats.teacher_tokens = self.teacher.calls, self._tokens()  # chunks cut short too
        self.stats.heldout_questions = len(kept)
        self.stats.heldout_duplicates = len(self._heldout) - len(kept)
        if eval_out and kept:
            path = Path(eval_out)
            partial = path.with_name(path.name + ".partial")
            with open(partial, "w", encoding="utf-8") as sink:
                for row in kept:
                    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
            os.replace(partial, path)
            self.stats.eval_out = str(path)
        if self.journal:
            self.journal.remove()


def sha_short(sha: str) -> str:
    return sha[:16]


class Journal:
    """Finished chunks, one JSON line each, for resuming an import that was stopped.

    Opening it indexes the lines (chunk index -> its hash and the line's offset: a few integers per
    chunk, the rows stay on disk) and cuts off a last line the kill left half written. A chunk that
    failed is not reused: a resume asks the teacher again (the failure may have been passing), and
    its new line, appended at the end, replaces the old one.
    """

    def __init__(self, path: Path):
        self.path = path
        self._index: dict[int, tuple[str, int]] = {}
        self._file = open(path, "a+b")
        self._file.seek(0)
        offset = 0
        for line in iter(self._file.readline, b""):
            if not line.endswith(b"\n"):
                break
            try:
                data = json.loads(line)
            except ValueError:
                break
            if isinstance(data, dict) and not data.get("failed"):
                self._index[data["index"]] = (data["sha"], offset)
            offset += len(line)
        self._file.truncate(offset)

    def reuse(self, index: int, sha: str) -> ChunkResult | None:
        found = self._index.get(index)
        if found is None or found[0] != sha:
            return None
        self._file.seek(found[1])
        result = ChunkResult(**json.loads(self._file.readline()))
        result.resumed = True  # type: ignore[attr-defined]
        return result

    def append(self, result: ChunkResult) -> None:
        self._file.seek(0, os.SEEK_END)  # "a" mode writes there anyway; reads moved the position
        self._file.write(result.to_json())
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


# --- before an import ------------------------------------------------------------------------------

def estimate(chunks: Iterable[Chunk], options: KnowledgeOptions) -> dict[str, int]:
    """Teacher calls and tokens the import would take (tokens roughly: four characters a token)."""
    count = characters = 0
    for chunk in chunks:
        count += 1
        characters += len(chunk.text)
    facts = options.facts_per_chunk
    questions = facts * (options.questions_per_fact + 1)
    per_chunk_out = facts * _FACT_TOKENS + questions * _QUESTION_TOKENS + facts * options.questions_per_fact * _ANSWER_TOKENS
    per_chunk_in = (options.calls_per_chunk() * _PROMPT_TOKENS + facts * _FACT_TOKENS
                    + questions * _QUESTION_TOKENS)
    chunk_tokens = characters // 4
    tokens = (count * (per_chunk_in + per_chunk_out) + options.calls_per_chunk() * chunk_tokens
              + options.restatements_per_chunk * chunk_tokens)
    return {"chunks": count, "characters": characters, "teacher_calls": count * options.calls_per_chunk(),
            "teacher_tokens": tokens, "training_rows_at_most": count * (
                facts * (options.questions_per_fact + options.gap_fills) + options.restatements_per_chunk)}


def dry_run(chunks: Iterable[Chunk], options: KnowledgeOptions, first: int = 3) -> dict[str, Any]:
    """The recipe on the first chunks only, for a preview: rows kept, rows dropped and why, the fact check."""
    generator = KnowledgeGenerator(options)
    rows = [row for _, chunk_rows in generator.rows(islice(chunks, first)) for row in chunk_rows]
    generator.finish(None)
    return {"rows": rows, "heldout": generator._heldout, "stats": generator.stats.__dict__}
