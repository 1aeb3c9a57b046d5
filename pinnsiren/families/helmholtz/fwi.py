"""Classical adjoint-state FWI for an inversion problem, and velocity metrics.

``inversion_reference`` runs :func:`reference_solvers.fwi.invert` (L-BFGS-B on the squared
slowness with the problem's velocity bounds, starting from ``pde.velocity.initial``, the
PML cells held at the starting model) on the evaluation grid with the same sources,
receivers and data as the PINN. ``inversion_metrics`` measures both recovered models
against the true one over the region enclosed by the sources and receivers:

    velocity_rel_l2 = ‖c − c_true‖₂ / ‖c_true‖₂

and reports c at the centre of the strongest true anomaly (the node nearest the centroid of
the nodes where |c_true − background| is within 1 % of its maximum: the centre of a flat
disk, the peak of a smooth inclusion) and the relative data misfit ‖Pu − d‖/‖d‖ of each.

The PINN's own ``data_misfit`` uses its wavefield network, which satisfies the PDE only in
the least-squares sense and can fit the data better than its velocity explains them.
``data_misfit_fd`` therefore also solves the FD Helmholtz equation (the FWI forward model,
same grid and PML) with the PINN's velocity and measures that field's misfit; with a true
model, ``true_velocity_data_misfit_fd`` does the same for it: the noise floor of the data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pinnsiren.families.base import eval_grid, grid_data, mesh_of
from pinnsiren.families.helmholtz.inversion import background_of, true_velocity_on
from pinnsiren.families.helmholtz.operator import AXES, pml_of, source_densities
from pinnsiren.families.helmholtz.receivers import ReceiverData, enclosed_region, receiver_data
from pinnsiren.families.metrics import region_mask
from pinnsiren.output import plots
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.fwi import invert, predict_data


def inversion_reference(spec: ProblemBase) -> GridData:
    data = receiver_data(spec)
    grid = eval_grid(spec)
    x, y = grid["x"], grid["y"]
    rhs = source_densities(x, y, data.sources)
    vel = spec.pde.velocity
    c0 = np.broadcast_to(np.asarray(vel.initial(mesh_of(grid)), dtype=float), (len(x), len(y)))
    result = invert(
        x,
        y,
        spec.pde.omega,
        rhs,
        data.receivers,
        data.values,
        bounds=tuple(vel.bounds),
        c0=c0,
        pml=pml_of(spec),
        iterations=spec.reference.iterations,
        tv=spec.reference.tv,
        multiscale=tuple(spec.reference.multiscale),
    )
    out = grid_data(spec, "fwi")
    out.add("velocity", result.velocity, AXES)
    true = true_velocity_on(spec, grid)
    if true is not None:
        out.add("true_velocity", true, AXES)
    out.attrs["data_misfit"] = float(result.history[-1])
    out.attrs["iterations"] = int(result.iterations)
    out.attrs["fwi_seconds"] = float(result.seconds)
    return out


def fd_data_misfit(
    spec: ProblemBase, data: ReceiverData, grid: dict[str, np.ndarray], velocity: np.ndarray
) -> float:
    """‖P u(c) − d‖/‖d‖ with u(c) the FD solution for ``velocity`` on ``grid`` (all sources)."""
    x, y = grid["x"], grid["y"]
    rhs = source_densities(x, y, data.sources)
    pred = predict_data(x, y, spec.pde.omega, velocity, rhs, data.receivers, pml=pml_of(spec))
    return float(np.linalg.norm(pred - data.values) / np.linalg.norm(data.values))


def velocity_scores(
    c: np.ndarray, true: np.ndarray | None, mask: np.ndarray, center: tuple[int, int] | None
) -> dict[str, Any]:
    """velocity_rel_l2 of ``c`` against ``true`` over ``mask``, and both at ``center`` (grid
    indices) when given; nothing without a true velocity."""
    if true is None:
        return {}
    out = {"velocity_rel_l2": float(np.linalg.norm((c - true)[mask]) / np.linalg.norm(true[mask]))}
    if center is not None:
        out["velocity_at_anomaly_center"] = float(c[center])
        out["true_velocity_at_anomaly_center"] = float(true[center])
    return out


def inversion_metrics(spec: ProblemBase, solution: GridData, reference: GridData) -> dict:
    """PINN and classical FWI velocity errors (see module docstring)."""
    data = receiver_data(spec)
    region = enclosed_region(data).as_dict()
    mask = region_mask(solution.grid, AXES, region)
    true = solution.fields.get("true_velocity")
    center = None
    if true is not None:
        background = background_of(spec)
        weight = np.where(mask, np.abs(true - background), 0.0)
        # the strongest anomaly: centroid of the nodes within 1 % of the largest |Δc|
        weight = np.where(weight >= 0.99 * weight.max(), weight, 0.0)
        if weight.sum() > 0:
            X, Y = np.meshgrid(solution.grid["x"], solution.grid["y"], indexing="ij")
            cx, cy = (X * weight).sum() / weight.sum(), (Y * weight).sum() / weight.sum()
            center = (
                int(np.argmin(np.abs(solution.grid["x"] - cx))),
                int(np.argmin(np.abs(solution.grid["y"] - cy))),
            )
    metrics: dict[str, Any] = {
        "problem": spec.name,
        "region": {k: list(v) for k, v in region.items()},
        "data_misfit": solution.attrs.get("data_misfit"),
        "fwi_data_misfit": reference.attrs.get("data_misfit"),
        "fwi_iterations": reference.attrs.get("iterations"),
        "fwi_seconds": reference.attrs.get("fwi_seconds"),
    }
    if center is not None:
        metrics["anomaly_center"] = [
            float(solution.grid["x"][center[0]]),
            float(solution.grid["y"][center[1]]),
        ]
    velocity = solution.fields["velocity"]
    metrics["data_misfit_fd"] = fd_data_misfit(spec, data, solution.grid, velocity)
    if true is not None:
        metrics["true_velocity_data_misfit_fd"] = fd_data_misfit(spec, data, solution.grid, true)
    metrics.update(velocity_scores(velocity, true, mask, center))
    fwi = {
        f"fwi_{k}": v
        for k, v in velocity_scores(reference.fields["velocity"], true, mask, center).items()
    }
    fwi.pop("fwi_true_velocity_at_anomaly_center", None)
    metrics.update(fwi)
    return metrics


def plot_inversion(
    solution: GridData, reference: GridData, path, title: str, label: str = "PINN"
) -> None:
    """True | recovered | recovered − true | FWI | FWI − true velocity maps (``label``
    names the recovered model's method)."""
    both = GridData(grid=solution.grid)
    for name in ("true_velocity", "velocity"):
        if name in solution.fields:
            both.add(name, solution.fields[name], AXES)
    both.add("fwi_velocity", reference.fields["velocity"], AXES)
    plots.plot_velocity(
        both, path, title=title, columns=(("velocity", label), ("fwi_velocity", "FWI"))
    )
