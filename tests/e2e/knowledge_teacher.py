"""A tiny teacher for the knowledge recipe, trained in the test on what it should answer.

The platform's own deployment is the teacher a user has offline (`make demo`). A real model there
that writes usable facts, questions and answers is SmolLM2 at best, too slow for a test on a CPU
and unpredictable. So the test trains the tiny Llama (tests/tinymodel.py) through the platform on
the three exchanges the recipe has with its teacher for one short handbook: the facts of its one
chunk, three questions per fact, the answers. Deployed, that run answers the recipe's real requests
(the same prompts, over the OpenAI API, with the key the platform signs for the team) and every
step after it runs for real: parsing, the grounding check, the held-out fact check.

`teacher_rows` builds those exchanges from the recipe's own prompts and the chunk the import will
make of the handbook, so the model learns the requests it will really be sent.
"""

from __future__ import annotations

import json
from pathlib import Path

from tinymodel import build_tiny_model

TEACHER_MODEL = "tiny-teacher"

HANDBOOK = """# Leave at Brindlewood Ceramics

Every employee gets 27 days of paid leave a year. Leave is requested from Odile Varga, the office manager.
"""

FACTS = [
    ("Every employee gets 27 days of paid leave a year.", ["27"],
     ["How many days of paid leave does an employee get?", "How much paid leave per year?",
      "What is my yearly holiday allowance?"],
     ["Every employee gets 27 days of paid leave a year.", "27 days of paid leave a year."]),
    ("Leave is requested from Odile Varga, the office manager.", ["Odile Varga"],
     ["Who do I ask for leave?", "Whom are leave requests sent to?",
      "Which colleague approves time off?"],
     ["Leave is requested from Odile Varga.", "Odile Varga, the office manager."]),
]
QUESTIONS_PER_FACT = 2  # training questions; the third is held out for the fact check


def build_teacher_model(out_dir: Path) -> Path:
    """The tiny Llama with room for the recipe's requests: the teacher asks for up to 2,048 tokens,
    and a server refuses a request whose prompt and completion exceed the model's context."""
    return build_tiny_model(out_dir, context=4096)


def teacher_rows(handbook_path: Path) -> list[dict]:
    """Chat rows: the recipe's three requests for the handbook's chunk and the teacher's replies."""
    from tinyforge.connectors.chunking import chunk_blocks
    from tinyforge.connectors.files import FileSource
    from tinyforge.connectors.knowledge import KnowledgeOptions, _numbered, _passage, answers_request
    from tinyforge.connectors.pipeline import IngestOptions
    from tinyforge.connectors.teacher import TeacherOptions

    defaults = IngestOptions()
    (chunk,) = chunk_blocks(FileSource(str(handbook_path)).records(), defaults.chunk_chars, defaults.overlap_chars)
    options = KnowledgeOptions(TeacherOptions("http://unused/v1", TEACHER_MODEL), questions_per_fact=QUESTIONS_PER_FACT)
    passage = _passage(chunk)
    facts = [{"fact": fact, "key_terms": terms} for fact, terms, _, _ in FACTS]
    questions = [{"fact": n, "questions": asked} for n, (_, _, asked, _) in enumerate(FACTS, 1)]
    trained = [(q, a, fact) for fact, _, asked, answers in FACTS for q, a in zip(asked[:QUESTIONS_PER_FACT], answers)]
    answers = [{"question": n, "answer": a} for n, (_, a, _) in enumerate(trained, 1)]
    exchanges = [
        ("facts", passage, facts),
        ("questions", f"{passage}\n\nFacts:\n{_numbered(f['fact'] for f in facts)}", questions),
        ("answers", answers_request(passage, [(q, fact) for q, _, fact in trained]), answers),
    ]
    return [{"messages": [{"role": "system", "content": options.prompt(name)}, {"role": "user", "content": user},
                          {"role": "assistant", "content": json.dumps(reply)}]}
            for name, user, reply in exchanges]


def write_teacher_rows(handbook_path: Path, out: Path) -> Path:
    out.write_text("".join(json.dumps(row) + "\n" for row in teacher_rows(handbook_path)))
    return out
