"""Benchmark: 2-D Helmholtz + PML reference solve, every sparse direct backend side by side.

Usage::

    python benchmarks/reference_solver_speed.py                 # 512^2 and 1024^2, all backends
    python benchmarks/reference_solver_speed.py --sizes 256 512 --baseline-all

Each case (grid size x velocity model x backend) runs in its own subprocess, so the reported
peak memory is that process's own ``ru_maxrss`` (native allocations included; the Python +
NumPy + SciPy baseline of ~100 MB is listed separately). Measured per case:

* ``assemble``  building the sparse operator (``helmholtz_operator``) and right-hand sides,
* ``factor``    one factorisation (:class:`reference_solvers.factorization.Factorization`),
* ``solve1``    the solve for one source,
* ``solve/src`` time per source when ``--nsrc`` sources are solved in one block,
* ``residual``  ``||A u - b|| / ||b||`` of the single-source solve,
* memory      peak resident memory of the process after the factorisation, after the
  first solve, and at the end (after the block solve of ``--nsrc`` sources).

Backends: ``pardiso`` (oneMKL PARDISO via PyPI ``py-mkl-pardiso``, when installed),
``scipy`` (SuperLU, minimum-degree ordering on A^T+A, symmetric mode, single-threaded BLAS),
and the baseline ``spsolve`` (``scipy.sparse.linalg.spsolve`` with its defaults: COLAMD
ordering, one factorisation per call). The baseline runs at the smallest size only unless
``--baseline-all`` is given (at 1024^2 it needs about a minute and >4 GB).

The machine is shared: the load average at the start of every case is printed, and timings
are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _model(n: int, kind: str):
    import numpy as np

    x = np.linspace(-1.0, 1.0, n)
    if kind == "uniform":
        return x, np.ones((n, n))
    X, Y = np.meshgrid(x, x, indexing="ij")
    # Two layers with a smooth interface, a slow lens and a fast disk (1.0 ... 2.2 km/s).
    c = 1.5 + 0.5 * np.tanh((Y - 0.1 - 0.1 * np.sin(3 * X)) / 0.05)
    c -= 0.4 * np.exp(-((X + 0.2) ** 2 + (Y + 0.25) ** 2) / 0.02)
    c = np.where((X - 0.25) ** 2 + (Y - 0.3) ** 2 < 0.1**2, 2.2, c)
    return x, c


def _peak_mb() -> float:
    """Peak resident set size of this process so far (MB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(n: int, kind: str, backend: str, nsrc: int, omega: float) -> dict:
    """Run one case in this process and return its measurements."""
    import numpy as np
    import scipy.sparse.linalg as spla

    from reference_solvers.factorization import Factorization
    from reference_solvers.helmholtz import PML, gaussian_source, helmholtz_operator, helmholtz_rhs

    base_rss = _peak_mb()
    x, c = _model(n, kind)
    pml = PML()
    t0 = time.perf_counter()
    a = helmholtz_operator(x, x, omega, c, pml)
    centres = [(-0.3 + 0.6 * k / max(nsrc - 1, 1), -0.35) for k in range(nsrc)]
    f = np.stack([gaussian_source(x, x, s, 0.01, 1.0 + 1.0j) for s in centres])
    b = helmholtz_rhs(x, x, omega, f, pml)
    t_assemble = time.perf_counter() - t0
    out_mem = {"mb_assembled": _peak_mb()}

    out: dict = {"n": n, "model": kind, "backend": backend, "assemble": t_assemble}
    if backend == "spsolve":
        t0 = time.perf_counter()
        u = spla.spsolve(a.tocsc(), b[:, 0])
        out["factor"] = time.perf_counter() - t0  # factor + solve, one call
        out["solve1"] = float("nan")
        out["solve_per_src"] = float("nan")
    else:
        t0 = time.perf_counter()
        lu = Factorization(a, symmetric=True, backend=backend)
        out["factor"] = time.perf_counter() - t0
        out_mem["mb_factored"] = _peak_mb()
        t0 = time.perf_counter()
        u = lu.solve(b[:, 0])
        out["solve1"] = time.perf_counter() - t0
        out_mem["mb_solved1"] = _peak_mb()
        t0 = time.perf_counter()
        lu.solve(b)
        out["solve_per_src"] = (time.perf_counter() - t0) / nsrc
        out["backend"] = lu.backend
    out["residual"] = float(np.linalg.norm(a @ u - b[:, 0]) / np.linalg.norm(b[:, 0]))
    out["probe"] = repr(complex(u.reshape(n, n)[n // 2, (3 * n) // 4]))
    out["peak_mb"] = _peak_mb()
    out.update(out_mem)
    out["base_mb"] = base_rss
    return out


def _available() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from reference_solvers.factorization import available_backends

    return available_backends()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--models", nargs="+", default=["uniform", "heterogeneous"])
    parser.add_argument("--backends", nargs="+", default=None, help="default: all available")
    parser.add_argument("--nsrc", type=int, default=4, help="sources per block solve")
    parser.add_argument("--omega", type=float, default=20.0)
    parser.add_argument("--baseline-all", action="store_true", help="spsolve at every size")
    parser.add_argument(
        "--case", nargs=3, metavar=("N", "MODEL", "BACKEND"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.case:
        n, model, backend = args.case
        print(json.dumps(run_case(int(n), model, backend, args.nsrc, args.omega)))
        return 0

    backends = args.backends or _available()
    base = float("nan")
    print(f"available backends: {', '.join(_available())}; cores: {os.cpu_count()}")
    header = (
        f"{'grid':>9} {'model':>13} {'backend':>8} {'load':>5} {'assemble':>8} {'factor':>8}"
        f" {'solve1':>7} {'solve/src':>9} {'MB fact':>7} {'MB 1src':>7} {'MB peak':>7}"
        f" {'residual':>8}  u(probe)"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        for model in args.models:
            cases = list(backends)
            if args.baseline_all or n == min(args.sizes):
                if model == args.models[0]:
                    cases.append("spsolve")
            for backend in cases:
                load = os.getloadavg()[0]
                cmd = [sys.executable, __file__, "--case", str(n), model, backend]
                cmd += ["--nsrc", str(args.nsrc), "--omega", str(args.omega)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                    print(f"{n:>4}^2 {model:>13} {backend:>8}  FAILED: {tail[0]}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                base = r["base_mb"]
                probe = complex(r["probe"])
                print(
                    f"{n:>7}^2 {model:>13} {r['backend']:>8} {load:5.1f} {r['assemble']:8.2f}"
                    f" {r['factor']:8.2f} {r['solve1']:7.3f} {r['solve_per_src']:9.3f}"
                    f" {r.get('mb_factored', float('nan')):7.0f}"
                    f" {r.get('mb_solved1', float('nan')):7.0f} {r['peak_mb']:7.0f}"
                    f" {r['residual']:8.1e}  {probe:.6f}",
                    flush=True,
                )
    print(
        "times in s; spsolve 'factor' = factorisation + one solve (scipy defaults). Memory =\n"
        "peak RSS of the case's process after factorising (MB fact), after one solve\n"
        "(MB 1src) and at the end (MB peak, includes the block of --nsrc sources);\n"
        f"Python + NumPy + SciPy alone: {base:.0f} MB."
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
