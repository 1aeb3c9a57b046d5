r"""Time one PINN training step (forward + residual + loss + backward, zero_grad) with the jet
engine, nested ``torch.autograd.grad`` and ``torch.func``.

Problems (256-wide, 3-hidden-layer SIREN, float32, CPU by default):

* ``wave``: inputs ``(x, y, t)``, residual :math:`u_{tt} - c^2(u_{xx}+u_{yy})`, ``c = 1``.
  Jet: one weighted Laplacian, ``laplacian=(0, 1, 2), weights=(-c², -c², 1)`` → 5 rows.
* ``helmholtz_pml``: inputs ``(x, y)``, outputs ``(Re u, Im u)``, :math:`\omega = 20`,
  :math:`e_x = 1 - i\sigma_x(x)/\omega`, :math:`\sigma(\xi) = 5\omega\,(d/0.5)^2`,
  :math:`d = \max(|\xi|-0.5, 0)`, residual

  .. math::
      \partial_x\!\Bigl(\tfrac{e_y}{e_x}\partial_x u\Bigr)
      + \partial_y\!\Bigl(\tfrac{e_x}{e_y}\partial_y u\Bigr) + e_x e_y\omega^2 u - e_x e_y f,

  with a Gaussian source :math:`f`.  Jet: product rule with analytic coefficient derivatives,
  :math:`A u_{xx} + A_x u_x + B u_{yy} + B_y u_y + \dots` (``A = e_y/e_x``, ``B = e_x/e_y``),
  all complex arithmetic in real pairs → 5 rows.  The autograd baseline follows the SIREN
  reference code: ``∇u`` by autograd, multiply by the complex coefficient, divergence of
  ``A·∇u`` by autograd again (6 ``grad`` calls).

Methods: ``fit`` (value-only step, the cost unit), ``jet`` (ours), ``autograd`` (nested
``torch.autograd.grad``), ``func`` (``torch.func``: ``vmap`` of ``jacfwd(jacrev)`` =
``hessian``, with gradient and value as aux), ``func_rr`` (the same with ``jacrev(jacrev)``)
and, with ``--compile``, ``jet_compiled`` (``torch.compile`` of the jet step; reported as
failed and skipped if compilation fails).

Timing: methods are interleaved round by round (so machine noise hits all of them alike);
median and minimum wall-clock times over ``--repeats`` rounds after ``--warmup`` rounds.  On
shared cores the ratios move with the load: every kernel is a two-thread barrier, so methods
that launch many kernels (nested autograd, ~800 per wave step vs ~150 for the jet) lose most
when another process competes; compare ``min`` columns for the quiet-machine picture.
Memory, two proxies, both measured rather than estimated: *saved* = bytes of distinct storages
autograd saves for backward during one step (via ``saved_tensors_hooks``; ``nan`` for
``torch.func``, whose transforms refuse such hooks); *peak RSS Δ* = in a fresh subprocess,
after warming the method up on 64 points, the growth of the peak resident set
(``VmHWM``, reset through ``/proc/self/clear_refs``) over one full step — includes allocator
slack and, for ``jet``, its recycled-buffer workspace.

The jet step cannot drop much below ``R`` value-only steps (``R`` stacked rows through one
matmul per layer forward and two backward); the ``÷fit`` column shows how close it gets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import jacfwd, jacrev, vmap

from pinnsiren.engine.jets import DerivativeRequest, jet
from pinnsiren.engine.nets import Siren

Step = Callable[[], Tensor]
Pair = tuple[Tensor, Tensor]

OMEGA = 20.0  # Helmholtz angular frequency
PML_A0 = 5.0  # PML strength
PML_START, PML_WIDTH = 0.5, 0.5
SOURCE_SIGMA = 0.05
WAVE_C = 1.0


# --------------------------------------------------------------------------------------------
# complex arithmetic in real pairs and the PML coefficients
# --------------------------------------------------------------------------------------------


def cmul(a: Pair, b: Pair) -> Pair:
    """``(ar + i ai)(br + i bi)``."""
    return a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]


def cdiv(a: Pair, b: Pair) -> Pair:
    """``a / b`` in real pairs."""
    den = b[0] * b[0] + b[1] * b[1]
    return (a[0] * b[0] + a[1] * b[1]) / den, (a[1] * b[0] - a[0] * b[1]) / den


def sigma(xi: Tensor) -> tuple[Tensor, Tensor]:
    r""":math:`\sigma(\xi) = a_0\omega(d/w)^2` and :math:`\sigma'(\xi)`, :math:`d = (|\xi|-s)_+`."""
    d = (xi.abs() - PML_START).clamp_min(0.0)
    sig = PML_A0 * OMEGA * (d / PML_WIDTH) ** 2
    dsig = (2.0 * PML_A0 * OMEGA / PML_WIDTH**2) * d * torch.sign(xi)
    return sig, dsig


def stretch(xi: Tensor) -> Pair:
    r""":math:`e(\xi) = 1 - i\sigma(\xi)/\omega`."""
    sig, _ = sigma(xi)
    return torch.ones_like(xi), -sig / OMEGA


def source(x: Tensor) -> Tensor:
    """Gaussian point-like source at the origin."""
    return torch.exp(-(x[:, 0:1] ** 2 + x[:, 1:2] ** 2) / (2 * SOURCE_SIGMA**2))


@dataclass
class PMLCoefficients:
    r"""Everything the product-rule residual needs, as ``(N, 1)`` real pairs.

    :math:`A = e_y/e_x`, :math:`A_x = -e_y e_x'/e_x^2`, :math:`B = e_x/e_y`,
    :math:`B_y = -e_x e_y'/e_y^2`, :math:`C = e_x e_y`.
    """

    a: Pair
    a_x: Pair
    b: Pair
    b_y: Pair
    c: Pair

    @staticmethod
    def at(x: Tensor) -> PMLCoefficients:
        xs, ys = x[:, 0:1], x[:, 1:2]
        sx, dsx = sigma(xs)
        sy, dsy = sigma(ys)
        one = torch.ones_like(xs)
        ex, ey = (one, -sx / OMEGA), (one, -sy / OMEGA)
        dex, dey = (torch.zeros_like(xs), -dsx / OMEGA), (torch.zeros_like(ys), -dsy / OMEGA)
        ax = cdiv(cmul(ey, dex), cmul(ex, ex))
        by = cdiv(cmul(ex, dey), cmul(ey, ey))
        return PMLCoefficients(
            a=cdiv(ey, ex),
            a_x=(-ax[0], -ax[1]),
            b=cdiv(ex, ey),
            b_y=(-by[0], -by[1]),
            c=cmul(ex, ey),
        )


def helmholtz_residual(
    coef: PMLCoefficients, f: Tensor, u: Pair, ux: Pair, uy: Pair, uxx: Pair, uyy: Pair
) -> Pair:
    """Product-rule PML residual in real pairs (shared by ``jet`` and ``func``)."""
    terms = [cmul(coef.a, uxx), cmul(coef.a_x, ux), cmul(coef.b, uyy), cmul(coef.b_y, uy)]
    cu = cmul(coef.c, u)
    re = sum(t[0] for t in terms) + OMEGA**2 * cu[0] - coef.c[0] * f
    im = sum(t[1] for t in terms) + OMEGA**2 * cu[1] - coef.c[1] * f
    return re, im  # type: ignore[return-value]


def split(t: Tensor) -> Pair:
    """``(N, 2)`` → ``(Re, Im)`` each ``(N, 1)``."""
    return t[:, 0:1], t[:, 1:2]


# --------------------------------------------------------------------------------------------
# steps: each returns the loss after calling backward
# --------------------------------------------------------------------------------------------


def make_model(problem: str, width: int, depth: int) -> Siren:
    torch.manual_seed(0)
    if problem == "wave":
        return Siren(3, 1, width=width, depth=depth)
    return Siren(2, 2, width=width, depth=depth)


def make_points(problem: str, batch: int) -> Tensor:
    gen = torch.Generator().manual_seed(1)
    d = 3 if problem == "wave" else 2
    return torch.rand(batch, d, generator=gen) * 2 - 1


WAVE_REQUEST = DerivativeRequest(
    laplacian=(0, 1, 2), laplacian_weights=(-(WAVE_C**2), -(WAVE_C**2), 1.0)
)
HELM_REQUEST = DerivativeRequest(gradient=(0, 1), second=(0, 1))


def residual_jet(problem: str, model: Siren, x: Tensor) -> Tensor:
    """Residual with the jet engine (``(N, 1)`` wave, ``(N, 2)`` Helmholtz)."""
    if problem == "wave":
        r = jet(model, x, WAVE_REQUEST).laplacian
        assert r is not None
        return r
    j = jet(model, x, HELM_REQUEST)
    with torch.no_grad():
        coef, f = PMLCoefficients.at(x), source(x)
    re, im = helmholtz_residual(
        coef,
        f,
        split(j.value),
        split(j.gradient[0]),
        split(j.gradient[1]),
        split(j.second[0]),
        split(j.second[1]),
    )
    return torch.cat([re, im], 1)


def residual_autograd(problem: str, model: Siren, x: Tensor) -> Tensor:
    """Residual with nested ``torch.autograd.grad`` (the usual PINN code)."""
    x = x.detach().requires_grad_(True)
    u = model(x)

    def grad(y: Tensor) -> Tensor:
        return torch.autograd.grad(y.sum(), x, create_graph=True)[0]

    if problem == "wave":
        g = grad(u)
        u_xx, u_yy, u_tt = (grad(g[:, i])[:, i : i + 1] for i in range(3))
        return u_tt - WAVE_C**2 * (u_xx + u_yy)
    # SIREN reference style: Jacobian of u, complex coefficient times ∇u, divergence by autograd
    du_re, du_im = grad(u[:, 0]), grad(u[:, 1])
    ex, ey = stretch(x[:, 0:1]), stretch(x[:, 1:2])
    a, b, c = cdiv(ey, ex), cdiv(ex, ey), cmul(ex, ey)
    flux_x = cmul(a, (du_re[:, 0:1], du_im[:, 0:1]))
    flux_y = cmul(b, (du_re[:, 1:2], du_im[:, 1:2]))
    div_re = grad(flux_x[0])[:, 0:1] + grad(flux_y[0])[:, 1:2]
    div_im = grad(flux_x[1])[:, 0:1] + grad(flux_y[1])[:, 1:2]
    cu = cmul(c, split(u))
    f = source(x)
    re = div_re + OMEGA**2 * cu[0] - c[0] * f
    im = div_im + OMEGA**2 * cu[1] - c[1] * f
    return torch.cat([re, im], 1)


def residual_func(problem: str, model: Siren, x: Tensor, *, rev_rev: bool = False) -> Tensor:
    """Residual with ``torch.func``: per-point Hessian (+ gradient, value as aux) under vmap."""

    def point(xi: Tensor) -> Tensor:
        u = torch.func.functional_call(model, params, (xi.unsqueeze(0),))[0]
        return u

    def with_value(xi: Tensor) -> tuple[Tensor, Tensor]:
        u = point(xi)
        return u, u

    def first(xi: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        g, u = jacrev(with_value, has_aux=True)(xi)
        return g, (g, u)

    params = dict(model.named_parameters())
    outer = jacrev if rev_rev else jacfwd
    hess, (grad, value) = vmap(outer(first, has_aux=True))(x)  # (N, out, d, d), (N, out, d)
    if problem == "wave":
        lap = hess[:, 0, 2, 2] - WAVE_C**2 * (hess[:, 0, 0, 0] + hess[:, 0, 1, 1])
        return lap.unsqueeze(1)
    with torch.no_grad():
        coef, f = PMLCoefficients.at(x), source(x)
    re, im = helmholtz_residual(
        coef,
        f,
        split(value),
        split(grad[:, :, 0]),
        split(grad[:, :, 1]),
        split(hess[:, :, 0, 0]),
        split(hess[:, :, 1, 1]),
    )
    return torch.cat([re, im], 1)


def make_steps(
    problem: str, model: Siren, x: Tensor, methods: list[str], compile_jet: bool
) -> dict[str, Step]:
    target = torch.zeros(x.shape[0], model.out_features)

    def wrap(residual: Callable[[], Tensor]) -> Step:
        def step() -> Tensor:
            model.zero_grad(set_to_none=True)
            loss = residual().pow(2).mean()
            loss.backward()
            return loss.detach()

        return step

    steps: dict[str, Step] = {
        "fit": wrap(lambda: model(x) - target),
        "jet": wrap(lambda: residual_jet(problem, model, x)),
        "autograd": wrap(lambda: residual_autograd(problem, model, x)),
        "func": wrap(lambda: residual_func(problem, model, x)),
        "func_rr": wrap(lambda: residual_func(problem, model, x, rev_rev=True)),
    }
    out = {m: steps[m] for m in methods if m in steps}
    if compile_jet:
        try:
            compiled = torch.compile(lambda xx: residual_jet(problem, model, xx).pow(2).mean())

            def step_c() -> Tensor:
                model.zero_grad(set_to_none=True)
                loss = compiled(x)
                loss.backward()
                return loss.detach()

            t0 = time.perf_counter()
            step_c()
            print(f"  [{problem}] torch.compile of the jet step: {time.perf_counter() - t0:.1f} s")
            out["jet_compiled"] = step_c
        except Exception as exc:  # noqa: BLE001 - any compile failure means: eager only
            print(f"  [{problem}] torch.compile failed, eager only ({type(exc).__name__}: {exc})")
    return out


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------


def saved_bytes(step: Step) -> float:
    """Bytes of distinct storages saved for backward while running ``step`` once
    (NaN where saved-tensor hooks are unsupported, i.e. inside ``torch.func`` transforms)."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            step()
    except RuntimeError:
        return math.nan
    return float(sum(seen.values()))


def rss_probe(args: argparse.Namespace, problem: str, method: str) -> float | None:
    """Peak-RSS growth (MiB) of one step of ``method`` in a fresh subprocess."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--probe",
        f"{problem}:{method}",
        "--batch",
        str(args.batch),
        "--width",
        str(args.width),
        "--depth",
        str(args.depth),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        return float(json.loads(res.stdout.strip().splitlines()[-1])["rss_mib"])
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError):
        return None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def probe(args: argparse.Namespace) -> None:
    """Subprocess body: warm the method up on 64 points (thread pools, library buffers), reset
    the peak-RSS mark, run one full step and print the peak growth."""
    problem, method = args.probe.split(":")
    model = make_model(problem, args.width, args.depth)
    make_steps(problem, model, make_points(problem, 64), [method], False)[method]()
    step = make_steps(problem, model, make_points(problem, args.batch), [method], False)[method]
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets VmHWM (Linux >= 4.0)
        fh.write("5")
    base = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM")
    print(json.dumps({"rss_mib": max(peak - base, 0) / 1024}))


def check_agreement(problem: str, model: Siren, x: Tensor) -> float:
    """Max relative difference of the jet residual vs nested autograd (float32, 512 points)."""
    xs = x[:512]
    a = residual_jet(problem, model, xs).detach()
    b = residual_autograd(problem, model, xs).detach()
    return float((a - b).abs().max() / b.abs().max())


def run_problem(args: argparse.Namespace, problem: str) -> float:
    model = make_model(problem, args.width, args.depth)
    x = make_points(problem, args.batch)
    d = x.shape[1]
    rows = (WAVE_REQUEST if problem == "wave" else HELM_REQUEST).rows()
    print(
        f"\n== {problem}: N={args.batch}, d={d}, out={model.out_features}, "
        f"SIREN {args.width}x{args.depth}, jet rows R={rows}, float32, "
        f"{torch.get_num_threads()} threads"
    )
    agree = check_agreement(problem, model, x)
    print(f"  jet vs autograd residual, max rel diff (float32): {agree:.1e}")
    methods = ["fit", "jet", "autograd"] + ([] if args.no_func else ["func", "func_rr"])
    steps = make_steps(problem, model, x, methods, args.compile)
    names = list(steps)
    times: dict[str, list[float]] = {m: [] for m in names}
    for _ in range(args.warmup):
        for m in names:
            steps[m]()
    for _ in range(args.repeats):
        for m in names:
            t0 = time.perf_counter()
            steps[m]()
            times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(v) * 1e3 for m, v in times.items()}
    best = {m: min(v) * 1e3 for m, v in times.items()}
    mem_saved = {m: saved_bytes(steps[m]) / 2**20 for m in names} if not args.no_memory else {}
    mem_rss = (
        {m: rss_probe(args, problem, m) for m in names if m != "jet_compiled"}
        if not args.no_memory and not args.no_rss
        else {}
    )
    print(
        f"  {'method':<13}{'median ms':>10}{'min ms':>9}{'÷fit':>7}{'auto÷this':>10}"
        f"{'saved MiB':>11}{'peakRSSΔ MiB':>14}"
    )
    for m in names:
        rss = mem_rss.get(m)
        print(
            f"  {m:<13}{med[m]:>10.1f}{best[m]:>9.1f}{med[m] / med['fit']:>7.2f}"
            f"{med['autograd'] / med[m]:>10.2f}"
            f"{mem_saved.get(m, math.nan):>11.1f}"
            f"{(rss if rss is not None else math.nan):>14.1f}"
        )
    ratio = med["jet"] / med["fit"]
    print(
        f"  jet step = {ratio:.2f}x the value-only fit step (floor ≈ R = {rows} rows; "
        f"d+2 = {d + 2})"
    )
    for m in ("func", "func_rr"):
        if m in med:
            print(f"  jet vs torch.func ({m}): {med[m] / med['jet']:.2f}x")
    return med["autograd"] / med["jet"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--problems", default="wave,helmholtz_pml")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(jet)")
    parser.add_argument("--no-func", action="store_true", help="skip the torch.func baselines")
    parser.add_argument("--no-memory", action="store_true", help="skip memory measurements")
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS probes")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        probe(args)
        return
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = set(problems) - {"wave", "helmholtz_pml"}
    if unknown:
        parser.error(f"unknown problem(s): {', '.join(sorted(unknown))}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    speedups = {p: run_problem(args, p) for p in problems}
    print()
    for p, s in speedups.items():
        print(f"{p} speedup_vs_autograd={s:.2f}")


if __name__ == "__main__":
    main()
