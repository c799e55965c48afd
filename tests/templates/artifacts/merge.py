"""Merge the per-file JSON results into one summary (test artifact)."""

import json
import sys

out = sys.argv[2]
total = 0
for path in sys.argv[3:]:
    with open(path) as fh:
        total += json.load(fh)["events"]
with open(f"{out}/summary.json", "w") as fh:
    json.dump({"events": total}, fh)
