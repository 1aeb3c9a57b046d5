"""Forward Helmholtz problems: a known velocity c(x), sources and/or a right-hand side.

The network has two outputs (Re u, Im u). Loss terms: the PDE terms of
:func:`~pinnsiren.families.helmholtz.operator.pde_terms` and, with Dirichlet or Neumann walls
(no PML), the ``boundary`` term of :mod:`pinnsiren.families.walls`.

Near-field subtraction (``pde.near_field``, total field): u = χ u₀ + v with χ a radial cutoff
around each source (:func:`~pinnsiren.families.helmholtz.incident.near_field`); the network
learns v, whose forcing Σ_s (C f_s − L[χ u₀_s]) vanishes where χ = 1 and is smooth elsewhere.

Inclusion features (``model.inclusion``, a velocity given as a disk or box shape): the field
network is a :class:`~pinnsiren.engine.regions.RegionSum` whose second feature set lives only
inside the shape, so the field's second derivatives may jump across its boundary Γ like those
of the true solution; the ``interface`` term holds u and ∂ₙu continuous there,
r = (ω² [u], ω [∂ₙu]) (scaled like the PDE residual ~ ω² u).

The FD reference samples the velocity as 1/c² averaged over each node's cell (16 × 16
sub-samples where the cell meets a jump), which keeps the five-point solve second order
across an interface (node values make it first order).

Scattered-field formulation (``pde.formulation: scattered``, background velocity c₀ =
``pde.background``, c = c₀ inside the PML): u = u₀ + v with u₀ = Σ_s u₀_s the analytic
free-space field of the sources in c₀ (:mod:`pinnsiren.families.helmholtz.incident`).
Subtracting (Δ + ω²/c₀²) u₀ = Σ_s f_s leaves the same operator acting on v with the smooth
right-hand side

    f_scat = ω² (1/c₀² − 1/c²) u₀ (+ ``pde.rhs``),

which is zero wherever c = c₀ (so u₀ is never needed in the PML, where it would have to be
continued to complex coordinates). The network learns v; there is no ``source`` term, and the
solution written is u₀ + v.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.engine.jets import DerivativeRequest, Jet
from pinnsiren.engine.nets import Siren
from pinnsiren.engine.regions import BoxRegion, Disk, RegionSum
from pinnsiren.engine.terms import Batch, LinearTerm, identity_network
from pinnsiren.errors import UserError
from pinnsiren.families.base import (
    CompiledProblem,
    coarsen,
    coords_of,
    grid_data,
    grid_points,
    mesh_of,
    on_grid,
    predict,
    reference_space,
    spanning,
)
from pinnsiren.families.helmholtz.incident import incident_field, near_field
from pinnsiren.families.helmholtz.operator import (
    AXES,
    complex_field,
    pairs,
    pde_terms,
    pml_coefficients,
    pml_of,
    source_density,
)
from pinnsiren.families.walls import fd_walls, wall_term
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.fields import Disk as DiskField
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase
from reference_solvers.helmholtz import solve_helmholtz, solve_helmholtz_walls


def source_velocity(spec: ProblemBase) -> float:
    """c₀ of the near-field subtraction: the velocity at the first source."""
    s = spec.pde.sources[0]
    at = {"x": np.array([s.position[0]]), "y": np.array([s.position[1]])}
    return float(np.asarray(spec.pde.velocity(at), dtype=float).ravel()[0])


def incident(spec: ProblemBase, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What the solution adds to the network's field at points (complex): Σ_s u₀_s for the
    scattered formulation, the near field χ u₀ with ``near_field``, else zero."""
    pde = spec.pde
    if pde.near_field is not None:
        nf = pde.near_field
        c0 = source_velocity(spec)
        return near_field(x, y, pde.sources, pde.omega, c0, nf.inner, nf.outer)[0]
    if pde.formulation != "scattered" or not pde.sources:
        return np.zeros(np.broadcast(x, y).shape, dtype=complex)
    return incident_field(x, y, pde.sources, pde.omega, pde.background).sum(axis=0)


def forcing(spec: ProblemBase, x: np.ndarray, y: np.ndarray, co: dict, k2: np.ndarray):
    """The right-hand side g of L v = g for the network's field v at points (complex):
    C (Σ_s f_s + ``pde.rhs``) for the total field; the near-field forcing plus C ``rhs`` with
    ``near_field``; C ω² (1/c₀² − 1/c²) u₀ + C ``rhs`` for the scattered field."""
    pde = spec.pde
    extra = co["C"] * complex_field(pde.rhs, {"x": x, "y": y})
    if pde.near_field is not None:
        nf = pde.near_field
        c0 = source_velocity(spec)
        args = (x, y, pde.sources, pde.omega, c0, nf.inner, nf.outer, co, k2)
        return near_field(*args)[1] + extra
    if pde.formulation == "scattered":
        scattering = (pde.omega**2 / pde.background**2 - k2) * incident(spec, x, y)
        return co["C"] * scattering + extra
    return co["C"] * source_density(x, y, pde.sources) + extra


def compile_forward(spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
    pde = spec.pde
    omega = pde.omega

    def batch_at(points: Tensor) -> Batch:
        x, y = points[:, 0].numpy(), points[:, 1].numpy()
        co = pml_coefficients(x, y, spec, omega)
        k2 = omega**2 / np.asarray(pde.velocity(coords_of(points, AXES)), dtype=float) ** 2
        batch = {"x": points, **{k: pairs(v) for k, v in co.items()}}
        batch["Ck2"] = pairs(co["C"] * k2)
        batch["g"] = pairs(forcing(spec, x, y, co, k2))
        return batch

    total = pde.formulation == "total" and bool(pde.sources) and pde.near_field is None
    terms = pde_terms(spec, gen, batch_at, pde.sources, with_source_term=total)
    if spec.boundary.kind in ("dirichlet", "neumann"):
        terms.append(wall_term(spec, gen, Box.from_domain(spec.domain, AXES), channels=2))
    assemble, composite = identity_network, False
    if spec.model.inclusion is not None:
        terms.append(interface_term(spec, gen))
        assemble, composite = (lambda net: inclusion_network(spec, net)), True

    def evaluate(model: nn.Module) -> GridData:
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        pts = grid_points(data.grid, AXES)
        out = predict(model, pts)
        u = out[:, 0] + 1j * out[:, 1] + incident(spec, pts[:, 0], pts[:, 1])
        data.add("u", u.reshape(shape), AXES)
        return data

    return CompiledProblem(
        spec, AXES, 2, terms, evaluate, group=2, assemble=assemble, composite=composite
    )


def region_of(spec: ProblemBase) -> nn.Module:
    """The inclusion of a disk- or box-shaped velocity as a region mask."""
    shape = spec.pde.velocity
    if isinstance(shape, DiskField):
        return Disk(shape.center, shape.radius)
    return BoxRegion(shape.box.lower, shape.box.upper)


def inclusion_network(spec: ProblemBase, outer: nn.Module) -> RegionSum:
    """The ``model`` network plus ``model.inclusion``'s features inside the velocity's shape."""
    inc = spec.model.inclusion
    inner = Siren(2, 2, width=inc.width, depth=0, omega_0=inc.omega_0).to(outer.last.weight)
    return RegionSum(outer, inner, region_of(spec), 2).to(outer.last.weight)


def interface_term(spec: ProblemBase, gen: torch.Generator) -> LinearTerm:
    """Continuity of u and ∂ₙu across the inclusion's boundary: rows of the jump network."""
    shape, omega = spec.pde.velocity, spec.pde.omega

    def sample(step: int, n: int) -> Batch:
        if isinstance(shape, DiskField):
            angle = 2 * np.pi * torch.rand(n, generator=gen, dtype=torch.float64)
            normal = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
            points = torch.tensor(shape.center, dtype=torch.float64) + shape.radius * normal
        else:
            points, normal, _ = shape.box.on_faces(n, gen)
        return {"x": points, "n": normal}

    def jumps(j: Jet, b: Batch) -> Tensor:
        flux = j.gradient[0] * b["n"][:, :1] + j.gradient[1] * b["n"][:, 1:2]
        return torch.cat([omega**2 * j.value, omega * flux], dim=1)

    return LinearTerm(
        name="interface",
        weight=spec.weight("interface"),
        sampler=sample,
        points=spec.points("interface", 800),
        request=DerivativeRequest(gradient=(0, 1)),
        operator=jumps,
        target=lambda b: torch.zeros(len(b["x"]), 4, dtype=b["x"].dtype, device=b["x"].device),
        network=lambda model: model.jump(),
        complex_pairs=True,
    )


def cell_slowness_velocity(spec: ProblemBase, space: dict[str, np.ndarray]) -> np.ndarray:
    """c at the FD nodes with 1/c² averaged over each node's cell where c jumps nearby (see
    the module docstring)."""
    c = on_grid(spec, spec.pde.velocity, space)
    jump = np.zeros(c.shape, dtype=bool)
    for axis in (0, 1):
        step = np.diff(c, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        jump[tuple(lo)] |= step
        jump[tuple(hi)] |= step
    if not jump.any():
        return c
    x, y = space["x"], space["y"]
    hx, hy = x[1] - x[0], y[1] - y[0]
    ix, iy = np.nonzero(jump)
    offsets = (np.arange(16) + 0.5) / 16 - 0.5
    sx = x[ix, None, None] + hx * offsets[None, :, None]
    sy = y[iy, None, None] + hy * offsets[None, None, :]
    sx, sy = np.broadcast_arrays(sx, sy)
    sub = np.asarray(spec.pde.velocity({"x": sx, "y": sy}), dtype=float)
    c[ix, iy] = 1.0 / np.sqrt(np.mean(1.0 / np.broadcast_to(sub, sx.shape) ** 2, axis=(1, 2)))
    return c


def forward_reference(spec: ProblemBase) -> GridData:
    """The FD solution (five-point stencil, the same PML) on the evaluation grid."""
    pde = spec.pde
    grid, space, r = reference_space(spec)
    x, y = space["x"], space["y"]
    velocity = cell_slowness_velocity(spec, space)
    if np.any(velocity <= 0):
        raise UserError(f"{spec.name}: pde.velocity must be positive everywhere")
    mesh = mesh_of(space)
    rhs = source_density(mesh["x"], mesh["y"], pde.sources) + complex_field(pde.rhs, mesh)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if spec.boundary.kind == "pml":
            u = solve_helmholtz(x, y, pde.omega, velocity, rhs, pml_of(spec))
        else:
            spanning(spec, space)
            u = solve_helmholtz_walls(x, y, pde.omega, velocity, rhs, fd_walls(spec, space))
    for w in caught:
        print(f"pinnsiren: warning: {w.message}")
    data = grid_data(spec, "fd")
    data.add("u", coarsen(u, r), AXES)
    data.add("velocity", coarsen(velocity, r), AXES)
    if pde.exact is not None:
        data.add("exact", complex_field(pde.exact, mesh_of(grid)), AXES)
    return data
