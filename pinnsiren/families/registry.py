"""The registry of PDE families: ``pde.kind`` → :class:`~pinnsiren.families.base.Family`.

A family module ends with ``register(MyFamily())``; :mod:`pinnsiren.families` imports every
module of the package, so the registry is complete once the package is imported.
"""

from __future__ import annotations

from pinnsiren.families.base import Family

FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (its ``kind`` must be new)."""
    if family.kind in FAMILIES:
        raise ValueError(f"PDE family {family.kind!r} is registered twice")
    FAMILIES[family.kind] = family
    return family
