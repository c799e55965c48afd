"""Dimuon invariant-mass analysis: the Stratoflow demo job (needs only numpy, matplotlib).

    python analysis.py fill  EVENTS.csv[.gz] [MORE...] --out OUTDIR   -> OUTDIR/hist.json
    python analysis.py merge HIST.json [MORE...]       --out OUTDIR   -> OUTDIR/mass_histogram.json
                                                                         OUTDIR/mass_spectrum.png

``fill`` reads CMS open-data style CSV files (columns E1,px1,py1,pz1,Q1,E2,px2,py2,pz2,Q2 at
least), computes the invariant mass of each opposite-charge muon pair and fills a
histogram with log-spaced bins. ``merge`` sums histograms with identical binning and draws
the spectrum. Both are deterministic: the same inputs, in any order, give the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from pathlib import Path

import numpy as np

LOW, HIGH, NBINS = 0.5, 120.0, 300
NEEDED = ["E1", "px1", "py1", "pz1", "Q1", "E2", "px2", "py2", "pz2", "Q2"]
RESONANCES = [  # label, mass in GeV
    ("J/ψ", 3.097),
    ("ψ(2S)", 3.686),
    ("ϒ", 9.46),
    ("Z", 91.19),
]


def edges() -> np.ndarray:
    bins = np.logspace(np.log10(LOW), np.log10(HIGH), NBINS + 1)
    bins[0], bins[-1] = LOW, HIGH  # exact ends, not 119.99999999999996
    return bins


def read_events(path: Path) -> dict[str, np.ndarray]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as f:
        header = f.readline().strip().split(",")
        missing = [c for c in NEEDED if c not in header]
        if missing:
            raise SystemExit(f"{path}: missing columns {', '.join(missing)}")
        body = f.read()
    if not body.strip():
        return {c: np.empty(0) for c in NEEDED}
    data = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    if data.shape[1] != len(header):
        raise SystemExit(f"{path}: {data.shape[1]} values per row, header has {len(header)}")
    return {c: data[:, header.index(c)] for c in NEEDED}


def invariant_mass(ev: dict[str, np.ndarray]) -> np.ndarray:
    e = ev["E1"] + ev["E2"]
    px, py, pz = ev["px1"] + ev["px2"], ev["py1"] + ev["py2"], ev["pz1"] + ev["pz2"]
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


def fill(inputs: list[Path], out: Path) -> dict:
    bins = edges()
    counts = np.zeros(NBINS, dtype=np.int64)
    n_events = n_pairs = 0
    for path in sorted(inputs):
        ev = read_events(path)
        n_events += len(ev["Q1"])
        opposite = ev["Q1"] * ev["Q2"] < 0
        mass = invariant_mass(ev)[opposite]
        n_pairs += int(opposite.sum())
        counts += np.histogram(mass, bins=bins)[0]
        print(f"{path.name}: {len(ev['Q1'])} events, {int(opposite.sum())} opposite-sign pairs")
    hist = {
        "edges": bins.tolist(),
        "counts": counts.tolist(),
        "n_events": n_events,
        "n_pairs": n_pairs,
        "inputs": sorted(p.name for p in inputs),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "hist.json").write_text(json.dumps(hist, sort_keys=True) + "\n")
    return hist


def peak(edges_: np.ndarray, counts: np.ndarray, lo: float, hi: float) -> float | None:
    """Centre (geometric, as the bins are log-spaced) of the fullest bin in [lo, hi]."""
    centres = np.sqrt(edges_[:-1] * edges_[1:])
    window = (centres >= lo) & (centres <= hi)
    if not window.any() or counts[window].max() == 0:
        return None
    i = np.flatnonzero(window)[np.argmax(counts[window])]
    return round(float(centres[i]), 4)


def merge(inputs: list[Path], out: Path) -> dict:
    hists = []
    for path in sorted(inputs, key=lambda p: (p.read_bytes(), str(p))):  # order-independent
        try:
            hists.append((path, json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"{path}: not a histogram: {e}") from e
    if not hists:
        raise SystemExit("merge: no input histograms")
    ref_path, ref = hists[0]
    counts = np.zeros(len(ref["counts"]), dtype=np.int64)
    names: list[str] = []
    n_events = n_pairs = 0
    for path, h in hists:
        if h.get("edges") != ref["edges"]:
            raise SystemExit(f"{path}: binning differs from {ref_path}; cannot merge")
        counts += np.asarray(h["counts"], dtype=np.int64)
        n_events += int(h["n_events"])
        n_pairs += int(h["n_pairs"])
        names += h.get("inputs", [])
    bins = np.asarray(ref["edges"])
    result = {
        "edges": ref["edges"],
        "counts": counts.tolist(),
        "n_events": n_events,
        "n_pairs": n_pairs,
        "n_histograms": len(hists),
        "inputs": sorted(names),
        "peaks": {
            "J/psi": peak(bins, counts, 2.9, 3.3),
            "Upsilon": peak(bins, counts, 9.0, 10.0),
            "Z": peak(bins, counts, 80.0, 100.0),
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "mass_histogram.json").write_text(json.dumps(result, sort_keys=True, indent=1) + "\n")
    plot(bins, counts, n_pairs, out / "mass_spectrum.png")
    print(f"merged {len(hists)} histograms: {n_pairs} pairs; peaks {result['peaks']}")
    return result


def plot(bins: np.ndarray, counts: np.ndarray, n_pairs: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Everything that could vary between runs is pinned: size, dpi, fonts, and no
    # "Software"/date metadata in the PNG, so reruns give byte-identical files.
    with plt.rc_context({"font.family": "DejaVu Sans", "svg.hashsalt": "stratoflow"}):
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        ax.stairs(np.maximum(counts, 0.5), bins, color="#1f4e79", linewidth=1.0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(bins[0], bins[-1])
        ax.set_ylim(0.5, max(float(counts.max()), 1.0) * 3)
        ax.set_xlabel("dimuon invariant mass  [GeV]")
        ax.set_ylabel("opposite-sign pairs / bin")
        ax.set_title(f"Dimuon mass spectrum ({n_pairs} pairs)")
        centres = np.sqrt(bins[:-1] * bins[1:])
        for label, mass in RESONANCES:
            i = int(np.clip(np.searchsorted(centres, mass), 0, len(counts) - 1))
            top = counts[max(i - 2, 0) : i + 3].max()
            ax.annotate(
                label,
                (mass, max(float(top), 1.0)),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                fontsize=10,
            )
        ax.grid(True, which="major", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png", metadata={"Software": None})
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Dimuon invariant-mass analysis")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("fill", "merge"):
        p = sub.add_parser(name)
        p.add_argument("inputs", nargs="+", type=Path)
        p.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    for path in args.inputs:
        if not path.is_file():
            print(f"{path}: no such file", file=sys.stderr)
            return 2
    (fill if args.cmd == "fill" else merge)(args.inputs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
