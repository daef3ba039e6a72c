"""Checkpoint folders of a run: `out_dir/checkpoints/checkpoint-000120/`, each a loadable model
folder plus trainer_state.json (step, config, eval loss...), optimizer.pt, scheduler.pt and
rng_state.pt, so that a folder alone is enough to resume or to serve. Only complete folders count:
a folder is written as `<name>.partial` and renamed into place."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"




def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    folder = Path(out_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and not p.name.endswith((".partial", ".old")) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def find_checkpoint(out_dir: str | Path, which: str = "latest") -> Path | None:
    """The latest or best ("best") checkpoint of a run, or None."""
    checkpoints = list_checkpoints(out_dir)
    if not checkpoints:
        return None
    if which == "best":
        scored = [(json.loads((p / STATE_FILE).read_text()).get("eval_loss"), p) for p in checkpoints]
        scored = [(s, p) for s, p in scored if s is not None]
        if scored:
            return min(scored, key=lambda sp: sp[0])[1]
    return checkpoints[-1]
