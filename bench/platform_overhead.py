"""What the platform costs a training run, against the CLI, on this machine, in one run.

1. Latency: the time from POSTing a run to the worker starting it (the run's started_at, written
   by the worker's first conditional update), median over --latency-runs runs, each posted to an
   idle worker (`manage.py rqworker ingest train deploy`, the platform's worker class, real Redis).
2. Throughput: the same config trained by `tinyforge train` (the CLI, with its progress bar) and
   by the platform (worker + batched database logging), alternately, --pairs times each. Both
   read tokens/s from the final checkpoint's trainer_state.json (tokens / wall seconds of the
   fit loop, callbacks included), so the platform's logging cost is inside the figure.
   Floor: the platform no more than 2% slower (median over median).

The platform is the one the worker tests start (tests/e2e/worker_platform.py): its own
database (Postgres when DATABASE_URL names one, else SQLite), a redis-server of its own on a free
port, a web server and a worker as subprocesses.

    .venv/bin/python bench/platform_overhead.py                      # tiny test model, ~4 minutes
    .venv/bin/python bench/platform_overhead.py --base smollm2-135m-instruct --steps 20 --pairs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "backend"), str(ROOT / "tests")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tinyforge.settings")

FLOOR = 0.02


def final_state(out_dir: Path) -> dict:
    from tinyforge.ml.checkpoints import list_checkpoints

    return json.loads((list_checkpoints(out_dir)[-1] / "trainer_state.json").read_text())


def tokens_per_second(state: dict) -> float:
    return state["tokens"] / state["elapsed_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=None, help="base model (default: the tests' tiny two-layer Llama)")
    parser.add_argument("--steps", type=int, default=1000,
                        help="optimizer steps per throughput run (the tiny model does about 100 a second)")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=3, help="CLI/platform run pairs for throughput")
    parser.add_argument("--latency-runs", type=int, default=20)
    args = parser.parse_args()
    from tinyforge.hardware import machine_summary

    print(machine_summary(), flush=True)

    import django

    django.setup()
    from e2e.worker_platform import start_platform, stop_platform
    from ml.conftest import TOY_FACTS
    from tinymodel import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="tinyforge-bench-"))
    base = args.base or str(build_tiny_model(work / "tiny-model"))
    dataset = work / "train.jsonl"
    rows = [{"instruction": f"{q} (variant {n})", "output": a} for n in range(40) for q, a in TOY_FACTS]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"max_steps": args.steps, "batch_size": 4, "learning_rate": 1e-3, "max_seq_length": args.max_seq_length,
              "eval_generations": 0, "validation_split": 0.0, "save_steps": args.steps, "seed": 7}
    (work / "data").mkdir()
    platform, cleanups = start_platform(work / "data", dataset, fast_reliability=False)
    try:
        platform.start_worker()
        latencies = []
        for n in range(args.latency_runs):
            started = time.time()
            run = platform.create_run(base, max_steps=1, save_steps=1, validation_split=0.0)
            done = platform.wait_for_run(run["id"], ("succeeded", "failed"), timeout=300)
            assert done["status"] == "succeeded", done["error"]
            latencies.append(datetime.fromisoformat(done["started_at"]).timestamp() - started)
        latency = statistics.median(latencies)

        cli, web = [], []
        for pair in range(args.pairs):
            out = work / f"cli-{pair}"
            command = [sys.executable, "-m", "tinyforge.cli", "train", "--data", str(dataset), "--out", str(out),
                       "--base", base, "--lora-dropout", "0"]
            for key, value in config.items():
                command += [f"--{key.replace('_', '-')}", str(value)]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "backend")})
            cli.append(tokens_per_second(final_state(out)))
            run = platform.create_run(base, lora_dropout=0.0, **{k: v for k, v in config.items()})
            # Polled as the dashboard polls a running run: the web server answering shares the cores.
            done = platform.wait_for_run(run["id"], ("succeeded", "failed"), timeout=3600, poll=2.0)
            assert done["status"] == "succeeded", done["error"]
            run_dir = platform.data_dir / "projects" / str(platform.project) / "runs" / str(run["id"]) / "model"
            web.append(tokens_per_second(final_state(run_dir)))
    finally:
        stop_platform(platform, cleanups)

    cli_rate, web_rate = statistics.median(cli), statistics.median(web)
    slower = 1 - web_rate / cli_rate
    print(f"base model: {args.base or 'tiny test model (2-layer Llama)'}; {args.steps} steps, batch 4, "
          f"max_seq_length {args.max_seq_length}; database: {'PostgreSQL' if 'DATABASE_URL' in platform.env else 'SQLite'}")
    print(f"POST -> worker start: median {latency * 1000:.0f} ms over {len(latencies)} runs "
          f"(min {min(latencies) * 1000:.0f}, max {max(latencies) * 1000:.0f})")
    print(f"tokens/s  CLI: {' '.join(f'{r:,.0f}' for r in cli)}  (median {cli_rate:,.0f})")
    print(f"tokens/s  platform: {' '.join(f'{r:,.0f}' for r in web)}  (median {web_rate:,.0f})")
    print(f"platform / CLI = {web_rate / cli_rate:.3f} ({slower:+.1%} slower; floor: at most {FLOOR:.0%})")
    return 0 if slower <= FLOOR else 1


if __name__ == "__main__":
    sys.exit(main())
