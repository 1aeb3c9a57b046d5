"""The family interface: everything pinnsiren knows about one PDE family, in one class.

A :class:`Family` declares its YAML group (``schema``), the axes and walls it accepts, its loss
terms, and implements

* ``check(spec, fail)``: the family's rules that the per-group schema cannot express;
* ``compile(spec, gen)`` → :class:`CompiledProblem`: loss terms (sampler + residual + weight),
  the network's input axes and output channels, the read-out on the evaluation grid, and
  optional typed hooks (:class:`~pinnsiren.engine.hooks.StepHooks`), a composite model and
  extra writers;
* ``reference(spec)``: the finite-difference reference on the evaluation grid (through
  :mod:`reference_solvers`), or ``None`` when the family has none;
* ``fresh_target(spec)``: what FreSh tunes ω₀ on;
* ``metrics(spec, solution, reference)`` and ``plot_comparison(...)``: what ``compare`` reports.

Families register themselves with :func:`pinnsiren.families.registry.register`; every module
of :mod:`pinnsiren.families` is imported when the package is, so a new family is one new
module. Nothing outside a family branches on ``pde.kind``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.jets import DerivativeRequest
from pinnsiren.engine.sampling import Curriculum
from pinnsiren.engine.terms import LinearTerm, Term, identity_network
from pinnsiren.errors import UserError
from pinnsiren.families.metrics import compare_fields
from pinnsiren.output import plots
from pinnsiren.output.gridfile import GridData, ordered_grid
from pinnsiren.schema.groups import ProblemBase
from pinnsiren.schema.types import Strict

Fail = Callable[[str, str], None]
Writer = Callable[[Path, nn.Module, GridData], None]


@dataclass
class CompiledProblem:
    """The loss terms of a problem and how to read its solution off a network.

    ``group``: output channels per field (1 real, 2 complex as (Re, Im)); the least-squares
    solve treats the channels as ``out_features / group`` identical groups. ``assemble`` turns
    the ``model`` group's field network into the trained model (identity by default; a family
    may initialise it its own way, and an inversion wraps it with a velocity network:
    ``composite``, saved whole) and ``network`` finds the field network inside it again.
    """

    spec: ProblemBase
    in_axes: tuple[str, ...]
    out_features: int
    terms: list[Term]
    evaluate: Callable[[nn.Module], GridData]
    group: int = 1
    assemble: Callable[[nn.Module], nn.Module] = identity_network
    network: Callable[[nn.Module], nn.Module] = identity_network
    composite: bool = False
    #: ``tie(model)``: features whose output weights the least-squares solve ties together
    #: (see :class:`~pinnsiren.engine.lstsq.OutputLayerSolve`), or None
    tie: Callable[[nn.Module], Tensor | None] | None = None
    hooks: list[StepHooks] = field(default_factory=list)
    writers: list[Writer] = field(default_factory=list)

    @property
    def linear_terms(self) -> list[LinearTerm]:
        return [t for t in self.terms if isinstance(t, LinearTerm)]

    def to(self, device: torch.device, dtype: torch.dtype) -> CompiledProblem:
        for t in self.terms:
            t.device, t.dtype = device, dtype
        return self


class Family:
    """Base class of a PDE family (see the module docstring); class attributes declare it."""

    kind: ClassVar[str]
    schema: ClassVar[type[Strict]]
    #: loss terms (the keys of ``loss.weights``), and further ``sampling.points`` keys
    terms: ClassVar[tuple[str, ...]]
    point_keys: ClassVar[tuple[str, ...]] = ()
    #: spatial axes: (fewest, most) of x, y, z, or exactly x, y when ``planar``
    space: ClassVar[tuple[int, int]] = (1, 3)
    planar: ClassVar[bool] = False
    time_dependent: ClassVar[bool] = False
    #: ``initial`` keys the family reads (time-dependent families), and the ``pde`` keys whose
    #: fields may read t (an ``exact`` solution always may)
    initial_keys: ClassVar[tuple[str, ...]] = ()
    time_fields: ClassVar[tuple[str, ...]] = ()
    #: allowed ``boundary.kind`` values, the first one the default; per-face conditions
    boundaries: ClassVar[tuple[str, ...]] = ("none",)
    faces: ClassVar[bool] = False
    #: the family has a finite-difference reference, and the ``reference`` keys it reads
    has_reference: ClassVar[bool] = True
    reference_keys: ClassVar[tuple[str, ...]] = ("refine",)
    #: evaluation nodes per spatial axis by default
    default_grid: ClassVar[int] = 101
    #: ``model.init`` values the family can honour, and whether it honours ``model.inclusion``
    model_inits: ClassVar[tuple[str, ...]] = ("siren", "tuner")
    inclusion_features: ClassVar[bool] = False
    #: pydantic union tags inside the family's schema (left out of error paths)
    schema_tags: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ validation
    def fill_defaults(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Family defaults that depend on other keys of the raw problem (default: none)."""
        return raw

    def check(self, spec: ProblemBase, fail: Fail) -> None:
        """Family rules beyond the schema; call ``fail(key_path, message)``."""

    # ------------------------------------------------------------------ solving
    def compile(self, spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
        raise NotImplementedError

    def reference(self, spec: ProblemBase) -> GridData | None:
        """The FD reference on the evaluation grid; None when the family has none."""
        return None

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """FreSh's target signal on a grid and the coordinates ``{axis: mesh}`` of its nodes."""
        raise UserError(f"{spec.name}: model.omega_0: auto is not available for {self.kind}")

    # ------------------------------------------------------------------ comparing
    def metric_region(self, spec: ProblemBase) -> dict[str, tuple[float, float]]:
        """Where metrics are computed: ``evaluation.region``, else the whole grid."""
        return dict(spec.evaluation.region or {})

    def metrics(
        self, spec: ProblemBase, solution: GridData, reference: GridData | None
    ) -> dict[str, Any]:
        """``metrics.json`` of a solution against its reference."""
        assert reference is not None
        return compare_fields(spec.name, solution, reference, self.metric_region(spec))

    def plot_comparison(
        self,
        spec: ProblemBase,
        solution: GridData,
        reference: GridData | None,
        metrics: Mapping[str, Any],
        path: Path,
    ) -> None:
        """``comparison.png``: PINN | reference | error."""
        assert reference is not None
        plots.plot_comparison(
            solution, reference, path, title=f"{spec.name}: rel L2 = {metrics['rel_l2']:.3g}"
        )

    def score(self, spec: ProblemBase, solution: GridData, reference: GridData | None) -> dict:
        """``rel_l2`` and ``max_abs_error`` of a solution (``pinnsiren prune`` compares two)."""
        m = self.metrics(spec, solution, reference)
        return {k: m[k] for k in ("rel_l2", "max_abs_error")}


# --------------------------------------------------------------------------------- helpers
def coords_of(points: Tensor, axes: tuple[str, ...]) -> dict[str, Tensor]:
    """``{axis: column}`` view of a points tensor whose columns follow ``axes``."""
    return {a: points[:, i] for i, a in enumerate(axes)}


def eval_grid(spec: ProblemBase) -> dict[str, np.ndarray]:
    """Evaluation nodes per axis, in array order (``t`` first)."""
    return ordered_grid({a: np.asarray(spec.grid_axis(a)) for a in spec.axes}, spec.axes)


def grid_points(grid: Mapping[str, np.ndarray], in_axes: tuple[str, ...]) -> np.ndarray:
    """All nodes of the grid (array order of ``grid``) as rows in network input order."""
    mesh = np.meshgrid(*grid.values(), indexing="ij")
    by_axis = dict(zip(grid, mesh))
    return np.stack([by_axis[a].ravel() for a in in_axes], axis=-1)


def mesh_of(grid: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{axis: ndarray}`` of every node of a tensor grid (``indexing="ij"``)."""
    return dict(zip(grid, np.meshgrid(*grid.values(), indexing="ij")))


@torch.no_grad()
def predict(model: nn.Module, points: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Network output at ``points`` (rows in input order), as float64 numpy, in chunks."""
    param = next(model.parameters())
    out = []
    for start in range(0, len(points), chunk):
        x = torch.as_tensor(points[start : start + chunk], dtype=param.dtype, device=param.device)
        out.append(model(x).double().cpu().numpy())
    return np.concatenate(out, axis=0)


def grid_data(spec: ProblemBase, origin: str) -> GridData:
    """An empty :class:`GridData` on the problem's evaluation grid."""
    return GridData(
        grid=eval_grid(spec),
        attrs={"problem": spec.name, "kind": spec.kind, "origin": origin},
        problem=spec.to_yaml(),
    )


def evaluate_scalar(spec: ProblemBase, in_axes: tuple[str, ...]) -> Callable[[nn.Module], GridData]:
    """The read-out of a real scalar field u on the evaluation grid (axes in array order)."""

    def evaluate(model: nn.Module) -> GridData:
        data = grid_data(spec, "pinn")
        shape = tuple(len(v) for v in data.grid.values())
        u = predict(model, grid_points(data.grid, in_axes))[:, 0].reshape(shape)
        data.add("u", u, tuple(data.grid))
        return data

    return evaluate


def exact_solution(spec: ProblemBase, grid: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The declared ``pde.exact`` on a grid (array order), if the problem has one."""
    exact = getattr(spec.pde, "exact", None)
    if exact is None:
        return None
    return np.asarray(exact(mesh_of(grid)), dtype=float)


def curriculum_of(spec: ProblemBase) -> Curriculum:
    """The residual's time window of a time-dependent problem (``sampling.curriculum``;
    disabled with causal weights or without training steps)."""
    c = spec.sampling.curriculum
    total = spec.total_steps
    t0, t1 = spec.domain["t"]
    return Curriculum(
        t0=t0,
        t_end=t1,
        ramp_steps=c.ramp_steps or max(1, total // 2),
        enabled=c.enabled and not spec.sampling.causal.enabled and total > 0,
        initial_fraction=c.initial_fraction,
        focus_fraction=c.focus_fraction,
        focus_duration=c.focus_duration,
    )


def value_term(
    spec: ProblemBase, name: str, sampler, points: int, default_weight: float
) -> LinearTerm:
    """The term r = u − f of a value condition (an initial value), ``f`` the batch's values."""
    return LinearTerm(
        name=name,
        weight=spec.weight(name, default_weight),
        sampler=sampler,
        points=points,
        request=DerivativeRequest(),
        operator=lambda j, b: j.value,
        target=lambda b: b["f"][:, None],
    )


def initial_value_target(spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """FreSh's target of a time-dependent problem: u(x, t0) on ``model.fresh.grid`` nodes per
    spatial axis, with the coordinates (the slice t = t0)."""
    n = spec.model.fresh.grid
    mesh = mesh_of({a: np.linspace(*spec.domain[a], n) for a in spec.space_axes})
    shape = mesh[spec.space_axes[0]].shape
    target = np.broadcast_to(np.asarray(spec.initial.value(mesh), dtype=float), shape)
    return target, {**mesh, "t": np.full(shape, spec.domain["t"][0])}


def fd_data(spec: ProblemBase, grid: dict[str, np.ndarray], u: np.ndarray, r: int) -> GridData:
    """The FD solution ``u`` (on the r-times refined grid; t first when there is one) on the
    evaluation grid, with the exact solution when the problem declares one."""
    data = grid_data(spec, "fd")
    lead = 1 if "t" in grid else 0
    data.add("u", coarsen(u, r, lead=lead), tuple(data.grid))
    exact = exact_solution(spec, grid)
    if exact is not None:
        data.add("exact", exact, tuple(data.grid))
    return data


# --------------------------------------------------------------------------------- FD grids
def refined(nodes: np.ndarray, r: int, axis: str) -> np.ndarray:
    """``(n − 1)·r + 1`` uniform nodes over the same interval (``reference.refine = r``)."""
    if r == 1:
        return nodes
    steps = np.diff(nodes)
    if len(nodes) < 2 or not np.allclose(steps, steps[0], rtol=1e-9, atol=0):
        raise UserError(f"reference.refine needs uniform evaluation nodes on axis {axis}")
    return np.linspace(nodes[0], nodes[-1], (len(nodes) - 1) * r + 1)


def reference_space(spec: ProblemBase) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """(evaluation grid, the refined spatial FD grid, the refinement r)."""
    grid = eval_grid(spec)
    r = spec.reference.refine
    return grid, {a: refined(grid[a], r, a) for a in spec.space_axes}, r


def spanning(spec: ProblemBase, space: Mapping[str, np.ndarray]) -> None:
    """The FD grid must reach the walls of the domain."""
    for a, nodes in space.items():
        lo, hi = spec.domain[a]
        if not (np.isclose(nodes[0], lo) and np.isclose(nodes[-1], hi)):
            raise UserError(
                f"{spec.name}: evaluation.grid.{a} must span the domain [{lo}, {hi}] "
                "for the FD solve"
            )


def coarsen(values: np.ndarray, r: int, lead: int = 0) -> np.ndarray:
    """Every r-th node of the trailing axes (back from the refined FD grid)."""
    index = (slice(None),) * lead + (slice(None, None, r),) * (values.ndim - lead)
    return values[index]


def on_grid(spec: ProblemBase, f: Callable, coords: Mapping[str, np.ndarray]) -> np.ndarray:
    """A coefficient field on a tensor grid; NaN or inf is a user error."""
    values = np.asarray(f(mesh_of(coords)), dtype=float)
    if not np.all(np.isfinite(values)):
        raise UserError(f"{spec.name}: a coefficient field is NaN or infinite on the grid")
    return np.broadcast_to(values, tuple(len(v) for v in coords.values())).copy()
