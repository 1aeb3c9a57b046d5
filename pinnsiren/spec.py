"""The typed schema of a problem file (pydantic v2, immutable), loading and overrides.

Every YAML group is a frozen pydantic model that forbids unknown keys, so a misspelt key
fails before anything runs. All defaults live here; ``pinnsiren validate`` prints the
resolved problem. Loading goes

    YAML text ─▶ dict ─▶ ``--set`` overrides ─▶ family defaults ─▶ pydantic ─▶ semantic checks

and any failure is a :class:`SpecError` whose ``str`` is the one-line message
``FILE: key.path: what is wrong (what is allowed)`` that the CLI prints with exit status 2.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pinnsiren import fields as fieldlib

AXES = ("x", "y", "z", "t")
Axis = Literal["x", "y", "z", "t"]


class SpecError(ValueError):
    """A user error in a problem file: ``path`` is the dotted key, message one line."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + " ".join(message.split()))


# --------------------------------------------------------------------------- field type
def _field_before(value: Any, info: ValidationInfo) -> fieldlib.Field:
    base = Path((info.context or {}).get("base_dir", "."))
    try:
        return fieldlib.parse_field(value, base)
    except fieldlib.FieldError as exc:
        raise PydanticCustomError("field", "{msg}", {"msg": str(exc)}) from None


FieldValue = Annotated[
    Any,
    BeforeValidator(_field_before),
    PlainSerializer(lambda f: f.to_yaml(), when_used="always"),
]


def _complex_before(value: Any) -> complex:
    try:
        if isinstance(value, complex):
            out = value
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            out = complex(float(value[0]), float(value[1]))
        elif isinstance(value, str):
            out = complex(value.replace(" ", "").replace("i", "j").replace("jj", "j"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out = complex(float(value), 0.0)
        else:
            raise ValueError
    except (TypeError, ValueError):
        raise PydanticCustomError(
            "complex", "not a complex number (allowed: 1.5, [re, im] or '1+1j')"
        ) from None
    if not (math.isfinite(out.real) and math.isfinite(out.imag)):
        raise PydanticCustomError("complex", "complex number must be finite")
    return out


ComplexValue = Annotated[
    complex,
    BeforeValidator(_complex_before),
    PlainSerializer(lambda c: [c.real, c.imag], when_used="always"),
]
# strict numbers: a YAML boolean or string is never silently read as a number
Number = Annotated[float, Field(strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, strict=True)]
NonNegFloat = Annotated[float, Field(ge=0, strict=True)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
Interval = tuple[Number, Number]


class Strict(BaseModel):
    """Base of every schema group: immutable, no unknown keys, no NaN/inf numbers."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        arbitrary_types_allowed=True,
        validate_default=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key (allowed: {allowed})",
                        {"key": str(key), "allowed": ", ".join(allowed)},
                    )
        return data


# --------------------------------------------------------------------------- pde families
class Source(Strict):
    """A smoothed point source: amplitude · g_σ(x − position), g_σ a normalised Gaussian."""

    position: tuple[Number, Number]
    amplitude: ComplexValue = complex(1.0, 0.0)
    sigma: PositiveFloat = 0.01


GridNodes = Annotated[int, Field(strict=True, ge=2)]


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
    """

    unknown: Literal[True]
    bounds: Interval
    initial: FieldValue = 1.0
    background: PositiveFloat | None = None
    model: VelocityNetSpec = VelocityNetSpec()
    tv_of: Literal["velocity", "slowness"] = "velocity"

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
        path = Path((info.context or {}).get("base_dir", ".")) / path
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


class PoissonPDE(Strict):
    """−Δu = f on a box (1-D to 3-D)."""

    kind: Literal["poisson"]
    rhs: FieldValue = 0.0
    exact: FieldValue | None = None


def _velocity_tag(value: Any) -> str:
    """``pde.velocity`` is an inversion's unknown model when it is a mapping with ``unknown``
    (or, when serialising, an :class:`UnknownVelocity`)."""
    if isinstance(value, UnknownVelocity) or (isinstance(value, Mapping) and "unknown" in value):
        return "velocity-unknown"
    return "velocity-field"


class HelmholtzPDE(Strict):
    """(Δ + ω²/c²) u = Σ_s a_s g_σ(x − x_s), complex u, time convention e^{+iωt}.

    ``formulation``: ``total`` — the network is u; ``scattered`` — u = u₀ + u_s with u₀ the
    analytic free-space field of the sources in the constant background velocity c₀
    (:mod:`pinnsiren.incident`) and the network is u_s (needs a PML, and c = c₀ inside it).
    c₀ is ``background`` for a known velocity and ``velocity.background`` for an inversion.
    """

    kind: Literal["helmholtz"]
    omega: PositiveFloat
    velocity: Annotated[
        Annotated[UnknownVelocity, Tag("velocity-unknown")]
        | Annotated[FieldValue, Tag("velocity-field")],
        Discriminator(_velocity_tag),
    ] = 1.0
    sources: list[Source] = Field(default_factory=list)
    receivers: list[tuple[Number, Number]] = Field(default_factory=list)
    data: DataSpec | None = None
    formulation: Literal["total", "scattered"] = "total"
    background: PositiveFloat | None = None


class WavePDE(Strict):
    """u_tt = c(x)² Δu, 1-D or 2-D in space."""

    kind: Literal["wave"]
    speed: FieldValue = 1.0
    exact: FieldValue | None = None


class SignalSpec(Strict):
    """The signal to fit: a picture or array file, loaded by :func:`pinnsiren.signals.load_signal`.

    ``path`` is ``sample:NAME`` (matplotlib's bundled sample data, e.g. ``grace_hopper.jpg``)
    or a file path; a relative path is resolved against the problem file's directory and stored
    absolute, so the resolved problem (``problem.yaml`` in a run directory) stays loadable.
    A missing file fails validation at ``pde.signal.path``.  ``size`` n centre-crops to a square
    and resamples to n x n pixels (null: native resolution); ``orientation`` and ``normalise``
    are those of ``load_signal`` (default: pictures flipped so row 0 is the top at y = y_max,
    values mapped onto [-1, 1]).  Only single-channel (``grayscale: true``) signals are
    supported: the solution file and its figures hold one channel.
    """

    path: str
    key: str | None = None
    size: Annotated[int, Field(ge=4, strict=True)] | None = 256
    grayscale: bool = True
    orientation: Literal["auto", "image", "xy", "yx"] = "auto"
    normalise: Literal["minus1_1", "unit", "none"] = "minus1_1"

    @field_validator("path", mode="after")
    @classmethod
    def _resolve_path(cls, value: str, info: ValidationInfo) -> str:
        from pinnsiren.signals import (
            SAMPLE_PREFIX,
            SUPPORTED_EXTENSIONS,
            SignalError,
            sample_data_path,
        )

        if value.startswith(SAMPLE_PREFIX):
            try:
                sample_data_path(value[len(SAMPLE_PREFIX) :])
            except SignalError as exc:
                raise PydanticCustomError("field", "{msg}", {"msg": str(exc)}) from None
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = Path((info.context or {}).get("base_dir", ".")) / path
        path = path.absolute()
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise PydanticCustomError(
                "field",
                "{msg}",
                {
                    "msg": f"signal file {str(path)!r}: unsupported extension "
                    f"(allowed: {', '.join(SUPPORTED_EXTENSIONS)})"
                },
            )
        if not path.is_file():
            raise PydanticCustomError(
                "field", "{msg}", {"msg": f"signal file {str(path)!r} not found"}
            )
        return str(path)

    @field_validator("grayscale", mode="after")
    @classmethod
    def _single_channel(cls, value: bool) -> bool:
        if not value:
            raise PydanticCustomError(
                "field", "{msg}", {"msg": "colour signals are not supported (use grayscale: true)"}
            )
        return value


class MaskSpec(Strict):
    """Observed pixels (inpainting); the values term sees only these.

    ``random: f`` observes a uniformly random fraction f of the pixels (exactly round(f N),
    seeded by ``seed``); ``box: [[x0, x1], [y0, y1]]`` (domain coordinates, pixel centres
    inside, bounds included) is a missing region when ``hole`` is true (default) and the only
    observed region when false.  Both together: observed = random and not in the hole (or
    random and in the box).
    """

    random: Annotated[float, Field(gt=0, le=1, strict=True)] | None = None
    box: list[Interval] | None = None
    hole: bool = True
    seed: Annotated[int, Field(strict=True)] = 0

    @field_validator("box", mode="after")
    @classmethod
    def _box(cls, value: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if value is not None:
            if len(value) != 2:
                raise PydanticCustomError(
                    "field", "{msg}", {"msg": "box must be [[x0, x1], [y0, y1]]"}
                )
            for lo, hi in value:
                if not lo < hi:
                    raise PydanticCustomError(
                        "field", "{msg}", {"msg": f"box interval [{lo}, {hi}] needs low < high"}
                    )
        return value

    @model_validator(mode="after")
    def _something(self) -> MaskSpec:
        if self.random is None and self.box is None:
            raise PydanticCustomError(
                "field", "{msg}", {"msg": "a mask needs random: fraction and/or box"}
            )
        return self


class PriorSpec(Strict):
    tv: NonNegFloat = 0.0
    hessian: NonNegFloat = 0.0


class FitPDE(Strict):
    """Fit a 2-D signal from its values, gradient or Laplacian (optionally masked).

    ``derivatives`` picks the gradient/Laplacian *targets*: ``sobel`` (Sobel gradient and
    five-point Laplacian, the SIREN paper's) or ``spectral`` (FFT derivatives of the
    mirror-extended signal, exact for band-limited signals); see :mod:`pinnsiren.pdes.fit`.
    """

    kind: Literal["fit"]
    signal: SignalSpec
    supervision: Literal["values", "gradient", "laplacian"] = "values"
    derivatives: Literal["sobel", "spectral"] = "sobel"
    mask: MaskSpec | None = None
    priors: PriorSpec = PriorSpec()


PDE = Annotated[PoissonPDE | HelmholtzPDE | WavePDE | FitPDE, Field(discriminator="kind")]


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
    """Wave initial conditions: u(x, t0) = value (Dirichlet), u_t(x, t0) = velocity (Neumann)."""

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


class ModelSpec(Strict):
    kind: Literal["siren", "tanh", "relu_pe"] = "siren"
    width: PositiveInt = 128
    depth: PositiveInt = 3
    omega_0: PositiveFloat | Literal["auto"] = 30.0
    hidden_omega: PositiveFloat = 30.0
    init: Literal["siren", "tuner"] = "siren"
    input_scale: dict[Axis, PositiveFloat] = Field(default_factory=dict)
    num_frequencies: PositiveInt = 8
    tuner: TunerSpec = TunerSpec()
    fresh: FreshSpec = FreshSpec()


class PhaseSpec(Strict):
    optimizer: Literal["adam", "lbfgs"] = "adam"
    steps: PositiveInt = 1000
    lr: PositiveFloat | None = None
    schedule: Literal["constant", "cosine", "exponential"] = "constant"
    final_lr_fraction: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.1
    # loss.weights overrides while this phase runs (a penalty continuation, e.g. the
    # residual weight raised for the last phase)
    weights: dict[str, NonNegFloat] = Field(default_factory=dict)


class TrainingSpec(Strict):
    """Seed, precision, device, optimizer phases; ``clip_grad_norm`` rescales the Adam gradient
    g ← g·min(1, G/‖g‖₂) (global norm over all trained parameters) before each step.

    ``output_layer: least_squares`` (Helmholtz inversion): every step the wavefield network's
    affine output layer is solved for as the weighted linear least-squares fit of the step's
    PDE-residual terms (the receivers do not enter it), differentiably, so the data term
    reaches the velocity through that PDE solution; Adam trains the hidden layers and the
    velocity. Adam phases only (the solve's graph is used once per step).
    """

    seed: Annotated[int, Field(strict=True)] = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    phases: list[PhaseSpec] = Field(default_factory=lambda: [PhaseSpec()], min_length=1)
    checkpoint_every: PositiveInt = 500
    pretrain_steps: Annotated[int, Field(ge=0, strict=True)] = 0
    clip_grad_norm: PositiveFloat | None = None
    output_layer: Literal["adam", "least_squares"] = "adam"


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
TERMS = {
    "poisson": ("residual", "boundary"),
    "helmholtz": ("residual", "interior", "source", "data", "tv"),
    "wave": ("residual", "boundary", "initial_value", "initial_velocity"),
    "fit": ("values", "gradient", "laplacian", "tv", "hessian"),
}
DEFAULT_GRID = {"poisson": 101, "helmholtz": 256, "wave": 128, "fit": 256}
DEFAULT_BOUNDARY = {"poisson": "dirichlet", "helmholtz": "pml", "wave": "none", "fit": "none"}


class ProblemSpec(Strict):
    """A whole problem file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    pde: PDE
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
    def is_inversion(self) -> bool:
        return isinstance(self.pde, HelmholtzPDE) and isinstance(self.pde.velocity, UnknownVelocity)

    def weight(self, term: str, default: float = 1.0) -> float:
        return float(self.loss.weights.get(term, default))

    def points(self, term: str, default: int) -> int:
        return int(self.sampling.points.get(term, default))

    def grid_axis(self, axis: str) -> list[float]:
        """Evaluation nodes along ``axis`` (linspace over the domain for a count)."""
        import numpy as np

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


def _fill_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Defaults that depend on the PDE family (boundary kind, evaluation grid, region)."""
    pde = raw.get("pde")
    domain = raw.get("domain")
    kind = pde.get("kind") if isinstance(pde, Mapping) else None
    if not isinstance(kind, str) or kind not in TERMS or not isinstance(domain, Mapping):
        return raw
    raw = dict(raw)
    boundary = raw.get("boundary")
    if boundary is None or (isinstance(boundary, Mapping) and "kind" not in boundary):
        raw["boundary"] = {"kind": DEFAULT_BOUNDARY[kind], **(boundary or {})}
    if kind == "wave" and raw.get("initial") is None:
        raw["initial"] = {}
    ev = raw.get("evaluation")
    if ev is None or isinstance(ev, Mapping):
        ev = dict(ev or {})
        grid = ev.get("grid")
        if grid is None or isinstance(grid, Mapping):
            grid = dict(grid or {})
            for axis in domain:
                grid.setdefault(axis, 5 if axis == "t" else DEFAULT_GRID[kind])
            ev["grid"] = grid
        raw["evaluation"] = ev
    return raw


# --------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-4`` as a number (YAML 1.2; PyYAML wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


# --------------------------------------------------------------------------- overrides
def apply_overrides(raw: Any, overrides: Sequence[str], file: str = "--set") -> Any:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to a raw problem dict."""
    data = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise SpecError(file, "--set", f"{item!r} is not key.path=value")
        path, text = item.split("=", 1)
        keys = [k for k in path.strip().split(".")]
        if not all(keys):
            raise SpecError(file, "--set", f"{path!r} is not a dotted key path")
        try:
            value = read_yaml(text)
        except yaml.YAMLError:
            value = text
        node = data
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise SpecError(file, ".".join(keys[: i + 1]), "no such list index")
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
            elif isinstance(node, dict):
                if last:
                    node[key] = value
                else:
                    if not isinstance(node.get(key), (dict, list)):
                        node[key] = {}
                    node = node[key]
            else:
                raise SpecError(
                    file, ".".join(keys[:i]), "is not a mapping; cannot set a key in it"
                )
    return data


# --------------------------------------------------------------------------- errors
def _error_path(raw: Any, loc: Sequence[Any]) -> list[str]:
    """Dotted key path of a pydantic error location, dropping union tags."""
    out: list[str] = []
    node = raw
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            out.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(str(part))
            node = node[part]
        elif (
            isinstance(node, Mapping)
            and isinstance(part, str)
            and not part.startswith(("function-", "tagged-union", "union[", "velocity-"))
            and part not in ("poisson", "helmholtz", "wave", "fit")
            and not re.match(r"^(float|int|str|bool|list|dict|tuple|literal|.*\[.*\])", part)
        ):
            out.append(part)  # a missing key
            node = None
        # else: a union member tag; skip it
    return out


def _format_validation(file: str, raw: Any, exc: ValidationError) -> SpecError:
    err = exc.errors(include_url=False)[0]
    path = _error_path(raw, err["loc"])
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "unknown_key":
        path.append(ctx["key"])
        return SpecError(file, ".".join(path), f"unknown key (allowed: {ctx['allowed']})")
    if kind == "missing":
        return SpecError(file, ".".join(path), "required key is missing")
    msg = err["msg"]
    if kind in ("field", "complex", "bounds", "data", "data_file"):
        pass
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        msg = "kind must be one of poisson, helmholtz, wave, fit"
        if not path or path[-1] != "kind":
            path.append("kind")
    elif kind.startswith("value_error"):
        msg = msg.removeprefix("Value error, ")
    elif "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg}, got {err['input']!r}"
    return SpecError(file, ".".join(path), msg)


# --------------------------------------------------------------------------- semantics
def _walk_fields(obj: Any, path: str) -> Iterator[tuple[str, fieldlib.Field]]:
    if isinstance(obj, fieldlib.Field):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_fields(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _walk_fields(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _walk_fields(v, f"{path}.{i}")


def _check(spec: ProblemSpec, file: str) -> None:
    """Family rules that the per-group schema cannot express."""
    kind, axes, space = spec.kind, spec.axes, spec.space_axes

    def fail(path: str, msg: str) -> None:
        raise SpecError(file, path, msg)

    rules = {
        "poisson": (1, 3, False),
        "helmholtz": (2, 2, False),
        "wave": (1, 2, True),
        "fit": (2, 2, False),
    }
    lo, hi, timed = rules[kind]
    if not lo <= len(space) <= hi or (kind in ("helmholtz", "fit") and space != ("x", "y")):
        allowed = "x, y" if kind in ("helmholtz", "fit") else f"{lo} to {hi} of x, y, z"
        fail("domain", f"{kind} needs spatial axes {allowed} (got {', '.join(space) or 'none'})")
    if timed and "t" not in axes:
        fail("domain", "the wave equation needs a time axis t")
    if not timed and "t" in axes:
        fail("domain.t", f"{kind} is not time-dependent; remove t")
    for axis, (a, b) in spec.domain.items():
        if not a < b:
            fail(f"domain.{axis}", f"must be [low, high] with low < high, got [{a}, {b}]")
    # fields may only read the axes they are evaluated on
    for path, f in _walk_fields(spec, ""):
        allowed_names = set(axes) if path.endswith(".exact") else set(space)
        bad = sorted(f.names - allowed_names)
        if bad:
            fail(
                path,
                f"uses {', '.join(bad)}, not an axis here "
                f"(axes: {', '.join(sorted(allowed_names))})",
            )
    b = spec.boundary.kind
    allowed_b = {
        "poisson": ("dirichlet", "neumann"),
        "helmholtz": ("pml", "dirichlet"),
        "wave": ("dirichlet", "neumann", "absorbing", "none"),
        "fit": ("none",),
    }[kind]
    if b not in allowed_b:
        fail("boundary.kind", f"{b!r} is not allowed for {kind} (allowed: {', '.join(allowed_b)})")
    for face in spec.boundary.faces:
        if face[0] not in space:
            fail(f"boundary.faces.{face}", f"no axis {face[0]} in this problem")
    if spec.boundary.faces and kind != "poisson":
        fail("boundary.faces", "per-face conditions are for poisson only")
    if kind == "helmholtz" and b == "pml":
        for axis in space:
            lo_, hi_ = spec.domain[axis]
            if 2 * spec.boundary.width >= hi_ - lo_:
                fail(
                    "boundary.width",
                    f"PML of width {spec.boundary.width} leaves no interior on {axis}",
                )
    if kind == "wave" and spec.initial is None:
        fail("initial", "the wave equation needs initial conditions")
    if kind != "wave" and spec.initial is not None:
        fail("initial", f"{kind} has no initial conditions; remove this key")
    if isinstance(spec.pde, HelmholtzPDE):
        for i, s in enumerate(spec.pde.sources):
            for axis, p in zip(("x", "y"), s.position):
                lo_, hi_ = spec.domain[axis]
                if not lo_ < p < hi_:
                    fail(
                        f"pde.sources.{i}.position",
                        f"{axis}={p} is outside the domain [{lo_}, {hi_}]",
                    )
        if not spec.pde.sources and not (
            spec.is_inversion and spec.pde.data and spec.pde.data.file
        ):
            fail("pde.sources", "at least one source is needed")
        if spec.is_inversion and spec.pde.data is None:
            fail("pde.data", "an unknown velocity needs receiver data (file or synthesize)")
        if (
            spec.is_inversion
            and not spec.pde.receivers
            and not (spec.pde.data and spec.pde.data.file)
        ):
            fail("pde.receivers", "an unknown velocity needs receiver positions")
        if spec.pde.formulation == "scattered":
            _check_scattered(spec, fail)
        elif spec.pde.background is not None:
            fail("pde.background", "only used with formulation: scattered")
    allowed_terms = TERMS[kind]
    for group, keys in (
        ("loss.weights", spec.loss.weights),
        ("sampling.points", spec.sampling.points),
        *(
            (f"training.phases.{i}.weights", phase.weights)
            for i, phase in enumerate(spec.training.phases)
        ),
    ):
        extra = TERMS[kind] + (
            ("boundary", "initial", "source", "data") if group.startswith("s") else ()
        )
        for key in keys:
            if key not in extra:
                fail(
                    f"{group}.{key}", f"not a term of {kind} (allowed: {', '.join(allowed_terms)})"
                )
    grid = spec.evaluation.grid
    for axis in grid:
        if axis not in axes:
            fail(f"evaluation.grid.{axis}", f"no axis {axis} in the domain")
        g = grid[axis]
        if isinstance(g, list) and (len(g) < 1 or sorted(g) != g):
            fail(f"evaluation.grid.{axis}", "a list of nodes must be non-empty and increasing")
    for axis in axes:
        if axis not in grid:
            fail("evaluation.grid", f"missing axis {axis}")
    for axis in spec.model.input_scale:
        if axis not in axes:
            fail(f"model.input_scale.{axis}", f"no axis {axis} in the domain")
    if spec.evaluation.region:
        for axis, (a, b2) in spec.evaluation.region.items():
            if axis not in axes:
                fail(f"evaluation.region.{axis}", f"no axis {axis} in the domain")
            if not a < b2:
                fail(f"evaluation.region.{axis}", "must be [low, high] with low < high")
    if spec.training.output_layer == "least_squares":
        if not (kind == "helmholtz" and isinstance(spec.pde.velocity, UnknownVelocity)):
            fail(
                "training.output_layer", "least_squares is implemented for Helmholtz inversion only"
            )
        if spec.loss.weights.get("residual", 1.0) <= 0:
            fail("loss.weights.residual", "output_layer least_squares needs a residual weight > 0")
        for i, phase in enumerate(spec.training.phases):
            if phase.optimizer != "adam":
                fail(f"training.phases.{i}.optimizer", "output_layer least_squares needs adam")
            if phase.weights.get("residual", 1.0) <= 0:
                fail(
                    f"training.phases.{i}.weights.residual",
                    "output_layer least_squares needs a residual weight > 0",
                )
    if spec.model.init == "tuner" and spec.model.kind != "siren":
        fail("model.init", "tuner initialisation needs model.kind siren")


def _check_scattered(spec: ProblemSpec, fail: Callable[[str, str], None]) -> None:
    """A scattered-field problem needs a PML and a velocity equal to c₀ inside the layer."""
    pde = spec.pde
    if spec.boundary.kind != "pml":
        fail("pde.formulation", "scattered needs boundary.kind pml (free-space background)")
    if spec.is_inversion:
        if pde.background is not None:
            fail("pde.background", "an inversion takes c₀ from pde.velocity.background")
        return
    if pde.background is None:
        fail("pde.background", "formulation: scattered needs the background velocity c₀")
    (xl, xh), (yl, yh) = spec.domain["x"], spec.domain["y"]
    w = spec.boundary.width
    X, Y = np.meshgrid(np.linspace(xl, xh, 201), np.linspace(yl, yh, 201), indexing="ij")
    in_pml = (X < xl + w) | (X > xh - w) | (Y < yl + w) | (Y > yh - w)
    c = np.broadcast_to(np.asarray(pde.velocity({"x": X, "y": Y}), dtype=float), X.shape)
    if not np.allclose(c[in_pml], pde.background, rtol=1e-9, atol=0.0):
        fail("pde.velocity", f"must equal pde.background = {pde.background} inside the PML")


# --------------------------------------------------------------------------- loading
def parse_problem(raw: Any, file: str = "<problem>", base_dir: Path | str = ".") -> ProblemSpec:
    """Validate a raw (already YAML-parsed) problem into a :class:`ProblemSpec`."""
    if not isinstance(raw, Mapping):
        raise SpecError(file, "", "the file must hold a mapping of keys (name, pde, domain, ...)")
    raw = _fill_defaults(dict(raw))
    try:
        spec = ProblemSpec.model_validate(raw, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        raise _format_validation(file, raw, exc) from None
    _check(spec, file)
    return spec


def load_problem(path: str | Path, overrides: Sequence[str] = ()) -> ProblemSpec:
    """Read, override and validate a problem file; raises :class:`SpecError`."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(file, "", "file not found") from None
    except OSError as exc:
        raise SpecError(file, "", f"cannot read: {exc.strerror}") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(file, "", f"{where}{problem}") from None
    raw = apply_overrides(raw, overrides, file) if overrides else raw
    return parse_problem(raw, file, path.parent)
