"""Value types of the problem schema: the strict base group, numbers, fields, complex numbers.

Every YAML group is a frozen pydantic model (:class:`Strict`) that forbids unknown keys, so a
misspelt key fails before anything runs. A user error in a problem file is a
:class:`SpecError` whose ``str`` is the one-line message
``FILE: key.path: what is wrong (what is allowed)`` that the CLI prints with exit status 2.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pinnsiren.schema import fields as fieldlib

AXES = ("x", "y", "z", "t")
Axis = Literal["x", "y", "z", "t"]


class SpecError(ValueError):
    """A user error in a problem file: ``path`` is the dotted key, message one line."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + " ".join(message.split()))


def custom_error(message: str) -> PydanticCustomError:
    """A validation error whose message is reported as written (error type ``field``)."""
    return PydanticCustomError("field", "{msg}", {"msg": message})


def base_dir(info: ValidationInfo) -> Path:
    """The problem file's directory (relative paths in the file are resolved against it)."""
    return Path((info.context or {}).get("base_dir", "."))


# --------------------------------------------------------------------------- field type
def _field_before(value: Any, info: ValidationInfo) -> fieldlib.Field:
    try:
        return fieldlib.parse_field(value, base_dir(info))
    except fieldlib.FieldError as exc:
        raise custom_error(str(exc)) from None


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
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
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
