"""Matplotlib figures: solution maps, wave time strips, loss curves, PINN | reference | error.

All figures are written with the non-interactive Agg backend, atomically, as PNG.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pinnsiren.output.gridfile import GridData, atomic_path  # noqa: E402


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def _image(
    ax,
    values: np.ndarray,
    grid: dict[str, np.ndarray],
    axes: Sequence[str],
    title: str,
    cmap: str = "RdBu_r",
    symmetric: bool = True,
) -> None:
    a0, a1 = axes
    extent = [grid[a0][0], grid[a0][-1], grid[a1][0], grid[a1][-1]]
    vmax = float(np.max(np.abs(values))) or 1.0
    kw = {"vmin": -vmax, "vmax": vmax} if symmetric else {}
    im = ax.imshow(values.T, origin="lower", extent=extent, cmap=cmap, aspect="equal", **kw)
    ax.set_xlabel(a0)
    ax.set_ylabel(a1)
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _panels(data: GridData, name: str) -> list[tuple[str, np.ndarray, tuple[str, ...]]]:
    """(label, values, axes) panels of a field: real/imag parts; one per snapshot in time."""
    if f"{name}_real" in data.fields:
        axes = data.axes[f"{name}_real"]
        re, im = data.fields[f"{name}_real"], data.fields[f"{name}_imag"]
        if axes[0] == "source":  # one panel (real part) per source, at most six
            return [(f"Re {name}, source {k}", re[k], axes[1:]) for k in range(min(len(re), 6))]
        return [(f"Re {name}", re, axes), (f"Im {name}", im, axes)]
    values, axes = data.fields[name], data.axes[name]
    if axes and axes[0] == "t" and len(axes) == 3:
        return [(f"{name}, t={t:.3g}", values[i], axes[1:]) for i, t in enumerate(data.grid["t"])]
    return [(name, values, axes)]


def plot_field(data: GridData, name: str, path: Path, title: str = "") -> None:
    """Maps of one field (a strip over time for a 2-D wave; curves for 1-D data)."""
    panels = _panels(data, name)
    fig, axs = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 3.3), squeeze=False, layout="constrained"
    )
    for ax, (label, values, axes) in zip(axs[0], panels):
        if len(axes) == 1:
            ax.plot(data.grid[axes[0]], values)
            ax.set_xlabel(axes[0])
            ax.set_title(label, fontsize=9)
        elif axes == ("t", "x"):
            _image(ax, values.T, data.grid, ("x", "t"), label)
        else:
            _image(ax, values, data.grid, axes, label)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_history(history_csv: Path, path: Path) -> None:
    """Unweighted loss of every term against the step (log scale)."""
    with open(history_csv) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    steps = np.array([float(r["step"]) for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key in rows[0]:
        if key in ("step", "phase", "lr") or key.startswith("balance_"):
            continue
        ax.semilogy(
            steps,
            [max(float(r[key]), 1e-300) for r in rows],
            label=key,
            lw=1.6 if key == "total" else 1.0,
        )
    ax.set_xlabel("step")
    ax.set_ylabel("mean squared residual")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_comparison(
    solution: GridData,
    reference: GridData,
    path: Path,
    title: str = "",
    name: str = "u",
    ref_label: str = "reference",
) -> None:
    """Rows of PINN | reference | error panels for each part/snapshot of a field."""
    sol, ref = _panels(solution, name), _panels(reference, name)
    fig, axs = plt.subplots(
        len(sol), 3, figsize=(11, 3.3 * len(sol)), squeeze=False, layout="constrained"
    )
    for row, ((label, u, axes), (_, r, _)) in enumerate(zip(sol, ref)):
        if len(axes) == 1:
            x = solution.grid[axes[0]]
            axs[row, 0].plot(x, u)
            axs[row, 1].plot(x, r)
            axs[row, 2].plot(x, u - r)
            for ax, t in zip(axs[row], ("PINN", ref_label, "error")):
                ax.set_title(f"{label}: {t}", fontsize=9)
            continue
        if axes == ("t", "x"):
            u, r, axes = u.T, r.T, ("x", "t")
        _image(axs[row, 0], u, solution.grid, axes, f"{label}: PINN")
        _image(axs[row, 1], r, solution.grid, axes, f"{label}: {ref_label}")
        _image(axs[row, 2], u - r, solution.grid, axes, f"{label}: error")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_velocity(
    data: GridData,
    path: Path,
    title: str = "",
    columns: Sequence[tuple[str, str]] = (("velocity", "recovered"),),
) -> None:
    """True | recovered (| more models) | error maps of velocity fields on one grid."""
    cols: list[tuple[str, np.ndarray, str]] = []
    true = data.fields.get("true_velocity")
    if true is not None:
        cols.append(("true", true, "viridis"))
    for name, label in columns:
        if name in data.fields:
            cols.append((label, data.fields[name], "viridis"))
            if true is not None:
                cols.append((f"{label} - true", data.fields[name] - true, "RdBu_r"))
    fig, axs = plt.subplots(
        1, len(cols), figsize=(3.8 * len(cols), 3.4), squeeze=False, layout="constrained"
    )
    lo = min(float(v.min()) for _, v, c in cols if c == "viridis")
    hi = max(float(v.max()) for _, v, c in cols if c == "viridis")
    for ax, (label, values, cmap) in zip(axs[0], cols):
        if cmap == "viridis":
            extent = [data.grid["x"][0], data.grid["x"][-1], data.grid["y"][0], data.grid["y"][-1]]
            im = ax.imshow(values.T, origin="lower", extent=extent, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(f"c: {label}", fontsize=9)
            plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        else:
            _image(ax, values, data.grid, ("x", "y"), label)
    if title:
        fig.suptitle(title)
    _save(fig, path)
