"""What mirroring a run to experiment trackers costs its training, against the same run without,
on this machine, in one run.

The same config is trained by the ML engine (`tinyforge.ml.train.train`) alternately without
trackers and with the platform's TrackingCallback feeding a real MLflow server (started here, over
SQLite) and W&B in offline mode, --pairs times each. Both read tokens/s from the TrainResult (tokens
/ seconds of the training steps, callbacks included), so what the loop pays for tracking is inside
the figure; sending happens on the trackers' threads, which share the cores with the steps (so do
the MLflow server and W&B's service process here: on a real install they run elsewhere).
Floor: tracking costs at most 2% of tokens/s (median over median).

    .venv/bin/python bench/tracking_overhead.py             # tiny test model, minutes
    .venv/bin/python bench/tracking_overhead.py --steps 300 --pairs 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "backend"), str(ROOT / "tests")]

FLOOR = 0.02


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    parser.add_argument("--pairs", type=int, default=3, help="runs without / with trackers")
    args = parser.parse_args()
    from tinyforge.hardware import machine_summary

    print(machine_summary(), flush=True)
    from mlflow_server import start_mlflow_server
    from ml.conftest import TOY_FACTS
    from tinyforge.ml.config import TrainConfig
    from tinyforge.ml.tracking import MlflowCredentials, MlflowTracker, TrackedRun, TrackingCallback, WandbTracker
    from tinyforge.ml.train import train
    from tinymodel import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="tinyforge-bench-tracking-"))
    base = build_tiny_model(work / "tiny-model")
    rows = [{"instruction": f"{q} (variant {n})", "output": a} for n in range(40) for q, a in TOY_FACTS]
    config = TrainConfig(base_model=str(base), max_steps=args.steps, batch_size=4, learning_rate=1e-3,
                         max_seq_length=256, eval_generations=0, validation_split=0.0, save_steps=args.steps,
                         lora_dropout=0.0, seed=7)
    (work / "mlflow").mkdir()
    server = start_mlflow_server(work / "mlflow")
    plain, tracked, warnings = [], [], []
    try:
        for pair in range(args.pairs):
            plain.append(train(config, rows, work / f"plain-{pair}").train_tokens_per_second)
            trackers = [MlflowTracker(server.url, MlflowCredentials(server.username, server.password),
                                      experiment="bench"),
                        WandbTracker(project="bench", mode="offline", directory=work / f"wandb-{pair}")]
            callback = TrackingCallback(trackers, TrackedRun(f"bench {pair}", params=config.to_dict()),
                                        warn=warnings.append)
            tracked.append(train(config, rows, work / f"tracked-{pair}", [callback]).train_tokens_per_second)
            callback.finish("succeeded", [], timeout=300)
    finally:
        server.stop()
    plain_rate, tracked_rate = statistics.median(plain), statistics.median(tracked)
    slower = 1 - tracked_rate / plain_rate
    print(f"tiny test model (2-layer Llama); {args.steps} steps, batch 4; trackers: MLflow (local server) + W&B offline")
    print(f"tokens/s  without trackers: {' '.join(f'{r:,.0f}' for r in plain)}  (median {plain_rate:,.0f})")
    print(f"tokens/s  with trackers:    {' '.join(f'{r:,.0f}' for r in tracked)}  (median {tracked_rate:,.0f})")
    print(f"tracked / untracked = {tracked_rate / plain_rate:.3f} ({slower:+.1%} slower; floor: at most {FLOOR:.0%})")
    if warnings:
        print("tracker warnings:", *warnings, sep="\n  ")
    return 0 if slower <= FLOOR and not warnings else 1


if __name__ == "__main__":
    sys.exit(main())
