"""FreSh ω₀ selection for a problem (``pinnsiren tune``, ``model.omega_0: auto``).

The target is what the problem's family knows before it is solved
(:meth:`~pinnsiren.families.base.Family.fresh_target`: the initial displacement of a wave, a
coarse FD solution of a Helmholtz problem, a Poisson right-hand side, a fit's signal), sampled
on a regular grid of ``model.fresh.grid`` nodes per spatial axis. The untrained SIREN of the
problem's ``model`` group is evaluated on the same grid for each candidate ω₀ and several seeds,
and :func:`pinnsiren.engine.frequency.select_omega_0` picks the ω₀ whose output spectrum is
nearest (Wasserstein-1) to the target's.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from pinnsiren.engine.frequency import FreshResult, select_omega_0
from pinnsiren.engine.nets import build_model
from pinnsiren.problem.spec import ProblemSpec


def fresh_for_problem(
    spec: ProblemSpec, in_axes: tuple[str, ...], out_features: int
) -> tuple[FreshResult, float]:
    """Run FreSh on the problem (see module docstring); returns the result and its seconds."""
    start = time.perf_counter()
    target, mesh = spec.family.fresh_target(spec)
    shape = np.shape(next(iter(mesh.values())))
    coords = np.stack([np.broadcast_to(mesh[a], shape) for a in in_axes], axis=-1)
    m = spec.model
    scale = [float(m.input_scale.get(a, 1.0)) for a in in_axes] if m.input_scale else None

    def factory(omega: float, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(
            "siren",
            len(in_axes),
            out_features,
            width=m.width,
            depth=m.depth,
            omega_0=omega,
            hidden_omega=m.hidden_omega,
            input_scale=scale,
        )

    result = select_omega_0(
        target, coords, factory, omegas=m.fresh.omegas, n_inits=m.fresh.inits, size=m.fresh.size
    )
    return result, time.perf_counter() - start
