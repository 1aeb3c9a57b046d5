"""Helmholtz family: (Δ + ω²/c(x)²) u = f on a 2-D box, complex u, time convention e^{+iωt}.

The right-hand side is f = Σ_s a_s g_σ(x − x_s) with g_σ the normalised Gaussian
exp(−|r|²/2σ²)/(2πσ²) (several forward sources superpose into one field).
With a PML the coordinates are stretched by e_j(x_j) = 1 − iσ_j(x_j)/ω, using the profile
of :func:`reference_solvers.helmholtz.pml_profile` (the FD reference solves the same
equation), and the residual is written in divergence form

    r = ∂x(A ∂x u) + ∂y(B ∂y u) + C (ω²/c²) u − C f,
    A = e_y/e_x, B = e_x/e_y, C = e_x e_y,

expanded with the product rule: ∂x(A u_x) = A u_xx + A_x u_x with A_x = −e_y e_x'/e_x²,
e_x' = −iσ_x'/ω (and likewise for B). The network has two outputs (Re u, Im u) and all
complex arithmetic is done on real pairs.

Loss terms: ``residual`` at points uniform over the whole box (PML included),
``interior`` (when ``sampling.points.interior`` > 0) the same residual at points uniform in the
physical region inside the PML, where the solution is wanted, and ``source``, the residual at
points drawn from N(x_s, (2σ)²) around each source, where f is large.

Scattered-field formulation (``pde.formulation: scattered``, background velocity c₀ =
``pde.background``, c = c₀ inside the PML): u = u₀ + v with u₀ = Σ_s u₀_s the analytic
free-space field of the sources in c₀ (:mod:`pinnsiren.incident`). Subtracting
(Δ + ω²/c₀²) u₀ = f leaves the same operator acting on v with the smooth right-hand side

    f_scat = ω² (1/c₀² − 1/c²) u₀,

which is zero wherever c = c₀ (so u₀ is never needed in the PML, where it would have to be
continued to complex coordinates). The network learns v; there is no ``source`` term, and the
solution written is u₀ + v.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.geometry import Box, gaussian_points
from pinnsiren.incident import incident_field
from pinnsiren.jets import DerivativeRequest, jet
from pinnsiren.pdes.base import (
    Batch,
    CompiledProblem,
    Term,
    coords_of,
    grid_data,
    grid_points,
    predict,
)
from pinnsiren.spec import HelmholtzPDE, ProblemSpec
from reference_solvers.helmholtz import PML, pml_profile


def pml_of(spec: ProblemSpec) -> PML | None:
    if spec.boundary.kind != "pml":
        return None
    return PML(width=spec.boundary.width, a0=spec.boundary.strength)


def source_density(x: np.ndarray, y: np.ndarray, sources) -> np.ndarray:
    """f(x, y) = Σ_s a_s exp(−|r − r_s|²/2σ_s²)/(2πσ_s²), complex."""
    f = np.zeros(np.broadcast(x, y).shape, dtype=complex)
    for s in sources:
        r2 = (x - s.position[0]) ** 2 + (y - s.position[1]) ** 2
        f += s.amplitude * np.exp(-r2 / (2 * s.sigma**2)) / (2 * math.pi * s.sigma**2)
    return f


def source_densities(x: np.ndarray, y: np.ndarray, sources) -> np.ndarray:
    """Each source's own density f_s on the grid x × y: complex (S, nx, ny)."""
    X, Y = np.meshgrid(x, y, indexing="ij")
    return np.stack([source_density(X, Y, [s]) for s in sources])


def physical_box(spec: ProblemSpec) -> Box:
    """The box inside the PML's inner edge (the whole domain without a PML)."""
    box = Box.from_domain(spec.domain, ("x", "y"))
    if spec.boundary.kind != "pml":
        return box
    w = spec.boundary.width
    return Box(box.axes, tuple(lo + w for lo in box.lower), tuple(hi - w for hi in box.upper))


def interior_terms(
    spec: ProblemSpec,
    gen: torch.Generator,
    batch_at: Callable[[Tensor], Batch],
    residual: Callable[[nn.Module, Batch], Tensor],
) -> list[Term]:
    """The ``interior`` term: the residual at ``sampling.points.interior`` points uniform in
    :func:`physical_box` (none when that count is 0), weighted like ``residual`` by default."""
    n_interior = spec.points("interior", 0)
    if n_interior <= 0:
        return []
    inner = physical_box(spec)
    return [
        Term(
            "interior",
            spec.weight("interior", spec.weight("residual")),
            lambda step: batch_at(inner.uniform(n_interior, gen)),
            residual,
            follows=None if "interior" in spec.loss.weights else "residual",
        )
    ]


def pml_coefficients(
    x: np.ndarray, y: np.ndarray, spec: ProblemSpec, omega: float
) -> dict[str, np.ndarray]:
    """Complex A, A_x, B, B_y, C of the divergence-form operator at points (x, y)."""
    pml = pml_of(spec)
    (xl, xh), (yl, yh) = spec.domain["x"], spec.domain["y"]
    sx, dsx = pml_profile(x, xl, xh, pml, omega)
    sy, dsy = pml_profile(y, yl, yh, pml, omega)
    ex, ey = 1 - 1j * sx / omega, 1 - 1j * sy / omega
    dex, dey = -1j * dsx / omega, -1j * dsy / omega
    return {
        "A": ey / ex,
        "Ax": -ey * dex / ex**2,
        "B": ex / ey,
        "By": -ex * dey / ey**2,
        "C": ex * ey,
    }


def pairs(z: np.ndarray) -> Tensor:
    """Complex array → real tensor (..., 2) of (Re, Im)."""
    return torch.as_tensor(np.stack([z.real, z.imag], axis=-1), dtype=torch.float64)


def cmul(a: Tensor, u: Tensor) -> Tensor:
    """Product of complex numbers stored as real pairs (..., 2)."""
    ar, ai = a[..., 0:1], a[..., 1:2]
    ur, ui = u[..., 0::2], u[..., 1::2]
    out = torch.stack([ar * ur - ai * ui, ar * ui + ai * ur], dim=-1)
    return out.flatten(-2)


HELMHOLTZ_REQUEST = DerivativeRequest(gradient=(0, 1), second=(0, 1))


def helmholtz_batch(
    points: Tensor,
    spec: ProblemSpec,
    omega: float,
    slowness2: np.ndarray | None,
    sources,
    *,
    separate: bool = False,
    rhs: np.ndarray | None = None,
) -> Batch:
    """Points plus the operator's coefficients at them (float64, CPU).

    ``Cf`` is C·Σ_s f_s as one pair (N, 2), or with ``separate`` C·f_s for every source
    (N, 2·S), one experiment per source as in an inversion. ``rhs`` (complex, (N,) or
    (N, S)) replaces the source densities f, e.g. by the scattering source of the
    scattered-field formulation.
    """
    x, y = points[:, 0].numpy(), points[:, 1].numpy()
    co = pml_coefficients(x, y, spec, omega)
    batch = {"x": points, **{k: pairs(v) for k, v in co.items()}}
    if rhs is not None:
        f = np.asarray(rhs)
    elif separate:
        f = np.stack([source_density(x, y, [s]) for s in sources], axis=1)
    else:
        f = source_density(x, y, sources)
    cf = co["C"][:, None] * f if f.ndim == 2 else co["C"] * f
    batch["Cf"] = pairs(cf).flatten(1)  # (N, S, 2) → (N, 2·S); (N, 2) stays
    if slowness2 is not None:
        batch["Ck2"] = pairs(co["C"] * omega**2 * slowness2)
    return batch


def apply_operator(
    batch: Batch, u: Tensor, ux: Tensor, uy: Tensor, uxx: Tensor, uyy: Tensor, ck2: Tensor
) -> Tensor:
    """A u_xx + A_x u_x + B u_yy + B_y u_y + (C k²) u on real pairs (N, 2·S)."""
    return (
        cmul(batch["A"], uxx)
        + cmul(batch["Ax"], ux)
        + cmul(batch["B"], uyy)
        + cmul(batch["By"], uy)
        + cmul(ck2, u)
    )


def helmholtz_residual(model: nn.Module, batch: Batch, k2: Tensor | None = None) -> Tensor:
    """r = A u_xx + A_x u_x + B u_yy + B_y u_y + C k² u − C f, as real pairs (N, 2·S).

    ``k2`` (N, 1) replaces the batch's fixed ω²/c² when the velocity is itself unknown.
    The right-hand side ``Cf`` is (N, 2) (shared by every channel pair) or (N, 2·S).
    """
    j = jet(model, batch["x"], HELMHOLTZ_REQUEST)
    ck2 = batch["Ck2"] if k2 is None else batch["C"] * k2
    r = apply_operator(batch, j.value, j.gradient[0], j.gradient[1], j.second[0], j.second[1], ck2)
    cf = batch["Cf"]
    return r - (cf.repeat(1, r.shape[1] // 2) if cf.shape[1] == 2 else cf)


def compile_helmholtz(spec: ProblemSpec, gen: torch.Generator) -> CompiledProblem:
    pde = spec.pde
    assert isinstance(pde, HelmholtzPDE)
    axes = ("x", "y")
    box = Box.from_domain(spec.domain, axes)
    omega = pde.omega
    n_res = spec.points("residual", 4096)
    n_src = spec.points("source", 1024)
    velocity = pde.velocity
    scattered = pde.formulation == "scattered"
    c0 = pde.background or 1.0

    def incident(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Σ_s u₀_s at points (complex), zero for the total-field formulation."""
        if not scattered:
            return np.zeros(np.broadcast(x, y).shape, dtype=complex)
        return incident_field(x, y, pde.sources, omega, c0).sum(axis=0)

    def batch_at(points: Tensor) -> Batch:
        s2 = 1.0 / np.asarray(velocity(coords_of(points, axes)), dtype=float) ** 2
        f_scat = None
        if scattered:
            x, y = points[:, 0].numpy(), points[:, 1].numpy()
            f_scat = omega**2 * (1 / c0**2 - s2) * incident(x, y)
        return helmholtz_batch(points, spec, omega, s2, pde.sources, rhs=f_scat)

    def sample_residual(step: int) -> Batch:
        return batch_at(box.uniform(n_res, gen))

    def sample_source(step: int) -> Batch:
        per = max(1, n_src // len(pde.sources))
        pts = [gaussian_points(per, s.position, 2 * s.sigma, gen, box) for s in pde.sources]
        return batch_at(torch.cat(pts))

    terms = [Term("residual", spec.weight("residual"), sample_residual, helmholtz_residual)]
    terms += interior_terms(spec, gen, batch_at, helmholtz_residual)
    if not scattered:
        terms.append(Term("source", spec.weight("source"), sample_source, helmholtz_residual))

    def evaluate(model: nn.Module):
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        pts = grid_points(data.grid, axes)
        out = predict(model, pts)
        u = out[:, 0] + 1j * out[:, 1] + incident(pts[:, 0], pts[:, 1])
        data.add("u", u.reshape(shape), axes)
        return data

    return CompiledProblem(spec, axes, 2, terms, evaluate)
