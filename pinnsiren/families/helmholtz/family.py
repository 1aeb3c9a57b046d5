"""Helmholtz family: (Δ + ω²/c(x)²) u = f on a 2-D box, complex u, e^{+iωt}; a known velocity
(:mod:`.forward`) or an unknown one recovered from receiver data (:mod:`.inversion`, checked
against classical adjoint-state FWI in :mod:`.fwi`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pinnsiren.errors import UserError
from pinnsiren.families.base import CompiledProblem, Fail, Family, mesh_of
from pinnsiren.families.helmholtz.forward import compile_forward, forward_reference
from pinnsiren.families.helmholtz.fwi import inversion_metrics, inversion_reference, plot_inversion
from pinnsiren.families.helmholtz.incident import NEAR_RADIUS
from pinnsiren.families.helmholtz.inversion import Inversion
from pinnsiren.families.helmholtz.operator import AXES, physical_box, pml_of, source_density
from pinnsiren.families.helmholtz.reduced import ReducedInversion
from pinnsiren.families.helmholtz.schema import HelmholtzPDE, UnknownVelocity
from pinnsiren.families.registry import register
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.fields import BoxField
from pinnsiren.schema.fields import Disk as DiskField
from pinnsiren.schema.groups import LeastSquaresSpec, ModelSpec, ProblemBase
from reference_solvers.helmholtz import MIN_POINTS_PER_WAVELENGTH, solve_helmholtz


def is_inversion(spec: ProblemBase) -> bool:
    return isinstance(spec.pde.velocity, UnknownVelocity)


def is_reduced(spec: ProblemBase) -> bool:
    """An inversion whose wavefields are FD solutions (``pde.velocity.method: reduced``)."""
    return is_inversion(spec) and spec.pde.velocity.method == "reduced"


class Helmholtz(Family):
    kind = "helmholtz"
    schema = HelmholtzPDE
    terms = ("residual", "interior", "source", "boundary", "interface", "data", "tv")
    planar = True
    space = (2, 2)
    boundaries = ("pml", "dirichlet", "neumann")
    faces = True
    reference_keys = ("refine", "iterations", "tv", "multiscale")
    default_grid = 256
    schema_tags = ("velocity-",)
    inclusion_features = True

    # ------------------------------------------------------------------ validation
    def check(self, spec: ProblemBase, fail: Fail) -> None:
        pde = spec.pde
        inversion = is_inversion(spec)
        if spec.boundary.kind == "pml":
            for axis in AXES:
                lo, hi = spec.domain[axis]
                if 2 * spec.boundary.width >= hi - lo:
                    fail(
                        "boundary.width",
                        f"PML of width {spec.boundary.width} leaves no interior on {axis}",
                    )
        elif spec.boundary.faces and inversion:
            fail("boundary.faces", "an inversion needs boundary.kind pml")
        for i, s in enumerate(pde.sources):
            for axis, p in zip(AXES, s.position):
                lo, hi = spec.domain[axis]
                if not lo < p < hi:
                    fail(
                        f"pde.sources.{i}.position",
                        f"{axis}={p} is outside the domain [{lo}, {hi}]",
                    )
        if pde.formulation == "scattered":
            self._check_scattered(spec, fail)
        elif pde.background is not None:
            fail("pde.background", "only used with formulation: scattered")
        if pde.near_field is not None:
            self._check_near_field(spec, fail)
        if spec.model.inclusion is not None:
            if inversion or not isinstance(pde.velocity, (DiskField, BoxField)):
                fail("model.inclusion", "needs a forward problem whose velocity is a disk or box")
            if spec.model.kind != "siren":
                fail("model.inclusion", "inclusion features extend a siren (model.kind siren)")
        if inversion:
            self._check_inversion(spec, fail)
        elif not pde.sources and pde.rhs is None:
            fail("pde.sources", "at least one source (or pde.rhs) is needed")
        for key in ("receivers", "data"):
            if not inversion and getattr(pde, key):
                fail(f"pde.{key}", "receiver data are for an unknown velocity (inversion) only")

    def _check_inversion(self, spec: ProblemBase, fail: Fail) -> None:
        pde = spec.pde
        if pde.data is None:
            fail("pde.data", "an unknown velocity needs receiver data (file or synthesize)")
        if not pde.sources and not pde.data.file:
            fail("pde.sources", "at least one source is needed")
        if not pde.receivers and not pde.data.file:
            fail("pde.receivers", "an unknown velocity needs receiver positions")
        if spec.boundary.kind != "pml":
            fail("boundary.kind", "an inversion needs a PML")
        for key in ("rhs", "exact"):
            if getattr(pde, key) is not None:
                fail(f"pde.{key}", "not used by an inversion (the data come from the sources)")
        if pde.velocity.method == "reduced":
            self._check_reduced(spec, fail)

    def _check_reduced(self, spec: ProblemBase, fail: Fail) -> None:
        """A reduced inversion has no wavefield network: the keys that configure one, and
        the terms and points of the PDE residual, are refused rather than ignored."""
        why = "not used by pde.velocity.method reduced (the wavefields are FD solutions)"
        if spec.model != ModelSpec():
            fail("model", f"{why}; the velocity network is pde.velocity.model")
        if spec.pde.formulation != "total":
            fail("pde.formulation", f"{why}: the FD solve is of the total field")
        training = spec.training
        if training.output_layer != "adam":
            fail("training.output_layer", why)
        if training.least_squares != LeastSquaresSpec():
            fail("training.least_squares", why)
        if training.pretrain_steps:
            fail("training.pretrain_steps", why)
        for key in spec.sampling.points:
            fail(f"sampling.points.{key}", f"{why}: every term uses the free grid nodes")
        groups = [("loss.weights", spec.loss.weights)]
        groups += [
            (f"training.phases.{i}.weights", p.weights) for i, p in enumerate(training.phases)
        ]
        for group, weights in groups:
            for key in weights:
                if key not in ("data", "tv"):
                    fail(f"{group}.{key}", f"{why} (terms: data, tv)")
                elif key == "tv" and group != "loss.weights" and spec.weight("tv", 0.0) <= 0:
                    fail(f"{group}.tv", "the tv term needs loss.weights.tv > 0 to exist")
        for axis in AXES:
            nodes = np.asarray(spec.grid_axis(axis))
            steps = np.diff(nodes)
            lo, hi = spec.domain[axis]
            uniform = len(nodes) > 2 and np.allclose(steps, steps[0], rtol=1e-9, atol=0)
            if not (uniform and np.isclose(nodes[0], lo) and np.isclose(nodes[-1], hi)):
                fail(
                    f"evaluation.grid.{axis}",
                    "the FD wavefields need uniform nodes spanning the domain",
                )
            ppw = 2 * np.pi * spec.pde.velocity.bounds[0] / (spec.pde.omega * steps.max())
            if ppw < MIN_POINTS_PER_WAVELENGTH:
                fail(
                    f"evaluation.grid.{axis}",
                    f"{ppw:.1f} nodes per wavelength at c_min = {spec.pde.velocity.bounds[0]:g}; "
                    f"the FD wavefields need >= {MIN_POINTS_PER_WAVELENGTH:g}",
                )

    def _check_near_field(self, spec: ProblemBase, fail: Fail) -> None:
        """Near-field subtraction: a total-field forward problem with sources, the cutoff's
        inner disk past the Gaussian (8σ), free of the PML, in a constant velocity."""
        pde, nf = spec.pde, spec.pde.near_field
        if pde.formulation != "total" or is_inversion(spec) or not pde.sources:
            fail("pde.near_field", "needs a forward total-field problem with sources")
        inner = physical_box(spec) if spec.boundary.kind == "pml" else None
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        radii = np.linspace(0, nf.inner, 9)
        c0 = None
        for i, s in enumerate(pde.sources):
            if nf.inner < NEAR_RADIUS * s.sigma:
                fail("pde.near_field.inner", f"must be >= {NEAR_RADIUS:g} sigma of source {i}")
            px = s.position[0] + np.outer(radii, np.cos(angles))
            py = s.position[1] + np.outer(radii, np.sin(angles))
            if inner is not None and not inner.contains({"x": px, "y": py}).all():
                fail("pde.near_field.inner", f"the disk around source {i} reaches into the PML")
            c = np.broadcast_to(np.asarray(pde.velocity({"x": px, "y": py}), float), px.shape)
            c0 = c.flat[0] if c0 is None else c0
            if not np.allclose(c, c0, rtol=1e-9, atol=0):
                fail("pde.near_field.inner", "the velocity must be one constant within it")

    def _check_scattered(self, spec: ProblemBase, fail: Fail) -> None:
        """A scattered-field problem needs a PML and a velocity equal to c₀ inside the layer."""
        pde = spec.pde
        if spec.boundary.kind != "pml":
            fail("pde.formulation", "scattered needs boundary.kind pml (free-space background)")
        if is_inversion(spec):
            if pde.background is not None:
                fail("pde.background", "an inversion takes c₀ from pde.velocity.background")
            return
        if pde.background is None:
            fail("pde.background", "formulation: scattered needs the background velocity c₀")
        (xl, xh), (yl, yh) = spec.domain["x"], spec.domain["y"]
        w = spec.boundary.width
        mesh = mesh_of({"x": np.linspace(xl, xh, 201), "y": np.linspace(yl, yh, 201)})
        X, Y = mesh["x"], mesh["y"]
        in_pml = (X < xl + w) | (X > xh - w) | (Y < yl + w) | (Y > yh - w)
        c = np.broadcast_to(np.asarray(pde.velocity(mesh), dtype=float), X.shape)
        if not np.allclose(c[in_pml], pde.background, rtol=1e-9, atol=0.0):
            fail("pde.velocity", f"must equal pde.background = {pde.background} inside the PML")

    # ------------------------------------------------------------------ solving
    def compile(self, spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
        if is_reduced(spec):
            return ReducedInversion(spec).compile()
        if is_inversion(spec):
            return Inversion(spec, gen).compile()
        return compile_forward(spec, gen)

    def reference(self, spec: ProblemBase) -> GridData:
        return inversion_reference(spec) if is_inversion(spec) else forward_reference(spec)

    def fresh_target(self, spec: ProblemBase) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """A coarse FD solution (Re, Im) with the problem's walls and velocity (for an
        inversion: the initial velocity) for the first source."""
        if is_reduced(spec):
            raise UserError(
                f"{spec.name}: a reduced inversion has no wavefield network to tune "
                "(pde.velocity.method: reduced)"
            )
        n = spec.model.fresh.grid
        grid = {a: np.linspace(*spec.domain[a], n) for a in AXES}
        mesh = mesh_of(grid)
        vfield = spec.pde.velocity.initial if is_inversion(spec) else spec.pde.velocity
        c = np.broadcast_to(np.asarray(vfield(mesh), dtype=float), mesh["x"].shape)
        sources = spec.pde.sources[:1]
        rhs = source_density(mesh["x"], mesh["y"], sources)
        u = solve_helmholtz(grid["x"], grid["y"], spec.pde.omega, c, rhs, pml_of(spec))
        return np.stack([u.real, u.imag], axis=-1), mesh

    # ------------------------------------------------------------------ comparing
    def metric_region(self, spec: ProblemBase) -> dict[str, tuple[float, float]]:
        """``evaluation.region``, else the physical region inside the PML."""
        if spec.evaluation.region:
            return dict(spec.evaluation.region)
        if spec.boundary.kind == "pml":
            w = spec.boundary.width
            return {a: (spec.domain[a][0] + w, spec.domain[a][1] - w) for a in AXES}
        return {}

    def metrics(
        self, spec: ProblemBase, solution: GridData, reference: GridData | None
    ) -> dict[str, Any]:
        if is_inversion(spec):
            return inversion_metrics(spec, solution, reference)
        return super().metrics(spec, solution, reference)

    def plot_comparison(
        self,
        spec: ProblemBase,
        solution: GridData,
        reference: GridData | None,
        metrics: Mapping[str, Any],
        path: Path,
    ) -> None:
        if is_inversion(spec):
            label = "SIREN (reduced)" if is_reduced(spec) else "PINN"
            title = f"{spec.name}: {label} vs classical FWI"
            plot_inversion(solution, reference, path, title, label)
        else:
            super().plot_comparison(spec, solution, reference, metrics, path)


register(Helmholtz())
