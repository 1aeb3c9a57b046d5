r"""Metrics and figures of a signal fit (``pde.kind: fit``): there is no finite-difference
reference; the reconstruction :math:`u` is scored against the signal :math:`s` it was fitted to.

Gauge
-----
Derivative supervision determines :math:`u` only up to the kernel of the operator, so before the
image PSNR the least-squares element of that kernel is added (``gauge`` in ``metrics.json``,
the lowest-order active data term decides; see :data:`pinnsiren.pdes.fit.GAUGES`):

* ``none`` (values supervision): :math:`\tilde u = u`;
* ``constant`` (gradient): :math:`\tilde u = u + c`, :math:`c = \operatorname{mean}(s - u)`;
* ``harmonic2`` (Laplacian): :math:`\tilde u = u + \sum_m a_m p_m` with :math:`p_m` the harmonic
  polynomials of degree :math:`\le 2` (:math:`1, \xi, \eta, \xi^2 - \eta^2, 2\xi\eta`) in
  centred, isotropically scaled coordinates :math:`(\xi, \eta) = (x - x_c, y - y_c)/R`
  (translation and uniform scaling keep these polynomials harmonic, so the gauge space is that of
  the physical coordinates), :math:`a` by least squares.

With a mask the gauge is fitted on the observed pixels only.

Metrics (``metrics.json``)
--------------------------
``psnr``: :math:`10\log_{10}(R^2/\mathrm{MSE})` of :math:`\tilde u` against :math:`s` over all
pixels, :math:`R = \max s - \min s` (2 for the default normalisation to :math:`[-1, 1]`);
``psnr_raw`` without the gauge; ``rel_l2``, ``max_abs_error`` of :math:`\tilde u`.

``psnr_gradient``, ``psnr_laplacian``: the *same* finite-difference operator on both sides,
Sobel gradient :math:`G_h` and five-point Laplacian :math:`\Delta_h` of the reconstruction on the
signal grid against those of the signal (range :math:`R` = that of the target's derivative;
both gradient components together).  Chosen because (i) identical operators make the score
measure the reconstruction, not the :math:`O(h^2)` gap between a discrete and an exact
derivative (a perfect :math:`u = s` scores :math:`\infty`); (ii) it is gauge-free (:math:`G_h`
annihilates constants and :math:`\Delta_h`, exact for cubics, annihilates degree-2 harmonic
polynomials); (iii) it needs only ``solution.h5`` and works for every model kind.  For
reference, ``psnr_gradient_network``/``psnr_laplacian_network`` score the network's exact
derivatives (``u_x``, ``u_y``, ``lap_u`` in the solution, from the jet engine) against the same
discrete targets -- what the gradient/Laplacian *loss* saw.

Inpainting (a ``mask`` field): ``psnr_observed`` and ``psnr_heldout`` are the image PSNR on the
observed and the unobserved pixels (same :math:`R`), with ``observed_fraction``.

Figure ``comparison.png``: target | reconstruction (gauge-fixed) | error, grey maps, and for an
inpainting run the mask outline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pinnsiren.errors import UserError
from pinnsiren.families.fit.signals import (
    fit_constant,
    fit_harmonic,
    laplacian_5pt,
    psnr,
    sobel_gradient,
)
from pinnsiren.output import plots
from pinnsiren.output.gridfile import GridData

__all__ = ["apply_gauge", "fit_metrics", "plot_fit_comparison", "plot_solution", "solution_metrics"]

GAUGE_NOTES = {
    "none": "values supervision: no gauge",
    "constant": "gradient supervision: least-squares constant added before the image PSNR",
    "harmonic2": "Laplacian supervision: least-squares harmonic polynomial of degree <= 2 "
    "(1, x, y, x^2-y^2, 2xy in centred scaled coordinates) added before the image PSNR",
}
DERIVATIVE_NOTE = (
    "psnr_gradient/psnr_laplacian: Sobel gradient / 5-point Laplacian of the reconstruction vs "
    "of the target on the signal grid (same operator both sides, gauge-free); "
    "*_network: the network's exact derivatives (jet engine) vs the same discrete targets"
)


def _scaled_coords(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(nx, ny, 2)`` coordinates centred on the box and divided by its larger half-width."""
    cx, cy = 0.5 * (x[0] + x[-1]), 0.5 * (y[0] + y[-1])
    r = 0.5 * max(float(x[-1] - x[0]), float(y[-1] - y[0])) or 1.0
    gx, gy = np.meshgrid((x - cx) / r, (y - cy) / r, indexing="ij")
    return np.stack([gx, gy], axis=-1)


def apply_gauge(
    u: np.ndarray,
    target: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    gauge: str,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, list[float]]:
    """``u`` plus the least-squares element of the gauge space, and its coefficients."""
    if gauge == "none":
        return np.asarray(u, dtype=float), []
    if gauge == "constant":
        fixed, c = fit_constant(u, target, mask=mask, channel_axis=False)
        return fixed, [float(c)]  # type: ignore[arg-type]
    if gauge == "harmonic2":
        fixed, a = fit_harmonic(u, target, _scaled_coords(x, y), 2, mask=mask)
        return fixed, [float(v) for v in np.ravel(a)]
    raise ValueError(f"unknown gauge {gauge!r} (allowed: none, constant, harmonic2)")


def fit_metrics(
    u: np.ndarray,
    target: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    gauge: str,
    mask: np.ndarray | None = None,
    network: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """All metrics of one reconstruction (module docstring); plain floats and lists.

    ``u``, ``target`` (and ``mask``, True = observed) are ``(nx, ny)`` on nodes ``x``, ``y``;
    ``network`` optionally holds the network's exact ``u_x``, ``u_y``, ``lap_u`` there.
    """
    u, target = np.asarray(u, dtype=float), np.asarray(target, dtype=float)
    if u.shape != target.shape or u.shape != (len(x), len(y)):
        raise UserError(f"fit metrics: u {u.shape}, target {target.shape}, grid {len(x)}x{len(y)}")
    m = None if mask is None else np.asarray(mask, dtype=bool)
    fixed, coef = apply_gauge(u, target, x, y, gauge, m)
    rng = float(target.max() - target.min())
    if rng <= 0:
        raise UserError("fit metrics: the target signal is constant; PSNR is undefined")
    h = (float(x[1] - x[0]), float(y[1] - y[0]))
    gt_grad = np.stack(sobel_gradient(target, h), axis=-1)
    gt_lap = laplacian_5pt(target, h)
    diff = fixed - target
    out: dict[str, Any] = {
        "gauge": gauge,
        "gauge_note": GAUGE_NOTES[gauge],
        "gauge_coefficients": coef,
        "data_range": rng,
        "psnr": psnr(fixed, target, rng),
        "psnr_raw": psnr(u, target, rng),
        "rel_l2": float(np.linalg.norm(diff) / np.linalg.norm(target)),
        "max_abs_error": float(np.max(np.abs(diff))),
        "psnr_gradient": psnr(np.stack(sobel_gradient(fixed, h), axis=-1), gt_grad),
        "psnr_laplacian": psnr(laplacian_5pt(fixed, h), gt_lap),
        "derivatives": DERIVATIVE_NOTE,
    }
    if network is not None:
        net_grad = np.stack([network["u_x"], network["u_y"]], axis=-1)
        out["psnr_gradient_network"] = psnr(net_grad, gt_grad)
        out["psnr_laplacian_network"] = psnr(network["lap_u"], gt_lap)
    if m is not None:
        out["observed_fraction"] = float(m.mean())
        out["psnr_observed"] = psnr(fixed[m], target[m], rng)
        out["psnr_heldout"] = psnr(fixed[~m], target[~m], rng) if (~m).any() else None
    return out


def plot_fit_comparison(
    x: np.ndarray,
    y: np.ndarray,
    target: np.ndarray,
    recon: np.ndarray,
    path: Path,
    title: str = "",
    mask: np.ndarray | None = None,
) -> None:
    """Target | reconstruction | error maps (grey scale on the target's range), written to PNG."""
    plt = plots.plt
    lo, hi = float(target.min()), float(target.max())
    err = recon - target
    emax = float(np.max(np.abs(err))) or 1.0
    extent = [x[0], x[-1], y[0], y[-1]]
    fig, axs = plt.subplots(1, 3, figsize=(12.5, 4.0), constrained_layout=True)
    panels = (
        ("target", target, "gray", lo, hi),
        ("reconstruction", recon, "gray", lo, hi),
        ("error", err, "RdBu_r", -emax, emax),
    )
    for ax, (label, values, cmap, vmin, vmax) in zip(axs, panels):
        im = ax.imshow(
            values.T, origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal"
        )
        if mask is not None and label != "target" and not mask.all():
            ax.contour(x, y, mask.T.astype(float), levels=[0.5], colors="orange", linewidths=0.6)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    plots._save(fig, path)


def solution_metrics(name: str, solution: GridData) -> dict[str, Any]:
    """``metrics.json`` of a fit run from its ``solution.h5`` alone (module docstring)."""
    for field in ("u", "target"):
        if field not in solution.fields:
            raise UserError(f"{name}: the solution has no field {field!r} (not a fit solution)")
    x, y = solution.grid["x"], solution.grid["y"]
    f = solution.fields
    network = {k: f[k] for k in ("u_x", "u_y", "lap_u")} if "lap_u" in f else None
    metrics: dict[str, Any] = {
        "problem": name,
        "kind": "fit",
        "supervision": solution.attrs.get("supervision"),
        "grid": [len(x), len(y)],
    }
    gauge = gauge_of_solution(solution)
    mask = mask_of_solution(solution)
    metrics.update(fit_metrics(f["u"], f["target"], x, y, gauge=gauge, mask=mask, network=network))
    return metrics


def gauge_of_solution(solution: GridData) -> str:
    return str(solution.attrs.get("gauge") or "none")


def mask_of_solution(solution: GridData) -> np.ndarray | None:
    return solution.fields["mask"] > 0.5 if "mask" in solution.fields else None


def plot_solution(name: str, solution: GridData, metrics: dict[str, Any], path: Path) -> None:
    """``comparison.png`` of a fit run: target | gauge-fixed reconstruction | error."""
    f, gauge, mask = solution.fields, gauge_of_solution(solution), mask_of_solution(solution)
    x, y = solution.grid["x"], solution.grid["y"]
    fixed, _ = apply_gauge(f["u"], f["target"], x, y, gauge, mask)
    title = f"{name}: PSNR {metrics['psnr']:.2f} dB (gauge {gauge})"
    if mask is not None and metrics.get("psnr_heldout") is not None:
        title += f", held-out {metrics['psnr_heldout']:.2f} dB"
    plot_fit_comparison(x, y, f["target"], fixed, path, title=title, mask=mask)
