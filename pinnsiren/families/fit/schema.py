"""The ``pde`` group of the fit family: the signal, what supervises the fit, mask and priors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from pinnsiren.families.fit.signals import (
    SAMPLE_PREFIX,
    SUPPORTED_EXTENSIONS,
    SignalError,
    sample_data_path,
)
from pinnsiren.schema.types import Interval, NonNegFloat, Strict, base_dir


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
        if value.startswith(SAMPLE_PREFIX):
            try:
                sample_data_path(value[len(SAMPLE_PREFIX) :])
            except SignalError as exc:
                raise PydanticCustomError("field", "{msg}", {"msg": str(exc)}) from None
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = base_dir(info) / path
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
