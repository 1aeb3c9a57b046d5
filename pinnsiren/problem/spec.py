"""The whole problem schema: :class:`ProblemSpec`, whose ``pde`` is the union of the
registered families' groups (discriminated by ``pde.kind``)."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from pinnsiren.families import FAMILIES, Family
from pinnsiren.schema.groups import ProblemBase

PDE = Annotated[Union[tuple(f.schema for f in FAMILIES.values())], Field(discriminator="kind")]  # noqa: UP007


class ProblemSpec(ProblemBase):
    """A whole problem file (typed, immutable)."""

    pde: PDE

    @property
    def family(self) -> Family:
        """The problem's PDE family."""
        return FAMILIES[self.kind]


__all__ = ["ProblemSpec"]
