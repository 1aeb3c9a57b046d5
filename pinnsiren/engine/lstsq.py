r"""Least-squares solves of a network's affine output layer (``training.output_layer:
least_squares``).

Maths
-----
The field network is u(x) = W φ(x) + b with φ its last hidden layer's K activations and an
affine output layer of C = G·p channels: G identical groups of p channels (p = 1 for a real
field, p = 2 for a complex field stored as (Re, Im); G > 1 when one trunk carries several
independent fields, e.g. one per source of an inversion). A :class:`~pinnsiren.engine.terms.
LinearTerm` has the residual r = L[u] − g, affine in (W, b). With the constant feature
φ_K = 1 (the bias column) and e_c the unit vector of channel c of a group, group k's residual is

    r_k = Σ_{c, j} θ_{(c, j), k} L[e_c φ_j] − g_k,     θ_{(c, j), k} = W[k p + c, j]  (b at j = K),

one matrix A = [L[e_c φ_j]] for every group and one right-hand side per group. Rows are the
residual components at every point of every term in the fit, scaled by √(w_t / N_t) (w_t the
term's current weight λ_t w_t, N_t its number of points), so that ‖A θ − g‖² equals the weighted
sum of the terms' mean squared residuals: the training loss of those terms. (A term's own
``reduce``, e.g. causal weights, does not enter the rows.)

Solves
------
* Every step (``least_squares.every_step``, Adam phases): θ = (AᵀA + λI)⁻¹ Aᵀg with
  λ = (1e-10 + ridge) · mean diag(AᵀA), by :func:`torch.linalg.solve`, which autograd
  differentiates: the hidden layers (and a coefficient network such as an inversion's
  velocity) are trained for the best output layer. Every linear term's residual for the step
  is then A_t θ − g_t — also for a term outside the fit (an inversion's receiver data).
* Final (:meth:`OutputLayerSolve.finish`, after training, no gradient): fresh points (the
  end of every schedule), rows at least ``rows_per_column`` times the columns, float64,
  columns scaled to unit norm, the ridge as extra rows √ridge·I, then
  ``solver: qr`` — Householder QR (``torch.geqrf``) and a triangular solve, backward stable,
  accurate to round-off even for the nearly dependent columns of wide random features
  (LAPACK's rank-revealing ``gelsy`` truncates those too early; the conditioning
  min/max |R_ii| is reported instead) — or ``solver: normal``, the normal equations
  accumulated block by block (memory O(columns²), never the whole matrix) with a 1e-13
  ridge, accurate to about 1e-8 of the residual scale; ``auto`` takes QR when it fits in
  memory. A zero column block or non-finite rows are an error (never NaN), as is a system
  larger than the memory available, checked before anything is allocated.

Features may be tied (``tie``: K' combinations of the K + 1 features, e.g. the ± pairs of the
wave family's light-cone features), and a complex-linear operator on (Re, Im) pairs assembles
one channel only (the other's columns are its rows times i).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pinnsiren.engine.hooks import StepHooks
from pinnsiren.engine.jets import Jet, jet
from pinnsiren.engine.terms import Batch, LinearTerm
from pinnsiren.errors import UserError

#: Bound on the temporaries of one assembly chunk (points × features × components).
_CHUNK_BYTES = 256 * 2**20
#: Relative ridge of the differentiable per-step solve, and the floor of the final normal
#: equations (after column scaling).
_NORMAL_RIDGE = 1e-10
_NORMAL_FLOOR = 1e-13


class LeastSquaresError(UserError):
    """A least-squares system that cannot be solved (empty, singular, not finite, too big)."""


# --------------------------------------------------------------------------------- assembly
def _with_constant(j: Jet, tie: Tensor | None = None, constant: float = 1.0) -> Jet:
    """The feature jet with the constant feature φ_K = ``constant`` appended (zero
    derivatives), mapped by ``tie`` ((K + 1, K'): the solved features are φ·tie) when given."""

    def pad(t: Tensor, value: float) -> Tensor:
        out = torch.cat([t, torch.full_like(t[:, :1], value)], dim=1)
        return out if tie is None else out @ tie.to(out.dtype)

    return Jet(
        value=pad(j.value, constant),
        gradient={a: pad(t, 0.0) for a, t in j.gradient.items()},
        second={a: pad(t, 0.0) for a, t in j.second.items()},
        laplacian=None if j.laplacian is None else pad(j.laplacian, 0.0),
    )


def _in_channel(t: Tensor, c: int, p: int) -> Tensor:
    """A feature column (n,) placed in channel c of p channels: (n, p), zeros elsewhere."""
    zero = torch.zeros_like(t)
    return torch.stack([t if i == c else zero for i in range(p)], dim=-1)


def _operator_columns(term: LinearTerm, feats: Jet, coeffs: Batch, group: int) -> Tensor:
    """[L[e_c φ_j]] for one chunk of points: (n, m, p·(K + 1)), columns ordered (c, j). For a
    complex-linear operator on pairs the imaginary channel's columns are the real channel's
    times i: each residual pair (a, b) becomes (−b, a)."""
    grad_axes, second_axes = list(feats.gradient), list(feats.second)
    has_lap = feats.laplacian is not None
    rotate = term.complex_pairs and group == 2
    columns = []
    for c in range(1 if rotate else group):

        def column(value: Tensor, *derivs: Tensor, c: int = c) -> Tensor:
            k = len(grad_axes)
            one = Jet(
                value=_in_channel(value, c, group),
                gradient={a: _in_channel(t, c, group) for a, t in zip(grad_axes, derivs[:k])},
                second={
                    a: _in_channel(t, c, group)
                    for a, t in zip(second_axes, derivs[k : k + len(second_axes)])
                },
                laplacian=_in_channel(derivs[-1], c, group) if has_lap else None,
            )
            r = term.operator(one, coeffs)
            return r if r.dim() == 2 else r[:, None]

        tensors = [feats.value, *feats.gradient.values(), *feats.second.values()]
        if has_lap:
            tensors.append(feats.laplacian)
        columns.append(torch.func.vmap(column, in_dims=1, out_dims=2)(*tensors))
    if rotate:
        real = columns[0]
        columns.append(torch.stack([-real[:, 1::2], real[:, 0::2]], dim=2).flatten(1, 2))
    return torch.cat(columns, dim=2)


def _split(batch: Batch, n: int, size: int) -> list[Batch]:
    """The batch cut into chunks of ``size`` points (tensors whose first axis is the points)."""
    if size >= n:
        return [batch]
    return [
        {k: v[start : start + size] if v.shape[:1] == (n,) else v for k, v in batch.items()}
        for start in range(0, n, size)
    ]


def iter_term_rows(
    term: LinearTerm,
    model: nn.Module,
    batch: Batch,
    group: int,
    *,
    chunk: bool = False,
    tie: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """A term's rows, unweighted, in pieces of points: A_t (n·m, p·K'), g_t (n·m, G), with
    K' = K + 1 features, or the columns of ``tie`` (features whose output weights are tied).

    ``chunk`` bounds each piece's temporaries (for the big final system; off for the
    differentiable per-step solve, which needs one piece).
    """
    net = term.network(model)
    n = len(batch["x"])
    size = n
    if chunk:
        per_point = (net.last.in_features + 1) * group * 8 * 8 * max(1, net.last.out_features)
        size = max(1, _CHUNK_BYTES // per_point)
    for part in _split(batch, n, size):
        coeffs = term.prepare(part, model)
        constant = getattr(net, "feature_constant", 1.0)
        feats = _with_constant(jet(net, part["x"], term.request, features=True), tie, constant)
        a = _operator_columns(term, feats, coeffs, group)
        g = term.target(coeffs)
        g = g if g.dim() == 2 else g[:, None]
        rows, m = a.shape[0], a.shape[1]
        groups = g.shape[1] // m
        yield (
            a.reshape(rows * m, -1),
            g.reshape(rows, groups, m).permute(0, 2, 1).reshape(rows * m, groups),
        )


def term_rows(
    term: LinearTerm, model: nn.Module, batch: Batch, group: int, tie: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """A term's rows in one piece (differentiable): A_t (N·m, p·K'), g_t (N·m, G)."""
    a, g = next(iter_term_rows(term, model, batch, group, tie=tie))
    return a, g


def residual_of(a: Tensor, g: Tensor, theta: Tensor, m: int) -> Tensor:
    """A θ − g back in the term's residual layout (N, G·m)."""
    r = a @ theta - g  # (N·m, G)
    n = r.shape[0] // m
    return r.reshape(n, m, -1).permute(0, 2, 1).reshape(n, -1)


# --------------------------------------------------------------------------------- solves
def solve_normal(a: Tensor, g: Tensor, ridge: float = 0.0) -> Tensor:
    """θ = (AᵀA + λI)⁻¹Aᵀg, λ = (1e-10 + ridge)·mean diag(AᵀA); differentiable."""
    normal = a.mT @ a
    lam = (_NORMAL_RIDGE + ridge) * normal.diagonal().mean().detach()
    eye = torch.eye(normal.shape[0], dtype=normal.dtype, device=normal.device)
    try:
        theta = torch.linalg.solve(normal + lam * eye, a.mT @ g)
    except RuntimeError as exc:  # torch.linalg.LinAlgError is a RuntimeError
        raise LeastSquaresError(
            f"least squares: the normal equations are singular ({exc})"
        ) from None
    if not torch.isfinite(theta).all():
        raise LeastSquaresError("least squares: the solution is not finite (check the weights)")
    return theta


@dataclass
class Solution:
    """A final solve: θ ((columns, G)), how it was found and how well-posed it was."""

    theta: Tensor
    solver: str
    rows: int
    columns: int
    #: min/max of |R_ii| (QR) or of the scaled normal matrix's Cholesky pivots squared
    #: (normal): 1e-16 is the edge of float64; random features are often near it
    conditioning: float
    ridge: float


Blocks = Callable[[], Iterator[tuple[Tensor, Tensor]]]


def _check_finite(a: Tensor, g: Tensor) -> None:
    if not (torch.isfinite(a).all() and torch.isfinite(g).all()):
        raise LeastSquaresError("least squares: the system holds NaN or infinite entries")


def _scale_of(norms2: Tensor, columns: int) -> Tensor:
    """1/‖column‖ (1 for an all-zero column); a system with no non-zero column is singular."""
    if not bool((norms2 > 0).any()):
        raise LeastSquaresError(
            f"least squares: the system is singular (rank 0 of {columns} columns: every "
            "feature's residual vanishes at the points)"
        )
    return torch.where(norms2 > 0, norms2.rsqrt(), torch.ones_like(norms2))


def _singular(columns: int, where: str) -> LeastSquaresError:
    return LeastSquaresError(
        f"least squares: the system is singular ({where} of {columns} columns is dependent "
        "on the others at these points); add rows (training.least_squares.points) or set "
        "training.least_squares.ridge"
    )


def solve_qr(
    blocks: Blocks, rows: int, columns: int, groups: int, ridge: float, device: torch.device
) -> Solution:
    """min ‖Aθ − g‖² + ridge‖Dθ‖² by Householder QR (``torch.geqrf``), columns scaled to unit
    norm (D the column norms), the ridge as extra rows. The matrix is built here from
    ``blocks`` (weighted row blocks) so that only it and its factor are held."""
    extra = columns if ridge > 0 else 0
    a = torch.zeros(rows + extra, columns, dtype=torch.float64, device=device)
    g = torch.zeros(rows + extra, groups, dtype=torch.float64, device=device)
    at = 0
    for a_part, g_part in blocks():
        a[at : at + len(a_part)] = a_part
        g[at : at + len(a_part)] = g_part
        at += len(a_part)
    _check_finite(a, g)
    scale = _scale_of((a[:rows] ** 2).sum(dim=0), columns)
    a[:rows] *= scale
    if ridge > 0:
        a[rows:] = math.sqrt(ridge) * torch.eye(columns, dtype=a.dtype, device=device)
    qr, tau = torch.geqrf(a)
    del a
    qtg = torch.ormqr(qr, tau, g, left=True, transpose=True)[:columns]
    r = qr[:columns].triu()
    del qr
    diag = r.diagonal().abs()
    if float(diag.min()) == 0.0:
        raise _singular(columns, f"column {int(diag.argmin())}")
    theta = torch.linalg.solve_triangular(r, qtg, upper=True)
    if not torch.isfinite(theta).all():
        raise _singular(columns, "a column")
    conditioning = float(diag.min() / diag.max())
    return Solution(theta * scale[:, None], "qr", rows, columns, conditioning, ridge)


def solve_normal_blocks(
    blocks: Blocks, rows: int, columns: int, groups: int, ridge: float, device: torch.device
) -> Solution:
    """θ from the normal equations accumulated block by block (memory O(columns²)): the
    scaled matrix D⁻¹AᵀAD⁻¹ + λI by Cholesky, λ = 1e-13 + ridge (raised tenfold until the
    factorisation succeeds). Accurate to about √ε of the residual scale (1e-8): for
    systems too large to factor by QR."""
    normal = torch.zeros(columns, columns, dtype=torch.float64, device=device)
    rhs = torch.zeros(columns, groups, dtype=torch.float64, device=device)
    for a_part, g_part in blocks():
        a_part, g_part = a_part.double(), g_part.double()
        _check_finite(a_part, g_part)
        normal.addmm_(a_part.mT, a_part)
        rhs.addmm_(a_part.mT, g_part)
    scale = _scale_of(normal.diagonal().clone(), columns)
    normal.mul_(scale[:, None]).mul_(scale[None, :])
    rhs.mul_(scale[:, None])
    lam = _NORMAL_FLOOR + ridge
    eye = torch.eye(columns, dtype=normal.dtype, device=device)
    for _ in range(8):
        chol, info = torch.linalg.cholesky_ex(normal + lam * eye)
        if int(info) == 0:
            break
        lam *= 10.0
    else:
        raise _singular(columns, "a column")
    theta = torch.cholesky_solve(rhs, chol)
    pivots = chol.diagonal() ** 2
    return Solution(
        theta * scale[:, None], "normal", rows, columns, float(pivots.min() / pivots.max()), lam
    )


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new system on ``device`` (None when the platform does not tell)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_needed(solver: str, rows: int, columns: int) -> int:
    """Bytes a final solve holds: the matrix and its QR factor (``qr``), or the normal matrix,
    its Cholesky factor and one block of rows (``normal``)."""
    if solver == "qr":
        return 8 * (2 * (rows + columns) * columns + 2 * columns * columns)
    return 8 * 3 * columns * columns + _CHUNK_BYTES


def choose_solver(
    solver: str, rows: int, columns: int, device: torch.device, cap_gb: float | None
) -> tuple[str, float]:
    """The solver (``auto``: QR when it fits in memory, else the normal equations) and the GB
    it needs; :class:`LeastSquaresError` if that is more than ``cap_gb`` or than the memory
    available."""
    limit = available_memory(device)
    if cap_gb is not None:
        cap = int(cap_gb * 2**30)
        limit = cap if limit is None else min(limit, cap)
    if solver == "auto":
        fits = limit is None or memory_needed("qr", rows, columns) <= limit
        solver = "qr" if fits else "normal"
    need = memory_needed(solver, rows, columns)
    if limit is not None and need > limit:
        raise LeastSquaresError(
            f"training.least_squares: the final system ({rows} rows x {columns} columns, "
            f"solver {solver}) needs {need / 2**30:.1f} GB, more than the {limit / 2**30:.1f} GB "
            "available; lower training.least_squares.points, rows_per_column or model.width"
        )
    return solver, need / 2**30


# --------------------------------------------------------------------------------- the hook
def set_output_layer(net: nn.Module, theta: Tensor, group: int, tie: Tensor | None = None) -> None:
    """Write θ ((p·K', G), columns ordered (channel, feature)) into ``net.last``; with ``tie``
    the layer's weights are tie·θ per channel."""
    last = net.last
    k = last.in_features
    blocks = theta.reshape(group, -1, theta.shape[-1])  # (p, K', G)
    if tie is not None:
        blocks = tie.to(blocks.dtype) @ blocks  # (p, K+1, G)
    with torch.no_grad():
        weight = blocks[:, :k, :].permute(2, 0, 1).reshape(-1, k)  # (G·p, K)
        bias = blocks[:, k, :].T.reshape(-1)
        last.weight.copy_(weight.to(last.weight.dtype))
        last.bias.copy_(bias.to(last.bias.dtype))


class OutputLayerSolve(StepHooks):
    """Solves the field network's output layer for the linear terms (module docstring).

    ``terms``: the problem's linear terms (those with ``in_fit`` make the rows); ``network``:
    the field network of the model; ``group``: channels per group (2 for a complex field);
    ``every_step``: re-solve at every step (differentiably); ``final_step``: the step whose
    sampling the final solve uses (the end of the curriculum); ``points``: final points per
    term (others: the term's own count, raised to ``rows_per_column`` × columns rows);
    ``tie(model)``: None, or a (K + 1, K') matrix T whose columns tie features together (the
    solved layer is T θ: fewer, combined columns, e.g. pairs of features that solve a
    condition exactly only together).
    """

    def __init__(
        self,
        terms: Sequence[LinearTerm],
        network: Callable[[nn.Module], nn.Module],
        group: int,
        *,
        every_step: bool = True,
        final_step: int = 0,
        points: Mapping[str, int] | None = None,
        rows_per_column: float = 2.0,
        ridge: float = 0.0,
        solver: str = "auto",
        memory_gb: float | None = None,
        tie: Callable[[nn.Module], Tensor | None] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.terms = list(terms)
        self.tie = tie or (lambda model: None)
        self.network = network
        self.group = group
        self.every_step = every_step
        self.final_step = final_step
        self.points = dict(points or {})
        self.rows_per_column = rows_per_column
        self.ridge = ridge
        self.solver = solver
        self.memory_gb = memory_gb
        self.progress = progress
        self.weights = {t.name: t.weight for t in self.terms}
        self._report: dict[str, Any] = {}
        if not any(t.in_fit and t.weight > 0 for t in self.terms):
            raise LeastSquaresError("least squares: no linear term with a positive weight")

    def fitted(self, weights: Mapping[str, float]) -> list[LinearTerm]:
        return [t for t in self.terms if t.in_fit and weights.get(t.name, 0.0) > 0]

    def freeze(self, model: nn.Module) -> None:
        """The solved layer is not trained (``every_step``)."""
        if self.every_step:
            self.network(model).last.requires_grad_(False)

    # ------------------------------------------------------------------ every step
    def solve_step(
        self, model: nn.Module, batches: Mapping[str, Batch], weights: Mapping[str, float]
    ) -> dict[str, Tensor]:
        """Solve on the step's points (differentiably); the linear terms' residuals."""
        rows: dict[str, tuple[Tensor, Tensor, int]] = {}
        tie = self.tie(model)
        for t in self.terms:
            if t.name in batches:
                a, g = term_rows(t, model, batches[t.name], self.group, tie)
                rows[t.name] = (a, g, a.shape[0] // len(batches[t.name]["x"]))
        fit = [t for t in self.fitted(weights) if t.name in rows]
        scaled = [math.sqrt(weights[t.name] / len(batches[t.name]["x"])) for t in fit]
        a = torch.cat([s * rows[t.name][0] for s, t in zip(scaled, fit)])
        g = torch.cat([s * rows[t.name][1] for s, t in zip(scaled, fit)])
        theta = solve_normal(a, g, self.ridge)
        set_output_layer(self.network(model), theta.detach(), self.group, tie)
        return {name: residual_of(a_t, g_t, theta, m) for name, (a_t, g_t, m) in rows.items()}

    def before_step(
        self, model: nn.Module, batches: Mapping[str, Any], weights: Mapping[str, float]
    ) -> dict[str, Tensor]:
        self.weights = dict(weights)
        if not self.every_step:
            return {}
        return self.solve_step(model, batches, weights)

    # ------------------------------------------------------------------ final solve
    def columns(self, model: nn.Module) -> int:
        """Unknowns of the solve: p·(K + 1), or p·K' with tied features."""
        tie = self.tie(model)
        k = self.network(model).last.in_features + 1 if tie is None else tie.shape[1]
        return self.group * k

    def _final_counts(self, model: nn.Module) -> tuple[dict[str, int], dict[str, int]]:
        """Points per fitted term for the final solve, and each term's rows per point."""
        fit = self.fitted(self.weights)
        columns = self.columns(model)
        per_point = {}
        for t in fit:
            probe = t.sample(self.final_step, 2)
            a, _ = term_rows(t, model, probe, self.group, self.tie(model))
            per_point[t.name] = a.shape[0] // len(probe["x"])
        counts = {t.name: self.points.get(t.name, t.points) for t in fit}
        rows = sum(counts[name] * per_point[name] for name in counts)
        factor = max(1.0, self.rows_per_column * columns / max(rows, 1))
        for t in fit:
            if t.name not in self.points:  # raised to rows_per_column × columns rows in all
                counts[t.name] = int(math.ceil(counts[t.name] * factor))
        return counts, per_point

    def finish(self, model: nn.Module) -> None:
        """The final float64 solve on fresh points (module docstring)."""
        start = time.perf_counter()
        net = self.network(model)
        fit = self.fitted(self.weights)
        with torch.no_grad():
            counts, per_point = self._final_counts(model)
            batches = {t.name: t.sample(self.final_step, counts[t.name]) for t in fit}
            rows = sum(len(batches[t.name]["x"]) * per_point[t.name] for t in fit)
            columns = self.columns(model)
            groups = net.last.out_features // self.group
            device = net.last.weight.device
            solver, gb = choose_solver(self.solver, rows, columns, device, self.memory_gb)
            tie = self.tie(model)

            def blocks() -> Iterator[tuple[Tensor, Tensor]]:
                for t in fit:
                    scale = math.sqrt(self.weights[t.name] / len(batches[t.name]["x"]))
                    for a_part, g_part in iter_term_rows(
                        t, model, batches[t.name], self.group, chunk=True, tie=tie
                    ):
                        yield scale * a_part, scale * g_part

            solve = solve_qr if solver == "qr" else solve_normal_blocks
            solution = solve(blocks, rows, columns, groups, self.ridge, device)
            set_output_layer(net, solution.theta, self.group, tie)
            residual = {t.name: float(t.loss(model, batches[t.name])) for t in fit}
        self._report = {
            "solver": solution.solver,
            "rows": solution.rows,
            "columns": solution.columns,
            "conditioning": solution.conditioning,
            "ridge": solution.ridge,
            "points": {t.name: len(batches[t.name]["x"]) for t in fit},
            "memory_gb": round(gb, 3),
            "seconds": round(time.perf_counter() - start, 3),
            "mean_squared_residual": residual,
        }
        if self.progress is not None:
            self.progress(
                f"least squares ({solution.solver}): {solution.rows} rows x {solution.columns} "
                f"columns, min/max pivot {solution.conditioning:.1e}, "
                f"{self._report['seconds']:.1f} s"
            )

    def report(self) -> dict[str, Any]:
        return {"least_squares": self._report} if self._report else {}
