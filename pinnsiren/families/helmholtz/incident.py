r"""Analytic incident field of a Gaussian source in a homogeneous medium (free space).

For the Helmholtz equation of :mod:`pinnsiren.families.helmholtz.operator` with a constant velocity
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

Used by the scattered-field formulation (forward and inversion), where u = u₀ + u_s and the
network learns only u_s, and by the near-field subtraction of the total field
(:func:`near_field`), where u = χ u₀ + v with a radial cutoff χ.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.integrate import cumulative_trapezoid
from scipy.special import hankel2, jv

from reference_solvers.helmholtz import gaussian_density

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


def cutoff(r: np.ndarray, inner: float, outer: float) -> tuple[np.ndarray, ...]:
    """χ(r) = 1 − S(s), s = (r − inner)/(outer − inner) clipped to [0, 1], with the septic
    smoothstep S = 35s⁴ − 84s⁵ + 70s⁶ − 20s⁷ (χ is C³: its first three derivatives vanish at
    both ends); returns χ, χ', χ''."""
    width = outer - inner
    s = np.clip((r - inner) / width, 0.0, 1.0)
    chi = 1 - (35 * s**4 - 84 * s**5 + 70 * s**6 - 20 * s**7)
    d1 = -(140 * s**3 - 420 * s**4 + 420 * s**5 - 140 * s**6) / width
    d2 = -(420 * s**2 - 1680 * s**3 + 2100 * s**4 - 840 * s**5) / width**2
    return chi, d1, d2


def near_field(
    x: np.ndarray,
    y: np.ndarray,
    sources,
    omega: float,
    c0: float,
    inner: float,
    outer: float,
    coefficients: dict[str, np.ndarray] | None = None,
    k2: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""ψ = Σ_s χ(|x − x_s|) u₀_s(x) at points, and (given the operator's ``coefficients`` A,
    A_x, B, B_y, C and ``k2`` = ω²/c² at the points) the forcing Σ_s (C f_s − L ψ_s) that the
    rest v = u − ψ of the total field sees (complex arrays).

    Inside ``inner`` (≥ 8σ, c = c₀, no PML) χ = 1 and L ψ_s = f_s: the source and the
    subtracted field cancel, that point of the forcing is 0. Outside, f_s has vanished and L ψ_s
    = A ψ_xx + A_x ψ_x + B ψ_yy + B_y ψ_y + C k² ψ from the closed form
    u₀ = a (i/4) H₀⁽²⁾(kr) e^{−k²σ²/2}: with ψ(r) radial, ψ_x = ψ' x/r,
    ψ_xx = ψ'' x²/r² + ψ' (1/r − x²/r³), u₀' = −a(i/4) k H₁⁽²⁾(kr) e^{−k²σ²/2} and
    u₀'' = −a(i/4) k² (H₀⁽²⁾(kr) − H₁⁽²⁾(kr)/(kr)) e^{−k²σ²/2}.
    """
    k = omega / c0
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    psi = np.zeros(x.shape, dtype=complex)
    forcing = None if coefficients is None else np.zeros(x.shape, dtype=complex)
    for s in sources:
        dx, dy = x - s.position[0], y - s.position[1]
        r = np.hypot(dx, dy)
        near = r < inner
        psi[near] += gaussian_source_field(r[near], omega, s.sigma, c0, s.amplitude)
        far = ~near
        if not far.any():
            continue
        rf, ex, ey = r[far], dx[far], dy[far]
        amp = complex(s.amplitude) * 0.25j * math.exp(-((k * s.sigma) ** 2) / 2)
        h0, h1 = hankel2(0, k * rf), hankel2(1, k * rf)
        u0, du, ddu = amp * h0, -amp * k * h1, -amp * k**2 * (h0 - h1 / (k * rf))
        chi, dchi, ddchi = cutoff(rf, inner, outer)
        value = chi * u0
        psi[far] += value
        if forcing is None:
            continue
        d1 = dchi * u0 + chi * du
        d2 = ddchi * u0 + 2 * dchi * du + chi * ddu
        co = {name: c[far] for name, c in coefficients.items()}
        operator = (
            co["A"] * (d2 * ex**2 / rf**2 + d1 * (1 / rf - ex**2 / rf**3))
            + co["Ax"] * d1 * ex / rf
            + co["B"] * (d2 * ey**2 / rf**2 + d1 * (1 / rf - ey**2 / rf**3))
            + co["By"] * d1 * ey / rf
            + co["C"] * k2[far] * value
        )
        density = gaussian_density(x[far], y[far], s.position, s.sigma, s.amplitude)
        forcing[far] += co["C"] * density - operator
    return psi, forcing
