"""Small files the dataset tests upload."""

import json

# Six valid instruction rows, one per line.
GOOD_JSONL = b"".join(json.dumps({"instruction": f"What is {n} + {n}?", "output": str(2 * n)}).encode() + b"\n"
                      for n in range(1, 7))
