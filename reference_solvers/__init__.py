"""Finite-difference reference solvers (numpy/scipy only; no torch, no YAML).

Modules (grids are node-centred ``np.linspace`` axes including the boundary nodes, arrays
indexed ``[i_x, i_y, (i_z)]``):

* :mod:`reference_solvers.poisson`   ``-Δu = f`` in 1-D/2-D/3-D, Dirichlet/Neumann faces.
* :mod:`reference_solvers.helmholtz` ``(Δ + ω²/c²) u = f`` in 2-D, ``e^{+iωt}``, PML.
* :mod:`reference_solvers.wave`      ``u_tt = c² Δu`` in 1-D/2-D, leapfrog.
* :mod:`reference_solvers.factorization` sparse direct solves (PARDISO if installed, SuperLU).
"""

from .factorization import Factorization, available_backends
from .helmholtz import (
    PML,
    ResolutionWarning,
    gaussian_density,
    gaussian_source,
    helmholtz_operator,
    helmholtz_rhs,
    pml_padding,
    pml_profile,
    solve_helmholtz,
)
from .poisson import FaceCondition, IncompatibleDataWarning, solve_poisson
from .wave import solve_wave, stable_time_step, wave_energy

__all__ = [
    "PML",
    "FaceCondition",
    "Factorization",
    "IncompatibleDataWarning",
    "ResolutionWarning",
    "available_backends",
    "gaussian_density",
    "gaussian_source",
    "helmholtz_operator",
    "helmholtz_rhs",
    "pml_padding",
    "pml_profile",
    "solve_helmholtz",
    "solve_poisson",
    "solve_wave",
    "stable_time_step",
    "wave_energy",
]
