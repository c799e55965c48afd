"""Test merge: sum the counts written by count.py."""

import os
import sys

rest = sys.argv[1:]
outdir = rest[rest.index("--out") + 1]
counts = [int(open(p).read()) for p in rest[: rest.index("--out")]]
with open(os.path.join(outdir, "total.txt"), "w") as fh:
    fh.write(f"{sum(counts)} from {len(counts)}\n")
print(f"total {sum(counts)} from {len(counts)} counts")
