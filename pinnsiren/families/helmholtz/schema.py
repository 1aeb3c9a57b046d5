"""The ``pde`` group of the Helmholtz family: sources, a known or unknown velocity, data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from pinnsiren.schema.types import (
    ComplexValue,
    FieldValue,
    Interval,
    NonNegFloat,
    Number,
    PositiveFloat,
    PositiveInt,
    Strict,
    base_dir,
)

GridNodes = Annotated[int, Field(strict=True, ge=2)]


class Source(Strict):
    """A smoothed point source: amplitude · g_σ(x − position), g_σ a normalised Gaussian."""

    position: tuple[Number, Number]
    amplitude: ComplexValue = complex(1.0, 0.0)
    sigma: PositiveFloat = 0.01


class VelocityNetSpec(Strict):
    """The velocity network of an inversion (a SIREN with a bounded output).

    ``lr_factor``: its Adam learning rate relative to the phase's ``lr`` (L-BFGS phases use
    one step length for all parameters). ``grid: [n_x, n_y]`` adds a learnable bilinear grid
    of that many nodes over the region inside the PML (the whole domain without one) to the
    network's pre-sigmoid output: a hybrid model whose fine-scale part converges faster.
    """

    width: PositiveInt = 64
    depth: PositiveInt = 2
    omega_0: PositiveFloat = 10.0
    hidden_omega: PositiveFloat = 30.0
    lr_factor: PositiveFloat = 1.0
    grid: tuple[GridNodes, GridNodes] | None = None


class UnknownVelocity(Strict):
    """A velocity model to be recovered from receiver data (Helmholtz inversion).

    The network's output is mapped into ``bounds`` by c = c_min + (c_max − c_min)·sigmoid(·);
    inside a PML the velocity is held at ``background`` (default: the initial field's mean).

    ``method``: ``joint`` — the wavefield network (the ``model`` group) and the velocity
    network are trained together on the PDE residual, the receiver data and the TV prior
    (all at once, :mod:`pinnsiren.families.helmholtz.inversion`); ``reduced`` — for every
    velocity the wavefields are solved exactly by the FD Helmholtz solver on the evaluation
    grid and the velocity network is trained on the data and TV terms through the
    adjoint-state gradient (:mod:`pinnsiren.families.helmholtz.reduced`).
    """

    unknown: Literal[True]
    bounds: Interval
    initial: FieldValue = 1.0
    background: PositiveFloat | None = None
    model: VelocityNetSpec = VelocityNetSpec()
    tv_of: Literal["velocity", "slowness"] = "velocity"
    method: Literal["joint", "reduced"] = "joint"

    @model_validator(mode="after")
    def _bounds(self) -> UnknownVelocity:
        lo, hi = self.bounds
        if not 0 < lo < hi:
            raise PydanticCustomError(
                "bounds", "bounds must be [c_min, c_max] with 0 < c_min < c_max"
            )
        return self


class SynthesizeData(Strict):
    """Receiver data made by the FD solver from a declared true velocity, plus noise.

    noise is relative: d ← d + noise·rms(d)·(n₁ + i n₂)/√2 with n₁, n₂ standard normal.
    """

    true_velocity: FieldValue
    noise: NonNegFloat = 0.0
    seed: Annotated[int, Field(strict=True)] = 0


def _data_file(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("data_file", "must be a file path")
    path = Path(value)
    if not path.is_absolute():
        path = base_dir(info) / path
    if not path.is_file():
        raise PydanticCustomError("data_file", "data file '{path}' not found", {"path": str(path)})
    return str(path.resolve())


class DataSpec(Strict):
    """Receiver data: a file (HDF5 layout or the SIREN MATLAB file) or synthesized by FD.

    A file may carry the source and receiver positions; its sources then take
    ``source_amplitude`` and ``source_sigma``. ``true_velocity`` (optional) is only used to
    report the velocity error.
    """

    file: Annotated[str | None, BeforeValidator(_data_file)] = None
    format: Literal["auto", "h5", "mat"] = "auto"
    synthesize: SynthesizeData | None = None
    source_amplitude: ComplexValue = complex(1.0, 1.0)
    source_sigma: PositiveFloat = 0.01
    true_velocity: FieldValue | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> DataSpec:
        if (self.file is None) == (self.synthesize is None):
            raise PydanticCustomError("data", "give exactly one of data.file and data.synthesize")
        return self


class ComplexField(Strict):
    """A complex coefficient field: ``{real: field, imag: field}`` (a plain field is real)."""

    real: FieldValue = 0.0
    imag: FieldValue = 0.0


def _complex_field(value: Any) -> Any:
    if isinstance(value, Mapping) and set(value) <= {"real", "imag"} and value:
        return value
    if isinstance(value, ComplexField):
        return value
    return {"real": value}


ComplexFieldValue = Annotated[ComplexField, BeforeValidator(_complex_field)]


class NearField(Strict):
    """Near-field subtraction of the total field: u = χ u₀ + v, u₀ the analytic free-space
    field of the sources in the velocity c₀ at the sources, χ(r) a smooth radial cutoff
    (1 for r ≤ ``inner``, 0 for r ≥ ``outer``, r the distance to a source). The network
    learns v, whose forcing is smooth (the narrow source cancels against L[χ u₀]); it still
    carries the whole outgoing wave beyond ``outer``. Needs ``inner`` ≥ 8σ, c = c₀ within
    ``inner`` of every source and no PML there; ``outer`` may reach into the PML."""

    inner: PositiveFloat
    outer: PositiveFloat

    @model_validator(mode="after")
    def _order(self) -> NearField:
        if not self.inner < self.outer:
            raise PydanticCustomError("field", "{msg}", {"msg": "needs inner < outer"})
        return self


def _velocity_tag(value: Any) -> str:
    """``pde.velocity`` is an inversion's unknown model when it is a mapping with ``unknown``
    (or, when serialising, an :class:`UnknownVelocity`)."""
    if isinstance(value, UnknownVelocity) or (isinstance(value, Mapping) and "unknown" in value):
        return "velocity-unknown"
    return "velocity-field"


class HelmholtzPDE(Strict):
    """(Δ + ω²/c²) u = Σ_s a_s g_σ(x − x_s) + f, complex u, time convention e^{+iωt}.

    ``rhs`` f: a further right-hand side (a field, or ``{real, imag}``); ``exact``: the exact
    solution, when known (reported as ``pinn_vs_exact``); ``near_field``: subtract the sources'
    near field from the total field (:class:`NearField`).
    ``formulation``: ``total`` — the network is u; ``scattered`` — u = u₀ + u_s with u₀ the
    analytic free-space field of the sources in the constant background velocity c₀
    (:mod:`pinnsiren.families.helmholtz.incident`) and the network is u_s (needs a PML, and
    c = c₀ inside it). c₀ is ``background`` for a known velocity and ``velocity.background``
    for an inversion.
    """

    kind: Literal["helmholtz"]
    omega: PositiveFloat
    velocity: Annotated[
        Annotated[UnknownVelocity, Tag("velocity-unknown")]
        | Annotated[FieldValue, Tag("velocity-field")],
        Discriminator(_velocity_tag),
    ] = 1.0
    sources: list[Source] = Field(default_factory=list)
    rhs: ComplexFieldValue | None = None
    exact: ComplexFieldValue | None = None
    receivers: list[tuple[Number, Number]] = Field(default_factory=list)
    data: DataSpec | None = None
    formulation: Literal["total", "scattered"] = "total"
    background: PositiveFloat | None = None
    near_field: NearField | None = None
