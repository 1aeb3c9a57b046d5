"""The family-independent groups of a problem file and :class:`ProblemBase`.

A problem file is ``name``, ``pde`` (the family's own group, defined by the family module in
:mod:`pinnsiren.families`), ``domain`` and the groups below. :class:`ProblemBase` is the
whole problem with ``pde`` left open; :mod:`pinnsiren.problem.spec` closes it with the union of
the registered families' groups. Family code is typed against :class:`ProblemBase`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import Field

from pinnsiren.schema.types import (
    AXES,
    Axis,
    FieldValue,
    Interval,
    NonNegFloat,
    NonNegInt,
    Number,
    PositiveFloat,
    PositiveInt,
    Strict,
)


# --------------------------------------------------------------------------- conditions
class FaceCondition(Strict):
    kind: Literal["dirichlet", "neumann"]
    value: FieldValue = 0.0


class BoundarySpec(Strict):
    """Walls. ``value`` is u (Dirichlet) or the outward normal derivative ∂u/∂n (Neumann)."""

    kind: Literal["dirichlet", "neumann", "pml", "absorbing", "none"] = "dirichlet"
    value: FieldValue = 0.0
    width: PositiveFloat = 0.5
    strength: PositiveFloat = 5.0
    faces: dict[Literal["x-", "x+", "y-", "y+", "z-", "z+"], FaceCondition] = Field(
        default_factory=dict
    )


class InitialSpec(Strict):
    """Initial conditions: u(x, t0) = value (Dirichlet), u_t(x, t0) = velocity (Neumann,
    second-order-in-time families only)."""

    value: FieldValue = 0.0
    velocity: FieldValue = 0.0


# --------------------------------------------------------------------------- model/training
class TunerSpec(Strict):
    """TUNER: first-layer frequencies 2πk/p on the integer lattice, |k|∞ ≤ low_band dense plus
    random k up to band_limit; hidden weights clamped to |W| ≤ bound/ω after every step.
    ``low_band: auto`` takes the largest b whose ((2b+1)^d − 1)/2 lattice vectors fill at most
    half the width (the rest is high band). The period p is ``period_factor`` × the domain
    length per axis: 1 makes the network
    periodic on the domain (the paper's choice), 2 (default) leaves a PDE's box non-periodic.
    """

    low_band: PositiveInt | Literal["auto"] = "auto"
    band_limit: PositiveInt = 32
    bound: PositiveFloat = 1.0
    period_factor: PositiveFloat = 2.0


class FreshSpec(Strict):
    omegas: list[PositiveFloat] = Field(
        default_factory=lambda: [float(w) for w in range(10, 201, 10)]
    )
    inits: PositiveInt = 5
    size: PositiveInt | None = None
    grid: PositiveInt = 128


class InclusionFeatures(Strict):
    """Features switched on only inside a coefficient's inclusion (``model.inclusion``): a
    second one-hidden-layer SIREN of ``width`` neurons at ``omega_0`` whose features exist
    inside the region only (see :mod:`pinnsiren.engine.regions`)."""

    width: PositiveInt
    omega_0: PositiveFloat = 30.0


class ModelSpec(Strict):
    """The network. ``depth`` counts the hidden layers after the first one: ``depth: 0`` is one
    hidden layer, i.e. random sine features when the output layer is solved by least squares.
    ``init``: ``siren`` (Sitzmann et al.), ``tuner`` (frequency-controlled, bounded weights) or a
    family's own (``light_cone``: wave features that solve the wave equation exactly, see
    :mod:`pinnsiren.families.wave`)."""

    kind: Literal["siren", "tanh", "relu_pe"] = "siren"
    width: PositiveInt = 128
    depth: NonNegInt = 3
    omega_0: PositiveFloat | Literal["auto"] = 30.0
    hidden_omega: PositiveFloat = 30.0
    init: Literal["siren", "tuner", "light_cone"] = "siren"
    input_scale: dict[Axis, PositiveFloat] = Field(default_factory=dict)
    num_frequencies: PositiveInt = 8
    tuner: TunerSpec = TunerSpec()
    fresh: FreshSpec = FreshSpec()
    inclusion: InclusionFeatures | None = None


class PhaseSpec(Strict):
    optimizer: Literal["adam", "lbfgs"] = "adam"
    steps: PositiveInt = 1000
    lr: PositiveFloat | None = None
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    final_lr_fraction: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.1
    # loss.weights overrides while this phase runs (a penalty continuation, e.g. the
    # residual weight raised for the last phase)
    weights: dict[str, NonNegFloat] = Field(default_factory=dict)


class LeastSquaresSpec(Strict):
    """How ``training.output_layer: least_squares`` solves the output layer (see
    :mod:`pinnsiren.engine.lstsq`).

    ``every_step``: during Adam phases the layer is re-solved at every step on that step's
    points (normal equations, differentiated through, so Adam trains the hidden layers for the
    best layer); false: Adam trains every layer and only the final solve sets it.
    ``points``: collocation points per term of the final float64 solve (default: the term's
    ``sampling.points``, raised so that the rows are at least ``rows_per_column`` times the
    columns). ``ridge``: Tikhonov weight on the coefficients of the unit-norm columns.
    ``solver``: ``qr`` (Householder QR, accurate to round-off), ``normal`` (normal equations
    accumulated block by block: memory O(columns²), accurate to about 1e-8 of the residual
    scale) or ``auto`` (QR when it fits in memory). ``memory_gb``: refuse a system larger than
    this (default: the memory available).
    """

    every_step: bool = True
    points: dict[str, PositiveInt] = Field(default_factory=dict)
    rows_per_column: PositiveFloat = 2.0
    ridge: NonNegFloat = 0.0
    solver: Literal["auto", "qr", "normal"] = "auto"
    memory_gb: PositiveFloat | None = None


class TrainingSpec(Strict):
    """Seed, precision, device, optimizer phases; ``clip_grad_norm`` rescales the Adam gradient
    g ← g·min(1, G/‖g‖₂) (global norm over all trained parameters) before each step.

    ``output_layer: least_squares``: the network's affine output layer is solved for as the
    weighted linear least-squares fit of the problem's linear terms (every term whose residual
    is affine in the network output), once more in float64 after training; see
    :class:`LeastSquaresSpec`. ``phases`` may then be empty (frozen features, one solve).
    """

    seed: Annotated[int, Field(strict=True)] = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    phases: list[PhaseSpec] = Field(default_factory=lambda: [PhaseSpec()])
    checkpoint_every: PositiveInt = 500
    pretrain_steps: NonNegInt = 0
    clip_grad_norm: PositiveFloat | None = None
    output_layer: Literal["adam", "least_squares"] = "adam"
    least_squares: LeastSquaresSpec = LeastSquaresSpec()


class CurriculumSpec(Strict):
    """Time window [t0, t0 + (T − t0)·min(1, step/ramp_steps)] (ramp_steps null: half the steps)."""

    enabled: bool = True
    ramp_steps: PositiveInt | None = None
    initial_fraction: Annotated[float, Field(ge=0, lt=1, strict=True)] = 0.1
    focus_fraction: Annotated[float, Field(ge=0, lt=1, strict=True)] = 0.0
    focus_duration: PositiveFloat = 0.05


class CausalSpec(Strict):
    """Causal weights w_k = exp(−ε Σ_{j<k} L_j) over time chunks (Wang et al. 2022)."""

    enabled: bool = False
    epsilon: PositiveFloat = 1.0
    chunks: PositiveInt = 16


class SamplingSpec(Strict):
    points: dict[str, PositiveInt] = Field(default_factory=dict)
    curriculum: CurriculumSpec = CurriculumSpec()
    causal: CausalSpec = CausalSpec()


class LossSpec(Strict):
    weights: dict[str, NonNegFloat] = Field(default_factory=dict)
    balancing: Literal["none", "grad_norm"] = "none"
    balancing_every: PositiveInt = 100
    l1: NonNegFloat = 0.0


class EvaluationSpec(Strict):
    grid: dict[Axis, Annotated[int, Field(ge=2, strict=True)] | list[Number]] = Field(
        default_factory=dict
    )
    region: dict[Axis, Interval] | None = None


class ReferenceSpec(Strict):
    """Settings of the finite-difference reference; each family uses some of them (a key the
    family does not use is refused)."""

    refine: PositiveInt = 1
    cfl: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.5
    dt: PositiveFloat | None = None
    wall: Literal["dirichlet", "neumann", "absorbing"] | None = None
    iterations: PositiveInt = 50
    tv: NonNegFloat = 0.0
    multiscale: list[PositiveFloat] = Field(default_factory=list)


class OutputSpec(Strict):
    dir: str | None = None
    plots: bool = True


# --------------------------------------------------------------------------- the problem
class ProblemBase(Strict):
    """A whole problem file; ``pde`` is the family's group (closed over the registered
    families in :class:`pinnsiren.problem.spec.ProblemSpec`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    pde: Any
    domain: dict[Axis, Interval]
    boundary: BoundarySpec = BoundarySpec()
    initial: InitialSpec | None = None
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    sampling: SamplingSpec = SamplingSpec()
    loss: LossSpec = LossSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    reference: ReferenceSpec = ReferenceSpec()
    output: OutputSpec = OutputSpec()

    @property
    def kind(self) -> str:
        return self.pde.kind

    @property
    def axes(self) -> tuple[str, ...]:
        """Declared axes in canonical order x, y, z, t."""
        return tuple(a for a in AXES if a in self.domain)

    @property
    def space_axes(self) -> tuple[str, ...]:
        return tuple(a for a in self.axes if a != "t")

    @property
    def is_time_dependent(self) -> bool:
        return "t" in self.domain

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.training.phases)

    def weight(self, term: str, default: float = 1.0) -> float:
        return float(self.loss.weights.get(term, default))

    def points(self, term: str, default: int) -> int:
        return int(self.sampling.points.get(term, default))

    def grid_axis(self, axis: str) -> list[float]:
        """Evaluation nodes along ``axis`` (linspace over the domain for a count)."""
        g = self.evaluation.grid[axis]
        if isinstance(g, int):
            lo, hi = self.domain[axis]
            return list(np.linspace(lo, hi, g))
        return list(g)

    def to_yaml(self) -> str:
        """The resolved problem as YAML (defaults filled in; short lists on one line)."""
        return yaml.dump(self.model_dump(mode="json"), Dumper=_FlowListDumper, sort_keys=False)


class _FlowListDumper(yaml.SafeDumper):
    """Writes lists of scalars in flow style: ``[-1.0, 1.0]``."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowListDumper.add_representer(list, _represent_list)
