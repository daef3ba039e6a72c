"""Knowledge injection: does a small model answer questions about a handbook after training on its rows,
per recipe (text, sections, qa, knowledge)?

A prose staff handbook written for this benchmark (30 facts that exist only here, none in Q/A form)
goes through `tinyforge ingest` with each recipe; the knowledge recipe's held-out fact check (one
question per fact the training rows never contain, must_include = the fact's key terms) scores the
base model and a LoRA of it trained with the balanced preset on each recipe's rows, through
`tinyforge eval`. Everything runs through the CLI, as a user would.

The teacher (qa and knowledge recipes) is (a) the base model itself served by `tinyforge serve` on a
free port, the offline default, or (b) any OpenAI-compatible model named by TINYFORGE_BENCH_TEACHER_URL
and TINYFORGE_BENCH_TEACHER_MODEL (key in TINYFORGE_BENCH_TEACHER_KEY).

Reported per recipe: rows made, teacher tokens, training seconds, fact-check pass rate of the base
model and of the tuned one, and a few example questions with both answers (JSON with --output).

    .venv/bin/python bench/knowledge.py --output knowledge.json          # tens of minutes on a CPU
    .venv/bin/python bench/knowledge.py --recipes knowledge --max-steps 60
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tinyforge(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tinyforge.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode:
        raise SystemExit(f"{' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}")
    return result


def start_teacher(base: str) -> tuple[subprocess.Popen | None, str, str]:
    url, model = os.environ.get("TINYFORGE_BENCH_TEACHER_URL"), os.environ.get("TINYFORGE_BENCH_TEACHER_MODEL")
    if url and model:
        return None, url, model
    from tinyforge.ml.models import resolve_base_model

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tinyforge.cli", "serve", "--model",
                               f"teacher={resolve_base_model(base)}", "--port", str(port)],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--max-steps", type=int, default=None, help="cap each training run (default: the preset's)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    from tinyforge.hardware import machine_summary

    print(machine_summary())
    work = Path(tempfile.mkdtemp(prefix="bench-knowledge-"))
    (work / "handbook.md").write_text(HANDBOOK)
    teacher, url, model = start_teacher(BASE)
    teacher_args = ["--teacher-url", url, "--teacher-model", model]
    key_env = {"OPENAI_API_KEY": os.environ.get("TINYFORGE_BENCH_TEACHER_KEY", "none")}
    report: dict = {"teacher": {"url": url, "model": model}, "base_model": BASE, "recipes": {}}
    try:
        # The fact check comes from the knowledge recipe and scores every recipe's model.
        facts = work / "facts.jsonl"
        made = {}
        for recipe in ["knowledge"] + [r for r in args.recipes if r != "knowledge"]:
            rows, info = work / f"{recipe}.jsonl", work / f"{recipe}.report.json"
            extra = teacher_args if recipe in ("qa", "knowledge") else []
            extra += ["--eval-out", str(facts)] if recipe == "knowledge" else []
            tinyforge("ingest", str(work / "handbook.md"), "-o", str(rows), "--recipe", recipe, "--report", str(info),
                      "--chunk-chars", "600", "--overlap-chars", "0", *extra, env=key_env)
            made[recipe] = json.loads(info.read_text())
        for recipe in args.recipes:
            ingest = made[recipe]
            out = work / f"model-{recipe}"
            started = time.monotonic()
            tinyforge("train", "--data", str(work / f"{recipe}.jsonl"), "--out", str(out), "--preset", "balanced",
                      "--base-model", BASE, "--quiet", *(["--max-steps", str(args.max_steps)] if args.max_steps else []))
            seconds = time.monotonic() - started
            results = work / f"eval-{recipe}.json"
            tinyforge("eval", "--model", BASE, "--against", str(out), "--data", str(facts),
                      "--scorer", "must_include", "--output", str(results))
            rates, rows = pass_rate(results)
            base_rate, tuned_rate = list(rates.values())
            knowledge = ingest.get("knowledge") or {}
            report["recipes"][recipe] = {
                "rows": ingest["examples_written"], "teacher_tokens": knowledge.get("teacher_tokens"),
                "training_seconds": round(seconds, 1), "fact_check_questions": len(rows),
                "base_pass_rate": round(base_rate, 3), "tuned_pass_rate": round(tuned_rate, 3),
                "examples": [{"question": r["input"], "must_include": r["must_include"],
                              **{name: a["answer"] for name, a in r["answers"].items()}} for r in rows[:5]],
            }
            print(f"{recipe:10} rows {ingest['examples_written']:5}  teacher tokens {knowledge.get('teacher_tokens', 0):8}  "
                  f"train {seconds:7.1f} s  fact check: base {base_rate:.0%}  tuned {tuned_rate:.0%}", flush=True)
    finally:
        if teacher:
            teacher.terminate()
            teacher.wait()
    if args.output:
        args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
