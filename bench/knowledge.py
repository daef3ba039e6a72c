"""Knowledge injection: does a small model answer questions about a handbook after training on its rows,
per recipe (text, sections, qa, knowledge)?

A prose staff handbook written for this benchmark (30 facts that exist only here, none in Q/A form)
goes through `tinyforge ingest` with each recipe, and a LoRA of the base model is trained with the
balanced preset on each recipe's rows. Two question sets score the base model and each tuned one
through `tinyforge eval` (must_include):

- the colleague questions: 30 questions written for this benchmark, one per fact, phrased as a
  colleague would ask (the issue's measurement), the same whatever the teacher;
- the fact check the knowledge recipe generated (one held-out question per fact that no training row
  contains), when its teacher wrote one.

Everything runs through the CLI, as a user would. A recipe whose import fails (a small teacher that
never answers in JSON makes no rows) is reported with the reason and not trained.

The teacher (qa and knowledge recipes) is (a) the base model itself served by `tinyforge serve` on a
free port, the offline default, or (b) any OpenAI-compatible model named by TINYFORGE_BENCH_TEACHER_URL
and TINYFORGE_BENCH_TEACHER_MODEL (key in TINYFORGE_BENCH_TEACHER_KEY).

Reported per recipe: rows made, teacher tokens, training seconds, fact-check pass rate of the base
model and of the tuned one, and every question with both answers (JSON with --output).

    .venv/bin/python bench/knowledge.py --output knowledge.json          # an hour or more on 2 CPU cores
    .venv/bin/python bench/knowledge.py --sections 1 --recipes sections knowledge --max-steps 2   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

BASE = "smollm2-135m-instruct"
RECIPES = ("text", "sections", "qa", "knowledge")
TEACHER_TIMEOUT_S = 900  # per teacher request: a 135M teacher on a busy CPU can take minutes for a long reply

HANDBOOK = """# Staff handbook of Brindlewood Ceramics

## Working hours
The workshop in Tarrow opens at 7:30 and closes at 16:45 on weekdays. On Fridays everyone stops at 14:00,
because the kilns are cooled over the weekend. Core hours, when every colleague must be reachable, run from
10:00 to 13:00.

## Leave
Every employee gets 27 days of paid leave a year, plus the town's founding day on 12 June. Leave is requested
from Odile Varga, the office manager, at least three weeks ahead. Unused leave expires on 31 March of the
following year; up to five days can be carried over with Odile's written approval.

## Kilns and safety
Only colleagues who passed the kiln course may load the two gas kilns, which are called Ember and Slate.
Ember fires at 1240 degrees and Slate at 1280 degrees. The kiln room must be left within ten minutes of a firing
alarm, and the meeting point is the blue gate on Quarry Lane. Protective gloves are stored in locker 14.

## Equipment and tools
New colleagues receive a potter's wheel of their own on the first day, and a set of trimming tools with a
green handle. Broken tools are reported to Luca Brenner, who orders replacements every Thursday. The clay store
keeps 900 kilograms of stoneware clay; orders below 200 kilograms are placed with the supplier Haldor & Sons.

## Pay and expenses
Salaries are paid on the 25th of each month. Travel to fairs is reimbursed at 31 cents a kilometre, and meals
on such trips up to 18 euros a day. Expense claims go through the app called Tally within 30 days of the trip.

## Learning
Each colleague has a learning budget of 650 euros a year. The glaze workshop takes place every second Tuesday,
led by Mirela Costa. Apprentices spend their first eight weeks in the glazing room before they throw on the
wheel.

## Shop and customers
The shop on Market Street sells seconds at 40 percent off. Staff pay half price for first-quality pieces, up to
six pieces a year. Customer complaints are answered within two working days, and refunds above 150 euros need
the approval of the director, Henrik Aalto.
"""


# One question per fact of the handbook, as a colleague would ask it (none copies the handbook's
# wording), with the terms a right answer must contain.
COLLEAGUE_QUESTIONS = {  # by section
    "Working hours": [
        ("What time does the workshop open in the morning?", ["7:30"]),
        ("When does the workshop close on a normal weekday?", ["16:45"]),
        ("What time do we finish on Fridays?", ["14:00"]),
        ("When do I have to be reachable every day?", ["10:00"]),
    ],
    "Leave": [
        ("How many days of paid holiday do I get each year?", ["27"]),
        ("Which extra day off do we get besides our leave?", ["12 June"]),
        ("Who do I ask for time off?", ["Odile"]),
        ("How far in advance do I have to ask for leave?", ["three weeks"]),
        ("Until when can I use last year's leave?", ["31 March"]),
        ("How many leave days can I carry over to next year?", ["five"]),
    ],
    "Kilns and safety": [
        ("What are the names of the gas kilns?", ["Ember"]),
        ("How hot does Ember fire?", ["1240"]),
        ("At what temperature does Slate fire?", ["1280"]),
        ("How quickly must I get out of the kiln room when the alarm goes off?", ["ten minutes"]),
        ("Where do we meet after a firing alarm?", ["blue gate"]),
        ("Where can I find protective gloves?", ["14"]),
        ("Who may load the kilns?", ["kiln course"]),
    ],
    "Equipment and tools": [
        ("What does a new colleague get on the first day?", ["wheel"]),
        ("What colour are the handles of the trimming tools?", ["green"]),
        ("Who do I tell when a tool breaks?", ["Luca"]),
        ("On which day are replacement tools ordered?", ["Thursday"]),
        ("How much stoneware clay is kept in the clay store?", ["900"]),
        ("Which supplier do small clay orders go to?", ["Haldor"]),
    ],
    "Pay and expenses": [
        ("On which day of the month is the salary paid?", ["25th"]),  # the handbook's word: "25" missed "the 25th"
        ("How much do I get back per kilometre when I drive to a fair?", ["31"]),
        ("What is the daily limit for meals on a fair trip?", ["18"]),
        ("Which app do I use for my expense claims?", ["Tally"]),
    ],
    "Learning": [
        ("How large is my yearly learning budget?", ["650"]),
        ("Who runs the glaze workshop?", ["Mirela"]),
    ],
    "Shop and customers": [
        ("Who has to approve a refund above 150 euros?", ["Henrik"]),
    ],
}


def handbook_sections(count: int | None) -> str:
    """The handbook, or its title and first `count` sections (a smoke run)."""
    if count is None:
        return HANDBOOK
    parts = HANDBOOK.split("\n## ")
    return "\n## ".join(parts[:count + 1])


def colleague_questions(handbook: str) -> list[dict]:
    """The colleague questions of the sections in `handbook` (all of them for the whole handbook)."""
    return [{"input": q, "must_include": terms, "tags": ["colleague", section]}
            for section, questions in COLLEAGUE_QUESTIONS.items() if f"## {section}\n" in handbook
            for q, terms in questions]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CommandFailed(Exception):
    """A `tinyforge` command exited with an error; the message is what it said."""


def tinyforge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tinyforge.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise CommandFailed(f"{' '.join(args[:2])} failed: {said[-1] if said else f'status {result.returncode}'}")
    return result


def start_teacher(base: str) -> tuple[subprocess.Popen | None, str, str]:
    url, model = os.environ.get("TINYFORGE_BENCH_TEACHER_URL"), os.environ.get("TINYFORGE_BENCH_TEACHER_MODEL")
    if url and model:
        return None, url, model
    from tinyforge.ml.models import resolve_base_model

    port = free_port()
    # The server's own request limit as long as the client's (--teacher-timeout below): its default
    # 300 s answered a 135M teacher's long replies on a busy CPU with a 504.
    server = subprocess.Popen([sys.executable, "-m", "tinyforge.cli", "serve", "--model",
                               f"teacher={resolve_base_model(base)}", "--port", str(port),
                               "--timeout", str(TEACHER_TIMEOUT_S)],
                              env={k: v for k, v in os.environ.items() if k != "TINYFORGE_API_KEY"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        raise SystemExit("the teacher server did not start")
    return server, f"http://127.0.0.1:{port}/v1", "teacher"


def pass_rate(results: Path) -> tuple[dict[str, float], list[dict]]:
    document = json.loads(results.read_text())
    names = [t["name"] for t in document["targets"]]
    rows = document["rows"]
    rates = {name: sum(1 for r in rows if (r["answers"].get(name, {}).get("scores") or {}).get("must_include") == 1.0)
             / max(len(rows), 1) for name in names}
    return rates, rows


def score(base: str, tuned: Path, questions: Path, results: Path) -> dict:
    """Pass rates (must_include matched) of the base model and the tuned one, and a few examples."""
    tinyforge("eval", "--model", base, "--against", str(tuned), "--data", str(questions),
              "--scorer", "must_include", "--output", str(results))
    rates, rows = pass_rate(results)
    base_rate, tuned_rate = list(rates.values())
    return {"questions": len(rows), "base_pass_rate": round(base_rate, 3), "tuned_pass_rate": round(tuned_rate, 3),
            "examples": [{"question": r["input"], "must_include": r["must_include"],
                          **{name: a["answer"] for name, a in r["answers"].items()}} for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--max-steps", type=int, default=None, help="cap each training run (default: the preset's)")
    parser.add_argument("--sections", type=int, default=None, help="only the handbook's first N sections (a smoke run)")
    parser.add_argument("--teacher-concurrency", type=int, default=1,
                        help="knowledge recipe: chunks in flight (default 1, so that a run is repeatable: a server "
                             "that batches concurrent requests in floating point moves each one's logits with "
                             "what shares its step, and a seeded sample with them)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from tinyforge.hardware import machine_summary

    print(machine_summary(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    handbook = handbook_sections(args.sections)
    (work / "handbook.md").write_text(handbook)
    colleague = work / "colleague.jsonl"
    colleague.write_text("".join(json.dumps(q) + "\n" for q in colleague_questions(handbook)))
    teacher, url, model = start_teacher(BASE)
    teacher_args = ["--teacher-url", url, "--teacher-model", model, "--teacher-timeout", str(TEACHER_TIMEOUT_S)]
    key_env = {"OPENAI_API_KEY": os.environ.get("TINYFORGE_BENCH_TEACHER_KEY", "none")}
    report: dict = {"machine": machine_summary(), "teacher": {"url": url, "model": model}, "base_model": BASE,
                    "handbook_sections": args.sections, "max_steps": args.max_steps, "recipes": {}}
    try:
        facts = work / "facts.jsonl"
        for recipe in args.recipes:
            rows, info = work / f"{recipe}.jsonl", work / f"{recipe}.report.json"
            extra = teacher_args if recipe in ("qa", "knowledge") else []
            extra += ["--eval-out", str(facts), "--concurrency", str(args.teacher_concurrency)] if recipe == "knowledge" else []
            entry: dict = report["recipes"].setdefault(recipe, {})
            started = time.monotonic()
            try:
                tinyforge("ingest", str(work / "handbook.md"), "-o", str(rows), "--recipe", recipe, "--report",
                          str(info), "--chunk-chars", "600", "--overlap-chars", "0", *extra, env=key_env)
            except CommandFailed as exc:
                entry.update(rows=0, ingest_seconds=round(time.monotonic() - started, 1), error=str(exc))
                print(f"{recipe:10} no rows: {exc}", flush=True)
                continue
            ingest = json.loads(info.read_text())
            knowledge = ingest.get("knowledge") or {}
            entry.update(rows=ingest["examples_written"], ingest_seconds=round(time.monotonic() - started, 1),
                         teacher_tokens=knowledge.get("teacher_tokens"),
                         **({"facts": knowledge.get("facts"), "facts_from_chunk": knowledge.get("facts_from_chunk"),
                             "answers_from_fact": knowledge.get("answers_from_fact"),
                             "rows_dropped": knowledge.get("rows_dropped"),
                             "dropped_by_reason": knowledge.get("dropped_by_reason"),
                             "heldout_questions": knowledge.get("heldout_questions"),
                             "chunks_failed": knowledge.get("chunks_failed")} if knowledge else {}))
        # The knowledge recipe's fact check, when it made one, scores every recipe's model too.
        question_sets = {"colleague": colleague, **({"fact_check": facts} if facts.exists() else {})}
        for recipe, entry in report["recipes"].items():
            if not entry["rows"]:
                continue
            out = work / f"model-{recipe}"
            started = time.monotonic()
            tinyforge("train", "--data", str(work / f"{recipe}.jsonl"), "--out", str(out), "--preset", "balanced",
                      "--base-model", BASE, "--quiet",
                      # Scored on the question sets: every row trains (a one-section smoke run has one).
                      "--validation-split", "0", *(["--max-steps", str(args.max_steps)] if args.max_steps else []))
            entry["training_seconds"] = round(time.monotonic() - started, 1)
            for name, questions in question_sets.items():
                entry[name] = score(BASE, out, questions, work / f"eval-{recipe}-{name}.json")
            print(f"{recipe:10} rows {entry['rows']:5}  teacher tokens {entry.get('teacher_tokens') or 0:8}  "
                  f"train {entry['training_seconds']:7.1f} s  " + "  ".join(
                      f"{name}: base {entry[name]['base_pass_rate']:.0%} tuned {entry[name]['tuned_pass_rate']:.0%} "
                      f"of {entry[name]['questions']}" for name in question_sets), flush=True)
    finally:
        if teacher:
            teacher.terminate()
            teacher.wait()
    if args.output:
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
