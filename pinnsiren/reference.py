"""Finite-difference reference of a problem on its evaluation grid.

Samples the problem's coefficient fields on the grid (the same :class:`~pinnsiren.fields.Field`
objects the PINN evaluates) and calls :mod:`reference_solvers`. With ``reference.refine = r``
the solve runs on a grid r times finer (``(n − 1)·r + 1`` nodes per axis) and is sampled back
onto the evaluation nodes, which must then be uniform.
"""

from __future__ import annotations

import warnings

import numpy as np

from pinnsiren.errors import UserError
from pinnsiren.geometry import Box
from pinnsiren.io import GridData
from pinnsiren.pdes.base import eval_grid, grid_data
from pinnsiren.pdes.poisson import exact_solution, face_conditions
from pinnsiren.spec import HelmholtzPDE, PoissonPDE, ProblemSpec, WavePDE
from reference_solvers.helmholtz import solve_helmholtz
from reference_solvers.poisson import FaceCondition, solve_poisson
from reference_solvers.wave import solve_wave


def _refined(nodes: np.ndarray, r: int, axis: str) -> np.ndarray:
    if r == 1:
        return nodes
    steps = np.diff(nodes)
    if len(nodes) < 2 or not np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        raise UserError(f"reference.refine needs uniform evaluation nodes on axis {axis}")
    return np.linspace(nodes[0], nodes[-1], (len(nodes) - 1) * r + 1)


def _mesh(coords: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(zip(coords, np.meshgrid(*coords.values(), indexing="ij")))


def _space_grid(spec: ProblemSpec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    grid = eval_grid(spec)
    r = spec.reference.refine
    space = {a: _refined(grid[a], r, a) for a in spec.space_axes}
    return grid, space, r


def _coarsen(values: np.ndarray, r: int, lead: int = 0) -> np.ndarray:
    index = (slice(None),) * lead + (slice(None, None, r),) * (values.ndim - lead)
    return values[index]


def _on_grid(spec: ProblemSpec, f, coords: dict[str, np.ndarray]) -> np.ndarray:
    values = np.asarray(f(_mesh(coords)), dtype=float)
    if not np.all(np.isfinite(values)):
        raise UserError(f"{spec.name}: a coefficient field is NaN or infinite on the grid")
    return values


def poisson_reference(spec: ProblemSpec) -> GridData:
    pde = spec.pde
    assert isinstance(pde, PoissonPDE)
    grid, space, r = _space_grid(spec)
    box = Box.from_domain(spec.domain, spec.space_axes)
    for a in spec.space_axes:
        lo, hi = spec.domain[a]
        if not (np.isclose(space[a][0], lo) and np.isclose(space[a][-1], hi)):
            raise UserError(
                f"{spec.name}: evaluation.grid.{a} must span the domain [{lo}, {hi}] "
                "for the FD solve"
            )
    conditions = {}
    for face, (kind, field) in face_conditions(spec, box).items():
        k = spec.space_axes.index(face[0])
        face_coords = dict(space)
        face_coords[face[0]] = space[face[0]][-1:] if face[1] == "+" else space[face[0]][:1]
        value = _on_grid(spec, field, face_coords)
        conditions[face] = FaceCondition(kind, np.take(value, 0, axis=k))
    u = solve_poisson(list(space.values()), _on_grid(spec, pde.rhs, space), conditions)
    data = grid_data(spec, "fd")
    data.add("u", _coarsen(u, r), spec.space_axes)
    exact = exact_solution(spec, grid)
    if exact is not None:
        data.add("exact", exact, spec.space_axes)
    return data


def helmholtz_rhs(spec: ProblemSpec, x: np.ndarray, y: np.ndarray, sources=None) -> np.ndarray:
    """Σ_s a_s g_σ(x − x_s) on the grid (complex (nx, ny))."""
    from pinnsiren.pdes.helmholtz import source_density

    X, Y = np.meshgrid(x, y, indexing="ij")
    return source_density(X, Y, sources if sources is not None else spec.pde.sources)


def helmholtz_reference(spec: ProblemSpec) -> GridData:
    pde = spec.pde
    assert isinstance(pde, HelmholtzPDE)
    from pinnsiren.pdes.helmholtz import pml_of

    _, space, r = _space_grid(spec)
    x, y = space["x"], space["y"]
    velocity = _on_grid(spec, pde.velocity, space)
    if np.any(velocity <= 0):
        raise UserError(f"{spec.name}: pde.velocity must be positive everywhere")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        u = solve_helmholtz(x, y, pde.omega, velocity, helmholtz_rhs(spec, x, y), pml_of(spec))
    for w in caught:
        print(f"pinnsiren: warning: {w.message}")
    data = grid_data(spec, "fd")
    data.add("u", _coarsen(u, r), ("x", "y"))
    data.add("velocity", _coarsen(velocity, r), ("x", "y"))
    return data


def wave_reference(spec: ProblemSpec) -> GridData:
    pde = spec.pde
    assert isinstance(pde, WavePDE) and spec.initial is not None
    grid, space, r = _space_grid(spec)
    wall = spec.reference.wall or (
        spec.boundary.kind if spec.boundary.kind != "none" else "absorbing"
    )
    if wall == "dirichlet" and not spec.boundary.value.is_constant():
        raise UserError(f"{spec.name}: the FD wave reference supports only u = 0 walls")
    try:
        u = solve_wave(
            list(space.values()),
            _on_grid(spec, pde.speed, space),
            _on_grid(spec, spec.initial.value, space),
            _on_grid(spec, spec.initial.velocity, space),
            grid["t"],
            boundary=wall,
            dt=spec.reference.dt,
            cfl=spec.reference.cfl,
        )
    except ValueError as exc:
        raise UserError(f"{spec.name}: reference: {exc}") from None
    data = grid_data(spec, "fd")
    data.add("u", _coarsen(u, r, lead=1), tuple(data.grid))
    exact = exact_solution(spec, grid)
    if exact is not None:
        data.add("exact", exact, tuple(data.grid))
    return data


def compute_reference(spec: ProblemSpec) -> GridData:
    """The FD reference of a forward problem on its evaluation grid."""
    try:
        if spec.kind == "poisson":
            return poisson_reference(spec)
        if spec.kind == "helmholtz":
            if spec.is_inversion:
                from pinnsiren.inverse_reference import inversion_reference

                return inversion_reference(spec)
            return helmholtz_reference(spec)
        if spec.kind == "wave":
            return wave_reference(spec)
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{spec.name}: reference solver: {exc}") from None
    raise UserError(f"{spec.name}: no finite-difference reference for pde.kind {spec.kind}")
