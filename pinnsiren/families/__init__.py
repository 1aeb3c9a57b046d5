"""PDE families: one module (or package) per family, each a registered
:class:`~pinnsiren.families.base.Family`; nothing else knows a PDE.

Importing this package imports every module and sub-package in it (plugin discovery by
:func:`importlib.import_module`, the one dynamic import of the project), so that adding a family
is adding its module. :data:`FAMILIES` maps ``pde.kind`` to the family, in the order of the
module names.
"""

from __future__ import annotations

import importlib
import pkgutil

from pinnsiren.families.base import Family
from pinnsiren.families.registry import FAMILIES, register

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")


def family_of(kind: str) -> Family:
    """The registered family of ``pde.kind``."""
    return FAMILIES[kind]


__all__ = ["FAMILIES", "Family", "family_of", "register"]
