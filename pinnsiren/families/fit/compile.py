r"""Signal fitting (``pde.kind: fit``): a network :math:`u(x, y)` fitted to a 2-D signal
:math:`s` from its values, its gradient or its Laplacian, optionally from a subset of the
pixels only (inpainting) and with smoothness priors -- the image experiments of SIREN
(Sitzmann et al. 2020).

Signal grid
-----------
The signal is loaded by :func:`pinnsiren.signals.load_signal` as ``s[i_x, i_y]`` (picture
row 0 at the top, i.e. at :math:`y = y_\max`) and its pixel centres are placed on
``linspace`` over the declared domain,

.. math:: x_i = x_0 + i\,h_x,\quad h_x = \frac{x_1 - x_0}{n_x - 1},\qquad
          y_j = y_0 + j\,h_y,\quad h_y = \frac{y_1 - y_0}{n_y - 1},

which generalises the :math:`[-1, 1]^2` convention of :mod:`pinnsiren.signals`.  The
derivative targets are computed in these physical units, by ``pde.derivatives``:

* ``sobel`` (default, the SIREN paper's): the Sobel gradient :math:`G_h s \approx \nabla s`
  and the five-point Laplacian :math:`\Delta_h s \approx \Delta s` (second order, cubic ghost
  cells at the edges: ``mode="extrapolate"``).  Both *attenuate* high frequencies: at
  wavenumber :math:`k` the Sobel x-derivative is
  :math:`i\,\frac{\sin k_x h}{h}\,\frac{1 + \cos k_y h}{2}` instead of :math:`ik_x`.  A smooth
  (band-limited) network whose exact gradient matches these targets is therefore a low-passed
  image; for Grace Hopper the ideal such reconstruction scores only about 27 dB at 128^2 and
  29.5 dB at 256^2 from the Sobel gradient, 34 / 36.4 dB from the five-point Laplacian
  (FFT estimate on the mirror-extended image).
* ``spectral``: :math:`\partial_x s = \mathcal F^{-1}[i k_x \mathcal F s]`,
  :math:`\Delta s = \mathcal F^{-1}[-|k|^2 \mathcal F s]` on the half-sample mirror extension
  of :math:`s` (period :math:`2n h` per axis, Nyquist mode dropped from first derivatives) --
  exact for a band-limited signal, so the ideal reconstruction is the image itself; near the
  edges the mirror forces :math:`\partial_n s \to 0` half a pixel outside.  Every target
  depends on every pixel, so it cannot be combined with a mask.

**Evaluation grid.**  The evaluation grid of a fit problem *is* the signal grid: ``evaluate``
always samples the network at the pixel centres, and the compiled problem carries a copy of
the spec whose ``evaluation.grid`` is ``{x: n_x, y: n_y}``.  A different
``evaluation.grid`` in the YAML is overridden (the problem files set it to the signal size so
that the resolved problem reads consistently).

Loss terms (weights ``loss.weights``, batch sizes ``sampling.points``)
---------------------------------------------------------------------
Data terms, at a random batch of usable pixels :math:`P` each step (all of them, in a fixed
order, when the batch is at least their number; default batch :data:`DEFAULT_BATCH`):

* ``values``:    :math:`r = u(x_p) - s_p`;
* ``gradient``:  :math:`r = \nabla u(x_p) - (G_h s)_p` (two components, squared norm);
* ``laplacian``: :math:`r = \Delta u(x_p) - (\Delta_h s)_p`;

each giving :math:`\operatorname{mean}_p |r|^2`.  ``pde.supervision`` picks the active data
term; another data term is added only when ``loss.weights`` gives it a positive weight
explicitly (mixed supervision, e.g. a little ``values`` to pin a gradient fit's constant).
Derivatives of :math:`u` come from the forward jet engine (:func:`pinnsiren.jets.jet`).

With a mask (``pde.mask``, True = observed) the ``values`` term sees only observed pixels;
the derivative terms see only pixels whose whole :math:`3\times 3` stencil is observed
(the mask eroded by a :math:`3\times 3` square, pixels on the image edge excluded, since the
edge stencils reach four pixels inwards), so no target ever depends on an unobserved value.

Priors, at uniform random points over the whole domain (default
:data:`DEFAULT_PRIOR_POINTS`), weight ``loss.weights.<name>`` if given else
``pde.priors.<name>``; active when that weight is positive:

* ``tv``:  :math:`\operatorname{mean}\bigl(\sqrt{|\nabla u|^2 + \varepsilon} -
  \sqrt\varepsilon\bigr)`, isotropic total variation (:func:`pinnsiren.signals.total_variation`),
  gradient from the jet engine;
* ``hessian``: :math:`\operatorname{mean}\bigl(\sqrt{u_{xx}^2 + 2u_{xy}^2 + u_{yy}^2 +
  \varepsilon} - \sqrt\varepsilon\bigr)` (:func:`pinnsiren.signals.hessian_frobenius`).
  The jet engine carries only pure second derivatives :math:`\partial_i^2 u` (and a summed
  Laplacian), not the mixed :math:`u_{xy}`; and its backward is once-differentiable, so
  :math:`u_{xy}` cannot be taken by autograd *of* a jet either.  This term therefore uses
  plain nested autograd on the network's ``forward`` (:func:`hessian_autograd`: three
  reverse passes with ``create_graph=True``, then the parameter gradient is a
  double-backward), which is exact and works for every model kind; it costs roughly
  3-4x a ``tv`` term on the same points.

Read-out (``evaluate``): a :class:`~pinnsiren.io.GridData` on the signal grid with ``u`` (the
reconstruction), ``target`` (the signal), the network's exact derivatives ``u_x``, ``u_y``,
``lap_u`` (jet engine) and, with a mask, ``mask`` (1 = observed).  Its attributes record the
supervision and the gauge the metrics use (:mod:`pinnsiren.fit_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn

from pinnsiren.engine.jets import DerivativeRequest, jet
from pinnsiren.engine.terms import Batch, LinearTerm, Term
from pinnsiren.errors import UserError
from pinnsiren.families.base import CompiledProblem, grid_points, predict
from pinnsiren.families.fit.schema import MaskSpec
from pinnsiren.families.fit.signals import (
    hessian_frobenius,
    laplacian_5pt,
    load_signal,
    random_mask,
    sobel_gradient,
    total_variation,
)
from pinnsiren.output.gridfile import GridData
from pinnsiren.schema.geometry import Box
from pinnsiren.schema.groups import ProblemBase

__all__ = [
    "DATA_TERMS",
    "DEFAULT_BATCH",
    "DEFAULT_PRIOR_POINTS",
    "GAUGES",
    "FitSignal",
    "active_data_terms",
    "compile_fit",
    "gauge_of",
    "hessian_autograd",
    "load_fit_signal",
    "observed_mask",
    "prior_weights",
    "spectral_derivatives",
    "stencil_mask",
]

AXES = ("x", "y")
DATA_TERMS = ("values", "gradient", "laplacian")
#: Data-term batch per step when ``sampling.points.<term>`` is not given (capped at the pixels).
DEFAULT_BATCH = 16384
#: Prior points per step when ``sampling.points.tv``/``hessian`` is not given.
DEFAULT_PRIOR_POINTS = 4096
#: Gauge removed before the image PSNR, by the lowest-order active data term: values fix u;
#: a gradient fixes u up to a constant; a Laplacian up to a harmonic function, of which the
#: harmonic polynomials of degree <= 2 are removed (see :func:`pinnsiren.signals.fit_harmonic`).
GAUGES = {"values": "none", "gradient": "constant", "laplacian": "harmonic2"}


# --------------------------------------------------------------------------------------------
# The signal on its grid
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitSignal:
    r"""A single-channel signal on its pixel grid over the domain, with derivative targets.

    Attributes:
        x, y: pixel-centre coordinates, ``linspace`` over the domain, shapes ``(nx,)``, ``(ny,)``.
        values: :math:`s`, shape ``(nx, ny)``.
        gradient: Sobel :math:`(\partial_x s, \partial_y s)`, shape ``(nx, ny, 2)``.
        laplacian: five-point :math:`\Delta s`, shape ``(nx, ny)``.
        mask: observed pixels (True), shape ``(nx, ny)``, or None when all are observed.
    """

    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    gradient: np.ndarray
    laplacian: np.ndarray
    mask: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(len(self.x)), int(len(self.y))

    @property
    def spacing(self) -> tuple[float, float]:
        """:math:`(h_x, h_y)`."""
        return float(self.x[1] - self.x[0]), float(self.y[1] - self.y[0])

    @property
    def grid(self) -> dict[str, np.ndarray]:
        return {"x": self.x, "y": self.y}

    def points(self) -> np.ndarray:
        """Pixel centres as ``(nx*ny, 2)`` rows ``(x, y)`` in C order over ``(i_x, i_y)``."""
        return grid_points(self.grid, AXES)


def observed_mask(mask: MaskSpec | None, x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    r"""Boolean ``(nx, ny)`` mask of observed pixels, or None (all observed).

    ``random: f``: exactly :math:`\mathrm{round}(f\,n_x n_y)` pixels, uniformly at random
    (``seed``); ``box``: pixel centres with :math:`x_0 \le x \le x_1,\ y_0 \le y \le y_1` are
    unobserved (``hole: true``) or the only observed ones (``hole: false``); both: the
    intersection.
    """
    if mask is None:
        return None
    shape = (len(x), len(y))
    out = np.ones(shape, dtype=bool)
    if mask.random is not None:
        out &= random_mask(shape, mask.random, mask.seed)
    if mask.box is not None:
        (x0, x1), (y0, y1) = mask.box
        inside = ((x >= x0) & (x <= x1))[:, None] & ((y >= y0) & (y <= y1))[None, :]
        out &= ~inside if mask.hole else inside
    return out


def stencil_mask(mask: np.ndarray | None) -> np.ndarray | None:
    """Pixels whose whole 3x3 stencil is observed (edge pixels excluded); None stays None."""
    if mask is None:
        return None
    return ndimage.binary_erosion(mask, structure=np.ones((3, 3), dtype=bool), border_value=0)


def spectral_derivatives(
    s: np.ndarray, spacing: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""FFT ``(s_x, s_y, Δs)`` of ``s[i_x, i_y]`` on its half-sample mirror extension.

    Along each axis :math:`e = [s_0, \dots, s_{n-1}, s_{n-1}, \dots, s_0]` (period
    :math:`2n`), then :math:`\partial_a \to i k_a` (the Nyquist wavenumber set to 0 for the odd
    first derivative) and :math:`\Delta \to -(k_x^2 + k_y^2)`, with
    :math:`k_a = 2\pi\,\mathrm{fftfreq}(2n_a, h_a)`; the result is cut back to the image.
    """
    nx, ny = s.shape
    hx, hy = spacing
    e = np.concatenate([s, s[::-1]], axis=0)
    e = np.concatenate([e, e[:, ::-1]], axis=1)
    kx = 2 * np.pi * np.fft.fftfreq(2 * nx, hx)
    ky = 2 * np.pi * np.fft.fftfreq(2 * ny, hy)
    kx1, ky1 = kx.copy(), ky.copy()
    kx1[nx], ky1[ny] = 0.0, 0.0  # Nyquist
    spec = np.fft.fft2(e)
    cut = (slice(0, nx), slice(0, ny))
    gx = np.real(np.fft.ifft2(1j * kx1[:, None] * spec))[cut]
    gy = np.real(np.fft.ifft2(1j * ky1[None, :] * spec))[cut]
    lap = np.real(np.fft.ifft2(-(kx[:, None] ** 2 + ky[None, :] ** 2) * spec))[cut]
    return gx, gy, lap


def load_fit_signal(spec: ProblemBase) -> FitSignal:
    """Load ``pde.signal``, place it on the domain, build derivative targets and the mask."""
    pde = spec.pde
    sig = pde.signal
    s = load_signal(
        sig.path,
        grayscale=sig.grayscale,
        size=sig.size,
        normalise=sig.normalise,
        key=sig.key,
        orientation=sig.orientation,
    )
    if s.ndim != 2:
        raise UserError(
            f"{spec.name}: pde.signal: {sig.path} has {s.shape[-1]} channels; "
            "only single-channel signals are supported"
        )
    nx, ny = s.shape
    if nx < 4 or ny < 4:
        raise UserError(f"{spec.name}: pde.signal: need at least 4x4 pixels, got {nx}x{ny}")
    (x0, x1), (y0, y1) = spec.domain["x"], spec.domain["y"]
    x, y = np.linspace(x0, x1, nx), np.linspace(y0, y1, ny)
    h = (float(x[1] - x[0]), float(y[1] - y[0]))
    if pde.derivatives == "spectral":
        gx, gy, lap = spectral_derivatives(s, h)
    else:
        gx, gy = sobel_gradient(s, h)
        lap = laplacian_5pt(s, h)
    mask = observed_mask(pde.mask, x, y)
    if mask is not None and not mask.any():
        raise UserError(f"{spec.name}: pde.mask leaves no observed pixel")
    return FitSignal(x, y, s, np.stack([gx, gy], axis=-1), lap, mask)


# --------------------------------------------------------------------------------------------
# Which terms, which gauge
# --------------------------------------------------------------------------------------------


def active_data_terms(spec: ProblemBase) -> tuple[str, ...]:
    """The supervised data term, plus any other data term with an explicit positive weight."""
    pde = spec.pde
    return tuple(
        t for t in DATA_TERMS if t == pde.supervision or float(spec.loss.weights.get(t, 0.0)) > 0.0
    )


def gauge_of(spec: ProblemBase) -> str:
    """``none`` | ``constant`` | ``harmonic2``: what the data terms leave undetermined."""
    return GAUGES[active_data_terms(spec)[0]]


def prior_weights(spec: ProblemBase) -> dict[str, float]:
    """Weight of each active prior: ``loss.weights.<name>`` if given, else ``pde.priors.<name>``."""
    pde = spec.pde
    out = {}
    for name in ("tv", "hessian"):
        w = float(spec.loss.weights.get(name, getattr(pde.priors, name)))
        if w > 0:
            out[name] = w
    return out


# --------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------


def hessian_autograd(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`(u_{xx}, u_{yy}, u_{xy})` of output channel 0 at ``x`` (``(N, 2)``) by nested
    autograd, each ``(N,)``, differentiable (twice) w.r.t. the parameters.

    .. math:: \nabla u = \partial_x \textstyle\sum_n u(x_n),\qquad
              (u_{xx}, u_{xy}) = \partial_x \textstyle\sum_n u_x(x_n),\qquad
              u_{yy} = \partial_y \textstyle\sum_n u_y(x_n),

    exact because point :math:`n`'s output depends only on :math:`x_n`.
    """
    x = x.detach().requires_grad_(True)
    u = model(x)[:, 0]
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (hx,) = torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)
    (hy,) = torch.autograd.grad(g[:, 1].sum(), x, create_graph=True)
    return hx[:, 0], hy[:, 1], hx[:, 1]


def _as_rows(a: np.ndarray, keep: np.ndarray) -> Tensor:
    """Rows ``keep`` of a ``(nx, ny)`` or ``(nx, ny, K)`` array as a float64 ``(M, K)`` tensor."""
    flat = a.reshape(a.shape[0] * a.shape[1], -1)
    return torch.as_tensor(np.ascontiguousarray(flat[keep]), dtype=torch.float64)


@torch.no_grad()
def network_derivatives(
    model: nn.Module, points: np.ndarray, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(u_x, u_y, Δu)`` of channel 0 at ``points`` by the jet engine, float64 numpy."""
    param = next(model.parameters())
    req = DerivativeRequest(gradient=(0, 1), laplacian=(0, 1))
    parts: list[list[np.ndarray]] = [[], [], []]
    for start in range(0, len(points), chunk):
        x = torch.as_tensor(points[start : start + chunk], dtype=param.dtype, device=param.device)
        j = jet(model, x, req)
        assert j.laplacian is not None
        for k, t in enumerate((j.gradient[0], j.gradient[1], j.laplacian)):
            parts[k].append(t[:, 0].double().cpu().numpy())
    gx, gy, lap = (np.concatenate(p) for p in parts)
    return gx, gy, lap


# --------------------------------------------------------------------------------------------
# Compile
# --------------------------------------------------------------------------------------------


def compile_fit(spec: ProblemBase, gen: torch.Generator) -> CompiledProblem:
    """Loss terms and read-out of a fit problem (module docstring)."""
    pde = spec.pde
    sig = load_fit_signal(spec)
    nx, ny = sig.shape
    coords = sig.points()
    data_terms = active_data_terms(spec)
    gauge = GAUGES[data_terms[0]]
    terms: list[Term] = []

    def batcher(name: str, usable: np.ndarray, target: np.ndarray):
        """Sampler of ``{"x", "s"}`` over the usable pixels (flat boolean ``usable``): all of
        them, in order, when asked for at least as many; else a random subset."""
        keep = np.flatnonzero(usable)
        if keep.size == 0:
            raise UserError(
                f"{spec.name}: pde.mask leaves no pixel for the {name} term "
                "(derivative terms need the whole 3x3 stencil observed)"
            )
        pts = torch.as_tensor(coords[keep], dtype=torch.float64)
        tgt = _as_rows(target, keep)

        def sample(step: int, n: int) -> Batch:
            if n >= len(keep):
                return {"x": pts, "s": tgt}
            idx = torch.randperm(len(keep), generator=gen)[:n]
            return {"x": pts[idx], "s": tgt[idx]}

        return sample, min(DEFAULT_BATCH, keep.size)

    if sig.mask is not None and pde.derivatives == "spectral" and data_terms != ("values",):
        raise UserError(
            f"{spec.name}: pde.derivatives: spectral targets depend on every pixel and cannot "
            "be used with pde.mask (use sobel)"
        )
    all_pixels = np.ones(nx * ny, dtype=bool)
    obs = sig.mask.reshape(-1) if sig.mask is not None else all_pixels
    stencil = stencil_mask(sig.mask)
    obs_d = stencil.reshape(-1) if stencil is not None else all_pixels

    grad_req = DerivativeRequest(gradient=(0, 1))
    requests = {
        "values": DerivativeRequest(),
        "gradient": grad_req,
        "laplacian": DerivativeRequest(laplacian=(0, 1)),
    }
    operators = {
        "values": lambda j, b: j.value,
        "gradient": lambda j, b: torch.cat([j.gradient[0], j.gradient[1]], dim=-1),
        "laplacian": lambda j, b: j.laplacian,
    }
    targets = {"values": sig.values, "gradient": sig.gradient, "laplacian": sig.laplacian}
    for name in data_terms:
        usable = obs if name == "values" else obs_d
        sampler, default = batcher(name, usable, targets[name])
        terms.append(
            LinearTerm(
                name=name,
                weight=spec.weight(name),
                sampler=sampler,
                points=spec.points(name, default),
                request=requests[name],
                operator=operators[name],
                target=_signal_target,
            )
        )

    box = Box.from_domain(spec.domain, AXES)

    def tv(model: nn.Module, batch: Batch) -> Tensor:
        j = jet(model, batch["x"], grad_req)
        return total_variation(j.gradient[0], j.gradient[1])

    def hessian(model: nn.Module, batch: Batch) -> Tensor:
        uxx, uyy, uxy = hessian_autograd(model, batch["x"])
        return hessian_frobenius(uxx, uyy, uxy)

    priors = {"tv": tv, "hessian": hessian}
    for name, w in prior_weights(spec).items():
        terms.append(
            Term(
                name=name,
                weight=w,
                sampler=lambda step, n: {"x": box.uniform(n, gen)},
                points=spec.points(name, DEFAULT_PRIOR_POINTS),
                fn=priors[name],
                reduce=lambda r, _b: r,
            )
        )

    # the evaluation grid of a fit problem is the signal grid
    ev = spec.evaluation.model_copy(update={"grid": {"x": nx, "y": ny}})
    spec_out = spec.model_copy(update={"evaluation": ev})

    def evaluate(model: nn.Module) -> GridData:
        data = GridData(
            grid=dict(sig.grid),
            attrs={
                "problem": spec.name,
                "kind": "fit",
                "origin": "pinn",
                "supervision": pde.supervision,
                "data_terms": ",".join(data_terms),
                "gauge": gauge,
            },
            problem=spec_out.to_yaml(),
        )
        data.add("u", predict(model, coords)[:, 0].reshape(nx, ny), AXES)
        data.add("target", sig.values, AXES)
        gx, gy, lap = network_derivatives(model, coords)
        data.add("u_x", gx.reshape(nx, ny), AXES)
        data.add("u_y", gy.reshape(nx, ny), AXES)
        data.add("lap_u", lap.reshape(nx, ny), AXES)
        if sig.mask is not None:
            data.add("mask", sig.mask.astype(np.float64), AXES)
        return data

    return CompiledProblem(spec_out, AXES, 1, terms, evaluate)


def _signal_target(b: Batch) -> Tensor:
    """The pixels' target values (N, components)."""
    return b["s"]
