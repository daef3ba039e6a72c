"""Loading from several threads at once (the web server answers a dataset preview and a run
estimate together, each loading a tokenizer): transformers resolves its names lazily, and without
a lock the threads got ImportError from the half-initialised module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"

# In a fresh interpreter: the race is on transformers' first import, which this test process
# has long done.
RACE = """
import sys, threading
from tinyforge.ml.models import load_tokenizer
barrier = threading.Barrier(8)
errors = []
def load():
    barrier.wait()
    try:
        load_tokenizer(sys.argv[1])
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=load) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
sys.exit(1 if errors else 0)
"""


def test_it_loads_tokenizers_from_eight_threads_at_once(tiny_model_dir):
    result = subprocess.run([sys.executable, "-c", RACE, str(tiny_model_dir)], cwd=BACKEND, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
