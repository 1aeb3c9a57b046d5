"""``pinnsiren reference``: the family's finite-difference reference on the evaluation grid.

The family samples the problem's coefficient fields on the grid (the same
:class:`~pinnsiren.schema.fields.Field` objects the PINN evaluates) and calls
:mod:`reference_solvers`. With ``reference.refine = r`` the solve runs on a grid r times finer
(``(n − 1)·r + 1`` nodes per axis) and is sampled back onto the evaluation nodes, which must
then be uniform.
"""

from __future__ import annotations

import time

from pinnsiren.errors import UserError
from pinnsiren.output.gridfile import GridData
from pinnsiren.problem.spec import ProblemSpec


def compute_reference(spec: ProblemSpec) -> GridData:
    """The FD reference of a problem on its evaluation grid (``attrs["seconds"]`` its time)."""
    start = time.perf_counter()
    try:
        data = spec.family.reference(spec)
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"{spec.name}: reference solver: {exc}") from None
    if data is None:
        raise UserError(f"{spec.name}: no finite-difference reference for pde.kind {spec.kind}")
    data.attrs["seconds"] = time.perf_counter() - start
    return data
