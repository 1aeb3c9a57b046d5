r"""Analytic incident field of a Gaussian source in a homogeneous medium (free space).

For the Helmholtz equation of :mod:`pinnsiren.pdes.helmholtz` with a constant velocity
``c0`` (wavenumber k = ω/c0, time convention e^{+iωt}),

    (Δ + k²) u₀ = a g_σ(x − x_s),   g_σ(r) = exp(−r²/2σ²) / (2πσ²),

the outgoing solution is the convolution of g_σ with the Green's function
G(r) = (i/4) H₀⁽²⁾(kr). Averaging G over the angle between the two points with Graf's
addition theorem, ⟨H₀⁽²⁾(k|x − y|)⟩ = J₀(k r_<) H₀⁽²⁾(k r_>), gives a radial integral
(r = |x − x_s|):

    u₀(r) = a (i/4) [ H₀⁽²⁾(kr) ∫₀^r J₀(kρ) g(ρ) 2πρ dρ + J₀(kr) ∫_r^∞ H₀⁽²⁾(kρ) g(ρ) 2πρ dρ ].

Outside the source (r ≥ 8σ, where g has decayed by e^{−32}) the first integral is the source's
Fourier transform at |ξ| = k, exp(−k²σ²/2), and the second vanishes, so
u₀ = a (i/4) H₀⁽²⁾(kr) exp(−k²σ²/2) in closed form. Inside, both integrals are tabulated once
by the trapezoidal rule on 4001 radii (error below 1e-6 of |u₀|) and interpolated; u₀ is finite
at r = 0 (the logarithmic singularity of G is smoothed by the Gaussian).

Used by the scattered-field formulation of the velocity inversion
(:mod:`pinnsiren.pdes.inversion`), where u = u₀ + u_s and the network learns only u_s.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.integrate import cumulative_trapezoid
from scipy.special import hankel2, jv

#: Radius (in σ) beyond which the closed form is used.
NEAR_RADIUS = 8.0
_NODES = 4001


@lru_cache(maxsize=32)
def _near_profile(k: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(ρ, u₀(ρ)/a) on [0, 8σ] for the Gaussian source of unit amplitude."""
    rho = np.linspace(0.0, NEAR_RADIUS * sigma, _NODES)
    weight = np.exp(-(rho**2) / (2 * sigma**2)) / sigma**2 * rho  # g(ρ) 2πρ
    h = np.zeros(rho.shape, dtype=complex)
    h[1:] = hankel2(0, k * rho[1:])  # ρ·H₀(kρ) → 0 at ρ = 0: the integrand vanishes there
    j0 = jv(0, k * rho)
    inner = cumulative_trapezoid(j0 * weight, rho, initial=0.0)
    hw = h * weight
    outer = np.trapezoid(hw, rho) - cumulative_trapezoid(hw, rho, initial=0.0)
    profile = 0.25j * (h * inner + j0 * outer)
    profile[0] = 0.25j * outer[0]  # H₀(0)·0 is 0 in the limit (r log r → 0)
    return rho, profile


def gaussian_source_field(
    r: np.ndarray, omega: float, sigma: float, c0: float = 1.0, amplitude: complex = 1.0
) -> np.ndarray:
    """u₀ at distances ``r`` from a Gaussian source (see module docstring); complex."""
    if not (sigma > 0 and c0 > 0 and omega > 0):
        raise ValueError("omega, sigma and c0 must be positive")
    k = omega / c0
    r = np.asarray(r, dtype=float)
    far = r >= NEAR_RADIUS * sigma
    out = np.empty(r.shape, dtype=complex)
    out[far] = 0.25j * hankel2(0, k * r[far]) * math.exp(-((k * sigma) ** 2) / 2)
    if (~far).any():
        rho, profile = _near_profile(float(k), float(sigma))
        rn = r[~far]
        out[~far] = np.interp(rn, rho, profile.real) + 1j * np.interp(rn, rho, profile.imag)
    return complex(amplitude) * out


def incident_field(x: np.ndarray, y: np.ndarray, sources, omega: float, c0: float) -> np.ndarray:
    """u₀ of every source (``position``, ``amplitude``, ``sigma``) at points: (S, *shape)."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return np.stack(
        [
            gaussian_source_field(
                np.hypot(x - s.position[0], y - s.position[1]), omega, s.sigma, c0, s.amplitude
            )
            for s in sources
        ]
    )
