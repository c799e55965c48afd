"""Generate the demo's synthetic dimuon events (CMS open-data CSV layout, gzip-compressed).

    python make_events.py [--out DIR] [--files 4] [--events 15000]

Each event is one muon pair from a falling exponential continuum or a resonance (J/psi,
psi(2S), Upsilon(1S,2S,3S), Z) with its natural width, decayed isotropically in its rest
frame, boosted with a random transverse momentum and rapidity, and smeared with a
CMS-like momentum resolution. A few percent of pairs are same-sign (fakes), which the
analysis must reject. Seeded per file and gzip'd with mtime 0: the output is
byte-identical on every run, so the checksums in the template stay valid.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import zlib
from pathlib import Path

import numpy as np

MU = 0.1056583755  # muon mass, GeV
# name, mass (GeV), natural width (GeV), fraction of events
RESONANCES = [
    ("J/psi", 3.0969, 0.0000926, 0.20),
    ("psi(2S)", 3.6861, 0.000294, 0.025),
    ("Upsilon(1S)", 9.4603, 0.0000540, 0.05),
    ("Upsilon(2S)", 10.0233, 0.0000320, 0.015),
    ("Upsilon(3S)", 10.3552, 0.0000203, 0.01),
    ("Z", 91.1876, 2.4952, 0.10),
]
SAME_SIGN = 0.04
COLUMNS = "Run,Event,E1,px1,py1,pz1,pt1,eta1,phi1,Q1,E2,px2,py2,pz2,pt2,eta2,phi2,Q2"


def sample_masses(rng: np.random.Generator, n: int) -> np.ndarray:
    fractions = np.array([r[3] for r in RESONANCES])
    which = rng.choice(len(RESONANCES) + 1, size=n, p=[*fractions, 1 - fractions.sum()])
    m = np.empty(n)
    for i, (_, mass, width, _) in enumerate(RESONANCES):
        sel = which == i
        # Breit-Wigner line shape, truncated so a Cauchy tail cannot give absurd masses.
        bw = mass + 0.5 * width * np.tan(np.pi * (rng.random(sel.sum()) - 0.5))
        m[sel] = np.clip(bw, mass - 20 * width - 0.05, mass + 20 * width + 0.05)
    cont = which == len(RESONANCES)
    # Drell-Yan-like continuum: steep at low mass with a long tail up to the Z.
    steep = 0.5 + rng.exponential(2.0, cont.sum())
    tail = 2.0 + rng.exponential(15.0, cont.sum())
    m[cont] = np.where(rng.random(cont.sum()) < 0.85, steep, tail)
    return np.clip(m, 2 * MU + 0.3, 150.0)


def decay(rng: np.random.Generator, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two back-to-back muons in the parent frame, boosted to the lab. Returns 4-vectors."""
    n = len(m)
    p = np.sqrt(np.maximum(m**2 / 4 - MU**2, 0))
    cos_t = rng.uniform(-1, 1, n)
    sin_t = np.sqrt(1 - cos_t**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1) * p[:, None]
    e = np.sqrt(p**2 + MU**2)
    mu1 = np.column_stack([e, d])
    mu2 = np.column_stack([e, -d])
    # Parent kinematics in the lab: pT ~ a few GeV (more for heavy states), |y| < 2.4.
    pt = rng.exponential(3.0 + 0.15 * m)
    y = rng.uniform(-2.4, 2.4, n)
    ph = rng.uniform(-np.pi, np.pi, n)
    mt = np.sqrt(m**2 + pt**2)
    parent = np.column_stack([mt * np.cosh(y), pt * np.cos(ph), pt * np.sin(ph), mt * np.sinh(y)])
    return boost(mu1, parent, m), boost(mu2, parent, m)


def boost(v: np.ndarray, parent: np.ndarray, m: np.ndarray) -> np.ndarray:
    beta = parent[:, 1:] / parent[:, :1]
    b2 = np.sum(beta**2, axis=1)
    gamma = parent[:, 0] / m
    bp = np.sum(beta * v[:, 1:], axis=1)
    g2 = np.where(b2 > 0, (gamma - 1) / np.where(b2 > 0, b2, 1), 0.0)
    e = gamma * (v[:, 0] + bp)
    p = v[:, 1:] + (g2 * bp + gamma * v[:, 0])[:, None] * beta
    return np.column_stack([e, p])


def smear(rng: np.random.Generator, v: np.ndarray) -> np.ndarray:
    """CMS-like resolution: sigma(pT)/pT ~ 1% plus 0.01% per GeV; angles unchanged."""
    pt = np.hypot(v[:, 1], v[:, 2])
    pt = pt * (1 + rng.normal(0, 0.01 + 1e-4 * pt))
    phi = np.arctan2(v[:, 2], v[:, 1])
    eta = np.arcsinh(v[:, 3] / np.hypot(v[:, 1], v[:, 2]))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + MU**2)
    return np.column_stack([e, px, py, pz, pt, eta, phi])


def make_file(seed: int, n: int, run: int) -> bytes:
    rng = np.random.default_rng(seed)
    m = sample_masses(rng, n)
    mu1, mu2 = (smear(rng, v) for v in decay(rng, m))
    q1 = rng.choice([-1, 1], n)
    q2 = np.where(rng.random(n) < SAME_SIGN, q1, -q1)
    events = np.sort(rng.choice(10**9, size=n, replace=False))
    out = io.StringIO()
    out.write(COLUMNS + "\n")
    for i in range(n):
        a, b = mu1[i], mu2[i]
        out.write(
            f"{run},{events[i]},"
            f"{a[0]:.4f},{a[1]:.4f},{a[2]:.4f},{a[3]:.4f},{a[4]:.4f},{a[5]:.4f},{a[6]:.4f},{q1[i]},"
            f"{b[0]:.4f},{b[1]:.4f},{b[2]:.4f},{b[3]:.4f},{b[4]:.4f},{b[5]:.4f},{b[6]:.4f},{q2[i]}\n"
        )
    buf = io.BytesIO()
    # mtime=0 and no file name in the header: the same events give the same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(out.getvalue().encode())
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--events", type=int, default=15000)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for k in range(args.files):
        data = make_file(seed=20240 + k, n=args.events, run=194000 + k)
        path = args.out / f"dimuon_{k:03d}.csv.gz"
        path.write_bytes(data)
        adler = format(zlib.adler32(data) & 0xFFFFFFFF, "08x")
        print(
            f"{path.name} size={len(data)} adler32={adler} "
            f"sha256={hashlib.sha256(data).hexdigest()}"
        )


if __name__ == "__main__":
    main()
