"""Classical adjoint-state FWI on the SIREN cylinder data set (acceptance case for inversion).

Usage::

    python benchmarks/fwi_cylinder.py                       # the default table (a few minutes)
    python benchmarks/fwi_cylinder.py --n 151 --tv 0.01 --iterations 60

Data: ``../shared/data/siren-fwi-cylinder/data_cylinder_5.mat`` (5 sources on y = -0.3471,
30 receivers on three sides at |x|, |y| <= 0.402, omega = 20, source (1 + i) g_sigma with
sigma = 0.01, free-space data). The true model is c = 2 in the disk r < 0.1, c = 1 elsewhere.

Every configuration starts from the homogeneous c = 1 model with velocity bounds
``[c_min, c_max]`` and inverts the free cells (``--mask physical``: everything outside the
PML; ``region``: only the box enclosed by sources and receivers). Reported per configuration:

* ``centre``    inverted velocity at the disk centre (true 2; acceptance: within 10 %),
* ``rel_l2``    ||c - c_true|| / ||c_true|| on the nodes of |x| <= 0.402, -0.3471 <= y <= 0.402
  (acceptance for the PINN: <= 0.08; the c = 1 start has 0.21),
* ``misfit``    final relative data misfit ||P u - d|| / ||d|| (start 0.39; the true model
  gives 0.025 at h = 0.01 and 0.018 at h = 0.005 -- a misfit below that is over-fitting),
* iterations, evaluations (one factorisation + 10 solves each) and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "siren-fwi-cylinder" / "data_cylinder_5.mat"
OMEGA, SIGMA, AMPLITUDE = 20.0, 0.01, 1.0 + 1.0j

# (n, tv, tikhonov, multiscale) of the default table on [-0.75, 0.75]^2 with a 0.25 PML.
DEFAULT_CASES = [
    (151, 0.0, 0.0, ()),
    (151, 0.01, 0.0, ()),
    (151, 0.03, 0.0, ()),
    (151, 0.01, 0.0, (0.1, 0.05)),
    (301, 0.01, 0.0, ()),
]


def run(
    n: int,
    tv: float,
    tikhonov: float,
    multiscale: tuple[float, ...],
    iterations: int,
    bounds: tuple[float, float],
    half_width: float,
    pml_width: float,
    mask_kind: str,
    save: Path | None = None,
) -> dict:
    """One inversion; returns the table row as a dict."""
    from scipy.io import loadmat

    from reference_solvers.fwi import invert, physical_mask
    from reference_solvers.helmholtz import PML, gaussian_source

    d = loadmat(DATA)
    sources, receivers, rec_val = d["source"], d["receivers"], d["rec_val"]
    x = np.linspace(-half_width, half_width, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pml = PML(pml_width)
    f = np.stack([gaussian_source(x, x, s, SIGMA, AMPLITUDE) for s in sources])
    c_true = np.where(X**2 + Y**2 < 0.1**2, 2.0, 1.0)
    region = (np.abs(X) <= 0.402) & (Y >= -0.3471) & (Y <= 0.402)
    mask = physical_mask(x, x, pml) if mask_kind == "physical" else region
    result = invert(
        x,
        x,
        OMEGA,
        f,
        receivers,
        rec_val,
        c0=1.0,
        bounds=bounds,
        pml=pml,
        mask=mask,
        iterations=iterations,
        tv=tv,
        tikhonov=tikhonov,
        multiscale=multiscale,
    )
    c = result.velocity
    centre = int(np.argmin(np.abs(x)))
    if save is not None:
        np.savez(save, x=x, velocity=c, history=np.asarray(result.history))
    rel = np.linalg.norm((c - c_true)[region]) / np.linalg.norm(c_true[region])
    return {
        "grid": f"{n}^2",
        "h": float(x[1] - x[0]),
        "tv": tv,
        "tikhonov": tikhonov,
        "multiscale": list(multiscale),
        "iterations": result.iterations,
        "evaluations": result.evaluations,
        "seconds": result.seconds,
        "centre": float(c[centre, centre]),
        "rel_l2": float(rel),
        "misfit_start": result.history[0],
        "misfit": result.misfit,
        "c_max": float(c.max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="grid nodes per axis (one case)")
    parser.add_argument("--tv", type=float, default=0.0)
    parser.add_argument("--tikhonov", type=float, default=0.0)
    parser.add_argument("--multiscale", type=float, nargs="*", default=[])
    parser.add_argument("--iterations", type=int, default=60, help="per stage")
    parser.add_argument("--bounds", type=float, nargs=2, default=[1.0, 3.0])
    parser.add_argument("--half-width", type=float, default=0.75, help="box [-L, L]^2")
    parser.add_argument("--pml", type=float, default=0.25, help="PML width")
    parser.add_argument("--mask", choices=["physical", "region"], default="physical")
    parser.add_argument("--save", type=Path, default=None, help="npz of the last model")
    args = parser.parse_args(argv)
    if not DATA.exists():
        print(f"data set not found: {DATA}", file=sys.stderr)
        return 2
    if args.n is None:
        cases = DEFAULT_CASES
    else:
        cases = [(args.n, args.tv, args.tikhonov, tuple(args.multiscale))]
    print(
        f"cylinder FWI, omega = {OMEGA:g}, start c = 1, bounds {tuple(args.bounds)}, box "
        f"[-{args.half_width}, {args.half_width}]^2, PML {args.pml}, mask {args.mask}, "
        f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'grid':>7} {'tv':>6} {'tikh':>6} {'multiscale':>10} {'iter':>4} {'evals':>5}"
        f" {'time s':>7} {'centre':>6} {'rel_l2':>6} {'misfit':>7}"
    )
    print(header)
    print("-" * len(header))
    for n, tv, tik, ms in cases:
        row = run(
            n, tv, tik, ms, args.iterations, tuple(args.bounds), args.half_width, args.pml,
            args.mask, args.save,
        )  # fmt: skip
        ms_text = ",".join(f"{s:g}" for s in ms) or "-"
        print(
            f"{row['grid']:>7} {tv:6.3g} {tik:6.3g} {ms_text:>10} {row['iterations']:4d}"
            f" {row['evaluations']:5d} {row['seconds']:7.1f} {row['centre']:6.3f}"
            f" {row['rel_l2']:6.3f} {row['misfit']:7.4f}",
            flush=True,
        )
        print("  " + json.dumps(row), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
