r"""Signals for SIREN fitting: loading, finite-difference targets, metrics, gauges, masks, priors.

The SIREN image experiments fit a network :math:`\varphi(x, y)` to a 2-D signal :math:`s`
supervised on one of

* the values :math:`\varphi = s`,
* the gradient :math:`\nabla\varphi = \nabla s` (targets from Sobel filters),
* the Laplacian :math:`\Delta\varphi = \Delta s` (Poisson image reconstruction),
* the values on a subset of pixels only (inpainting), optionally with priors
  (total variation, Frobenius norm of the Hessian).

This module produces everything such a fit needs from a file; it uses numpy, scipy and
matplotlib's image reader only.  The two prior functions take torch tensors but only call
tensor methods, so importing this module does not import torch.

Grid convention
---------------
A signal is an array ``s[i_x, i_y]`` (optionally ``s[i_x, i_y, c]`` with channels last) of
shape ``(nx, ny)``: axis 0 is :math:`x`, axis 1 is :math:`y` (``np.meshgrid(...,
indexing="ij")``).  Pixel centres sit at ``x = np.linspace(-1, 1, nx)``, ``y =
np.linspace(-1, 1, ny)``, so the grid spacing is :math:`h_x = 2/(n_x-1)`,
:math:`h_y = 2/(n_y-1)`.

Image orientation
-----------------
A picture ``img[row, col]`` has row 0 at the *top* and column 0 at the *left*; rows go *down*
in :math:`y` and columns go right in :math:`x`.  Hence

.. math::  s[i_x, i_y] = \mathrm{img}[n_y - 1 - i_y,\ i_x],
           \qquad\text{i.e.}\qquad s = \mathrm{img}[::-1, :]^{\mathsf T},

so the top-left pixel ``img[0, 0]`` lands at ``s[0, ny-1]``, the point
:math:`(x, y) = (-1, +1)`, and a ``H x W`` picture becomes a ``(W, H)`` signal.  This is
``orientation="image"`` in :func:`load_signal` (the default for ``.png``/``.jpg``).  Array
files (``.npy``/``.npz``/``.h5``) are assumed to be stored in our ``[i_x, i_y]`` layout already
(``orientation="xy"``); ``orientation="yx"`` transposes an array stored as ``[i_y, i_x]`` with
:math:`y` ascending, e.g. matplotlib's ``topobathy.npz`` (``topo[lat, lon]``, latitude
ascending).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import h5py
import matplotlib.image as mpimg
import numpy as np
from matplotlib import cbook
from scipy import ndimage

from pinnsiren.errors import UserError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

__all__ = [
    "SignalError",
    "SignalFileNotFoundError",
    "SUPPORTED_EXTENSIONS",
    "SAMPLE_PREFIX",
    "sample_data_path",
    "resolve_signal_path",
    "load_signal",
    "resize_area",
    "grid_coords",
    "grid_spacing",
    "sobel_gradient",
    "laplacian_5pt",
    "psnr",
    "fit_constant",
    "harmonic_basis",
    "fit_harmonic",
    "random_mask",
    "box_mask",
    "total_variation",
    "hessian_frobenius",
    "FitTargets",
    "build_fit_targets",
]

Normalise = Literal["minus1_1", "unit", "none"]
Orientation = Literal["auto", "image", "xy", "yx"]
BoundaryMode = Literal["extrapolate", "nearest", "reflect", "mirror", "wrap"]

#: Extensions :func:`load_signal` reads, lower-case.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".npy", ".npz", ".h5", ".hdf5")
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

#: ``load_signal("sample:grace_hopper.jpg")`` reads matplotlib's bundled sample data.
SAMPLE_PREFIX = "sample:"

#: ITU-R BT.601 luma weights (those of Pillow's ``"L"`` mode); they sum to 1.
_LUMA = np.array([0.299, 0.587, 0.114])


class SignalError(UserError):
    """A user-caused problem with a signal file or argument; the message is one line.

    A :class:`pinnsiren.errors.UserError` (hence a ValueError): the CLI maps it to exit 2.
    """


class SignalFileNotFoundError(SignalError, FileNotFoundError):
    """The signal file does not exist (both a :class:`SignalError` and a FileNotFoundError)."""


# --------------------------------------------------------------------------------------------
# Paths and loading
# --------------------------------------------------------------------------------------------


def sample_data_path(name: str) -> Path:
    """Path of a file in matplotlib's bundled ``sample_data`` (e.g. ``grace_hopper.jpg``).

    Nothing is downloaded: the file must ship with the installed matplotlib.
    """
    path = Path(cbook.get_sample_data(name, asfileobj=False))
    if not path.is_file():
        raise SignalFileNotFoundError(
            f"{name}: not in matplotlib's sample data ({path.parent}); "
            "try 'grace_hopper.jpg' or 'topobathy.npz'"
        )
    return path


def resolve_signal_path(path: str | Path) -> Path:
    """Turn ``"sample:NAME"`` into :func:`sample_data_path` ``(NAME)``; other paths pass through."""
    text = str(path)
    if text.startswith(SAMPLE_PREFIX):
        return sample_data_path(text[len(SAMPLE_PREFIX) :])
    return Path(path)


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        names = list(data.files)
        if key is not None:
            if key not in names:
                raise SignalError(f"{path}: no array {key!r}; available keys: {names}")
            return np.asarray(data[key])
        candidates = [k for k in names if data[k].ndim in (2, 3)]
        if len(candidates) != 1:
            raise SignalError(
                f"{path}: cannot choose an array ({len(candidates)} 2-D/3-D arrays among "
                f"{names}); give key=..."
            )
        return np.asarray(data[candidates[0]])


def _read_h5(path: Path, key: str | None) -> np.ndarray:
    with h5py.File(path, "r") as f:
        datasets: list[str] = []
        f.visititems(
            lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        if key is not None:
            obj = f.get(key)
            if not isinstance(obj, h5py.Dataset):
                raise SignalError(f"{path}: no dataset {key!r}; available datasets: {datasets}")
            return np.asarray(obj[()])
        candidates = [d for d in datasets if f[d].ndim in (2, 3)]
        if len(candidates) != 1:
            raise SignalError(
                f"{path}: cannot choose a dataset ({len(candidates)} 2-D/3-D datasets among "
                f"{datasets}); give key=..."
            )
        return np.asarray(f[candidates[0]][()])


def _read_raw(path: Path, key: str | None) -> np.ndarray:
    """Read the array stored in ``path`` as the file lays it out (no orientation change)."""
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise SignalError(
            f"{path}: unsupported extension {ext or '(none)'!r}; "
            f"allowed: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise SignalFileNotFoundError(f"{path}: no such file")
    try:
        if ext in _IMAGE_EXTENSIONS:
            return np.asarray(mpimg.imread(path))  # png: float in [0, 1]; jpg: uint8 (Pillow)
        if ext == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        if ext == ".npz":
            return _read_npz(path, key)
        return _read_h5(path, key)
    except SignalError:
        raise
    except Exception as exc:  # corrupt file, wrong format behind the extension, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SignalError(f"{path}: cannot read as {ext} ({msg})") from exc


def _to_grayscale(arr: np.ndarray, path: Path) -> np.ndarray:
    r"""Luma :math:`Y = 0.299R + 0.587G + 0.114B` of channels-last RGB(A); alpha is dropped."""
    if arr.ndim == 2:
        return arr
    channels = arr.shape[-1]
    if channels == 1:
        return arr[..., 0]
    if channels in (3, 4):
        return arr[..., :3] @ _LUMA
    raise SignalError(f"{path}: grayscale needs 1, 3 or 4 channels, got {channels}")


def _centre_crop_to_aspect(arr: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """Largest centred crop of ``arr`` whose aspect ratio ``Nx/Ny`` is closest to ``nx/ny``."""
    big_x, big_y = arr.shape[:2]
    if big_x * ny > big_y * nx:  # too wide in x
        keep = max(1, min(big_x, round(big_y * nx / ny)))
        start = (big_x - keep) // 2
        return arr[start : start + keep]
    keep = max(1, min(big_y, round(big_x * ny / nx)))
    start = (big_y - keep) // 2
    return arr[:, start : start + keep]


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    r"""Linear map ``(n_out, n_in)`` resampling one axis of pixels.

    Pixel :math:`i` of the input covers :math:`[i, i+1)` (input pixel units) and output pixel
    :math:`j` covers :math:`[js, (j+1)s)` with :math:`s = n_\mathrm{in}/n_\mathrm{out}`.

    * Downsampling (:math:`s > 1`): area average,
      :math:`A_{ji} = |[i, i+1) \cap [js, (j+1)s)| / s` -- the exact box-filter (anti-aliased)
      reduction; integer factors give plain block means.  Rows sum to 1.
    * Upsampling (:math:`s < 1`): linear interpolation at the output centre
      :math:`p_j = (j + \tfrac12)s - \tfrac12`, clamped to :math:`[0, n_\mathrm{in} - 1]`.
    """
    if n_in == n_out:
        return np.eye(n_in)
    scale = n_in / n_out
    j = np.arange(n_out)[:, None]
    if scale > 1:
        i = np.arange(n_in)[None, :]
        lo = np.maximum(i, j * scale)
        hi = np.minimum(i + 1, (j + 1) * scale)
        return np.clip(hi - lo, 0.0, None) / scale
    if n_in == 1:
        return np.ones((n_out, 1))
    p = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    left = np.minimum(np.floor(p).astype(int), n_in - 2)
    frac = p - left
    mat = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    mat[rows, left] = 1.0 - frac
    mat[rows, left + 1] += frac
    return mat


def resize_area(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r"""Resample axes 0 and 1 of ``arr`` to ``shape`` (channels, if any, untouched).

    Separable: :math:`\mathrm{out} = A_x\,\mathrm{arr}\,A_y^{\mathsf T}` with the per-axis
    matrices of area averaging (downsampling, anti-aliased) or linear interpolation
    (upsampling); see ``_resize_matrix``.  The mean of a downsampled signal equals the mean of
    the input whenever the size divides evenly, and constants are preserved always.
    """
    nx, ny = (int(s) for s in shape)
    if nx < 1 or ny < 1:
        raise SignalError(f"resize: target shape must be positive, got {shape}")
    out = np.tensordot(_resize_matrix(arr.shape[0], nx), arr, axes=(1, 0))
    out = np.tensordot(_resize_matrix(arr.shape[1], ny), out, axes=(1, 1))
    return np.swapaxes(out, 0, 1)


def load_signal(
    path: str | Path,
    *,
    grayscale: bool = True,
    size: int | tuple[int, int] | None = None,
    normalise: Normalise = "minus1_1",
    key: str | None = None,
    orientation: Orientation = "auto",
    crop: bool = True,
) -> np.ndarray:
    r"""Load a 2-D signal as a float64 array ``s[i_x, i_y]`` or ``s[i_x, i_y, c]``.

    Steps, in order:

    1. read ``path`` (``"sample:NAME"`` means matplotlib's sample data): ``.png``/``.jpg``/
       ``.jpeg`` by ``matplotlib.image.imread`` (Pillow for JPEG), ``.npy``, ``.npz`` (array
       ``key``, default the only 2-D/3-D array, e.g. ``topo`` in ``topobathy.npz``),
       ``.h5``/``.hdf5`` (dataset path ``key``, default the only 2-D/3-D dataset);
    2. ``grayscale``: RGB(A) becomes luma :math:`0.299R + 0.587G + 0.114B` (alpha dropped);
       otherwise colour stays channels-last ``(nx, ny, C)``; a 2-D source stays 2-D;
    3. orientation to ``[i_x, i_y]`` (module docstring): ``"image"`` is
       :math:`s = \mathrm{img}[::-1, :]^{\mathsf T}`, ``"yx"`` is a transpose, ``"xy"`` keeps
       the array; ``"auto"`` is ``"image"`` for picture files and ``"xy"`` for arrays;
    4. ``size`` (``n`` for ``n x n`` or ``(nx, ny)``): if ``crop``, first the largest centred
       crop with the target aspect ratio (so ``size=n`` centre-crops to a square), then
       :func:`resize_area` (area averaging when shrinking, linear when enlarging);
    5. ``normalise``: ``"minus1_1"`` maps :math:`[\min, \max]` affinely onto :math:`[-1, 1]`,
       ``"unit"`` onto :math:`[0, 1]` (min and max over all pixels and channels; a constant
       signal maps to the lower end), ``"none"`` keeps the raw values.

    Raises :class:`SignalError` (a ValueError) for an unsupported extension, a missing key,
    bad shapes or non-finite values, and :class:`SignalFileNotFoundError` (also a
    FileNotFoundError) for a missing file; messages are one line naming the path.
    """
    file = resolve_signal_path(path)
    arr = _read_raw(file, key)
    ext = file.suffix.lower()
    if arr.dtype.kind not in "biuf":
        raise SignalError(f"{file}: need a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise SignalError(
            f"{file}: need a 2-D array or 3-D channels-last array, got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise SignalError(f"{file}: contains NaN or infinite values")
    if grayscale:
        arr = _to_grayscale(arr, file)

    if orientation == "auto":
        orientation = "image" if ext in _IMAGE_EXTENSIONS else "xy"
    if orientation == "image":
        arr = np.swapaxes(arr[::-1], 0, 1)
    elif orientation == "yx":
        arr = np.swapaxes(arr, 0, 1)
    elif orientation != "xy":
        raise SignalError(f"{file}: orientation must be auto|image|xy|yx, got {orientation!r}")

    if size is not None:
        nx, ny = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if int(nx) < 2 or int(ny) < 2:
            raise SignalError(f"{file}: size must be at least 2 per axis, got {size}")
        if crop:
            arr = _centre_crop_to_aspect(arr, int(nx), int(ny))
        arr = resize_area(arr, (int(nx), int(ny)))

    if normalise == "none":
        return np.ascontiguousarray(arr)
    if normalise not in ("minus1_1", "unit"):
        raise SignalError(f"{file}: normalise must be minus1_1|unit|none, got {normalise!r}")
    lo, hi = float(arr.min()), float(arr.max())
    unit = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    out = unit if normalise == "unit" else 2.0 * unit - 1.0
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------
# Grid, finite differences
# --------------------------------------------------------------------------------------------


def grid_spacing(shape: Sequence[int]) -> tuple[float, float]:
    r"""Pixel spacing :math:`(h_x, h_y) = (2/(n_x-1), 2/(n_y-1))` on :math:`[-1, 1]^2`."""
    nx, ny = int(shape[0]), int(shape[1])
    if nx < 2 or ny < 2:
        raise SignalError(f"grid needs at least 2 pixels per axis, got shape {tuple(shape)}")
    return 2.0 / (nx - 1), 2.0 / (ny - 1)


def grid_coords(shape: Sequence[int]) -> np.ndarray:
    """Pixel centres as an ``(nx, ny, 2)`` array: ``[..., 0] = x``, ``[..., 1] = y``, "ij"."""
    nx, ny = int(shape[0]), int(shape[1])
    x, y = np.meshgrid(np.linspace(-1.0, 1.0, nx), np.linspace(-1.0, 1.0, ny), indexing="ij")
    return np.stack([x, y], axis=-1)


def _spacing_pair(img: np.ndarray, spacing: float | Sequence[float] | None) -> tuple[float, float]:
    if spacing is None:
        return grid_spacing(img.shape)
    if np.ndim(spacing) == 0:
        return float(spacing), float(spacing)  # type: ignore[arg-type]
    hx, hy = spacing  # type: ignore[misc]
    return float(hx), float(hy)


def _pad_cubic(a: np.ndarray, axis: int) -> np.ndarray:
    r"""Pad one ghost cell on each side of ``axis`` by cubic extrapolation.

    :math:`f_{-1} = 4f_0 - 6f_1 + 4f_2 - f_3` (exact for cubics).  With it the 3-point central
    stencils at the edge become the second-order one-sided formulas
    :math:`f'_0 \approx (-4f_0 + 7f_1 - 4f_2 + f_3)/(2h)`,
    :math:`f''_0 \approx (2f_0 - 5f_1 + 4f_2 - f_3)/h^2`.
    """
    a = np.moveaxis(a, axis, 0)
    if a.shape[0] < 4:
        raise SignalError(
            f"boundary mode 'extrapolate' needs >= 4 pixels per axis, got {a.shape[0]}"
        )
    lo = 4 * a[0] - 6 * a[1] + 4 * a[2] - a[3]
    hi = 4 * a[-1] - 6 * a[-2] + 4 * a[-3] - a[-4]
    return np.moveaxis(np.concatenate([lo[None], a, hi[None]], axis=0), 0, axis)


def _prepare(img: np.ndarray, mode: BoundaryMode) -> tuple[np.ndarray, str, slice]:
    """Array to filter, scipy mode, and the slice undoing any padding (on axes 0 and 1)."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim not in (2, 3):
        raise SignalError(f"need an (nx, ny) or (nx, ny, C) array, got shape {img.shape}")
    if mode == "extrapolate":
        return _pad_cubic(_pad_cubic(img, 0), 1), "nearest", slice(1, -1)
    if mode not in ("nearest", "reflect", "mirror", "wrap"):
        raise SignalError(
            f"boundary mode must be extrapolate|nearest|reflect|mirror|wrap, got {mode!r}"
        )
    return img, mode, slice(None)


def sobel_gradient(
    img: np.ndarray,
    spacing: float | Sequence[float] | None = None,
    *,
    mode: BoundaryMode = "extrapolate",
) -> tuple[np.ndarray, np.ndarray]:
    r"""Gradient :math:`(\partial_x s, \partial_y s)` in physical units by the Sobel operator.

    Along the derivative axis the Sobel kernel is the central difference
    :math:`[-1, 0, 1]`, across it the smoother :math:`[1, 2, 1]`, so

    .. math:: \partial_x s \approx \frac{1}{8 h_x}\,
              \bigl([-1, 0, 1]_x \otimes [1, 2, 1]_y\bigr) \star s
              = \partial_x s + \tfrac{h_x^2}{6}\partial_x^3 s + \tfrac{h_y^2}{4}
                \partial_x\partial_y^2 s + O(h^4),

    second order in :math:`h`.  ``spacing`` is :math:`h` or :math:`(h_x, h_y)`; default
    :func:`grid_spacing` (the :math:`[-1,1]^2` convention).  Channels (axis 2) are filtered
    independently.

    Boundary ``mode``: ``"extrapolate"`` (default) adds one ghost cell by cubic extrapolation
    (``_pad_cubic``), giving second-order one-sided differences on the edge rows, so the whole
    grid is :math:`O(h^2)` (the price: noise at the edge is amplified ~3x).  The scipy modes
    ``"nearest"``, ``"reflect"``, ``"mirror"``, ``"wrap"`` are the classic behaviour: exact
    interior, but the normal derivative on the edge rows is biased by :math:`O(1)`
    (``nearest`` halves it, ``mirror`` zeroes it).
    """
    hx, hy = _spacing_pair(img, spacing)
    work, smode, cut = _prepare(img, mode)
    diff, smooth = [-1.0, 0.0, 1.0], [1.0, 2.0, 1.0]
    gx = ndimage.correlate1d(
        ndimage.correlate1d(work, diff, axis=0, mode=smode), smooth, axis=1, mode=smode
    )
    gy = ndimage.correlate1d(
        ndimage.correlate1d(work, diff, axis=1, mode=smode), smooth, axis=0, mode=smode
    )
    return gx[cut, cut] / (8.0 * hx), gy[cut, cut] / (8.0 * hy)


def laplacian_5pt(
    img: np.ndarray,
    spacing: float | Sequence[float] | None = None,
    *,
    mode: BoundaryMode = "extrapolate",
) -> np.ndarray:
    r"""Five-point Laplacian :math:`\Delta s` in physical units.

    .. math:: \Delta_h s_{ij} = \frac{s_{i+1,j} - 2s_{ij} + s_{i-1,j}}{h_x^2}
                              + \frac{s_{i,j+1} - 2s_{ij} + s_{i,j-1}}{h_y^2}
              = \Delta s + \tfrac{h_x^2}{12}\partial_x^4 s + \tfrac{h_y^2}{12}\partial_y^4 s
                + O(h^4),

    exact for cubic polynomials.  ``spacing`` and boundary ``mode`` as in
    :func:`sobel_gradient`: ``"extrapolate"`` (default) uses cubic ghost cells, i.e. the
    second-order one-sided :math:`(2f_0 - 5f_1 + 4f_2 - f_3)/h^2` on the edges; with the scipy
    modes (``"nearest"`` = zero normal derivative, ...) the edge rows are :math:`O(1/h)` wrong
    for signals that are not flat at the boundary.
    """
    hx, hy = _spacing_pair(img, spacing)
    work, smode, cut = _prepare(img, mode)
    second = [1.0, -2.0, 1.0]
    lap = ndimage.correlate1d(work, second, axis=0, mode=smode) / hx**2
    lap = lap + ndimage.correlate1d(work, second, axis=1, mode=smode) / hy**2
    return lap[cut, cut]


# --------------------------------------------------------------------------------------------
# Metrics and gauge fixing
# --------------------------------------------------------------------------------------------


def _as_numpy(a: object) -> np.ndarray:
    """numpy view of an array or a (CPU or not, grad or not) torch tensor, as float64."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(a, dtype=np.float64)


def psnr(estimate: np.ndarray, target: np.ndarray, data_range: float | None = None) -> float:
    r"""Peak signal-to-noise ratio in dB.

    .. math:: \mathrm{PSNR} = 10\log_{10}\frac{R^2}{\mathrm{MSE}},\qquad
              \mathrm{MSE} = \operatorname{mean}(\mathrm{estimate} - \mathrm{target})^2,

    with :math:`R` = ``data_range``, by default :math:`\max(\mathrm{target}) -
    \min(\mathrm{target})` (2 for the SIREN convention of images in :math:`[-1, 1]`).  A
    uniform error of :math:`0.01R` gives 40 dB.  Returns ``inf`` for identical arrays.
    """
    est, tgt = _as_numpy(estimate), _as_numpy(target)
    if est.shape != tgt.shape:
        raise SignalError(f"psnr: shapes differ, estimate {est.shape} vs target {tgt.shape}")
    rng = float(tgt.max() - tgt.min()) if data_range is None else float(data_range)
    if rng <= 0:
        raise SignalError("psnr: data range is zero (constant target); pass data_range=")
    mse = float(np.mean((est - tgt) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(rng**2 / mse))


def _spatial_split(
    estimate: np.ndarray, target: np.ndarray, spatial: tuple[int, ...], name: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Reshape to ``(P, C)`` for the spatial shape; also say whether a channel axis exists."""
    if estimate.shape != target.shape:
        raise SignalError(
            f"{name}: shapes differ, estimate {estimate.shape} vs target {target.shape}"
        )
    if estimate.shape == spatial:
        return estimate.reshape(-1, 1), target.reshape(-1, 1), False
    if estimate.shape[:-1] == spatial:
        c = estimate.shape[-1]
        return estimate.reshape(-1, c), target.reshape(-1, c), True
    raise SignalError(f"{name}: array shape {estimate.shape} does not match grid {spatial}")


def _mask_rows(mask: np.ndarray | None, spatial: tuple[int, ...], name: str) -> np.ndarray:
    if mask is None:
        return np.ones(int(np.prod(spatial)), dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != spatial:
        raise SignalError(f"{name}: mask shape {m.shape} does not match grid {spatial}")
    if not m.any():
        raise SignalError(f"{name}: mask selects no points")
    return m.reshape(-1)


def fit_constant(
    estimate: np.ndarray,
    target: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    channel_axis: bool | None = None,
) -> tuple[np.ndarray, np.ndarray | float]:
    r"""Add the least-squares constant: :math:`c = \arg\min_c \|\mathrm{est} + c - \mathrm{tgt}\|^2
    = \operatorname{mean}(\mathrm{tgt} - \mathrm{est})`.

    Gradient supervision fixes :math:`\varphi` only up to a constant; apply this before
    comparing.  Returns ``(estimate + c, c)``; ``c`` is a float for single-channel input, else one
    value per channel (last axis, when ``channel_axis`` is True; by default arrays with 3 or
    more dimensions are taken as channels-last).  ``mask`` (spatial shape, True = use) restricts
    the fit.
    """
    est, tgt = _as_numpy(estimate), _as_numpy(target)
    if channel_axis is None:
        channel_axis = est.ndim >= 3
    spatial = est.shape[:-1] if channel_axis else est.shape
    e2, t2, has_c = _spatial_split(est, tgt, spatial, "fit_constant")
    rows = _mask_rows(mask, spatial, "fit_constant")
    c = np.mean(t2[rows] - e2[rows], axis=0)
    adjusted = (e2 + c).reshape(est.shape)
    return adjusted, (c if has_c else float(c[0]))


def harmonic_basis(coords: np.ndarray, degree: int = 2) -> tuple[np.ndarray, list[str]]:
    r"""Harmonic polynomials of degree :math:`\le d` evaluated at ``coords`` (``(..., 2)``).

    With :math:`z = x + iy`, the harmonic polynomials of degree :math:`k \ge 1` are
    :math:`\operatorname{Re} z^k` and :math:`\operatorname{Im} z^k`; with the constant that is
    :math:`2d + 1` functions: :math:`1;\ x, y;\ x^2 - y^2, 2xy;\ x^3 - 3xy^2, 3x^2y - y^3;\ \dots`
    Returns ``(basis (..., 2d+1), names)``.
    """
    if degree < 0:
        raise SignalError(f"harmonic degree must be >= 0, got {degree}")
    c = np.asarray(coords, dtype=np.float64)
    z = c[..., 0] + 1j * c[..., 1]
    cols, names = [np.ones(z.shape)], ["1"]
    power = np.ones(z.shape, dtype=complex)
    for k in range(1, degree + 1):
        power = power * z
        cols += [power.real, power.imag]
        names += [f"Re z^{k}", f"Im z^{k}"]
    return np.stack(cols, axis=-1), names


def fit_harmonic(
    estimate: np.ndarray,
    target: np.ndarray,
    coords: np.ndarray,
    degree: int = 2,
    *,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Add the least-squares harmonic polynomial of degree :math:`\le d` to ``estimate``.

    Laplacian supervision :math:`\Delta\varphi = \Delta s` fixes :math:`\varphi` only up to a
    harmonic function :math:`h` (:math:`\Delta h = 0`).  We remove the low-order part of that
    gauge:

    .. math:: a = \arg\min_a \Bigl\| \mathrm{est} + \textstyle\sum_m a_m p_m - \mathrm{tgt}
              \Bigr\|_2^2,\qquad p_m \in \{1,\ \operatorname{Re} z^k,\ \operatorname{Im} z^k\}
              _{k \le d}

    (:func:`harmonic_basis`; default :math:`d = 2`: constant, affine and the two quadratic
    saddles, 5 coefficients).  Higher degrees remove more of the gauge but also more genuine
    low-frequency error, so metrics should state the degree.

    ``coords`` has shape ``spatial + (2,)``; ``estimate``/``target`` have shape ``spatial`` or
    ``spatial + (C,)`` (fitted per channel).  ``mask`` (``spatial``, True = use) restricts the
    fit.  Returns ``(estimate + sum_m a_m p_m, a)`` with ``a`` of shape ``(2d+1,)`` or
    ``(2d+1, C)``, ordered as :func:`harmonic_basis` names them.
    """
    est, tgt = _as_numpy(estimate), _as_numpy(target)
    crd = np.asarray(coords, dtype=np.float64)
    if crd.shape[-1] != 2:
        raise SignalError(f"fit_harmonic: coords must end in 2 (x, y), got shape {crd.shape}")
    spatial = crd.shape[:-1]
    e2, t2, has_c = _spatial_split(est, tgt, spatial, "fit_harmonic")
    rows = _mask_rows(mask, spatial, "fit_harmonic")
    basis, _ = harmonic_basis(crd, degree)
    basis = basis.reshape(-1, basis.shape[-1])
    coef, *_ = np.linalg.lstsq(basis[rows], t2[rows] - e2[rows], rcond=None)
    adjusted = (e2 + basis @ coef).reshape(est.shape)
    return adjusted, (coef if has_c else coef[:, 0])


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def random_mask(shape: Sequence[int], keep_fraction: float, seed: int | None = 0) -> np.ndarray:
    r"""Boolean mask, True = observed, with exactly :math:`\mathrm{round}(f N)` True entries.

    The observed pixels are a uniformly random subset drawn without replacement by
    ``np.random.default_rng(seed)``; the same ``(shape, keep_fraction, seed)`` gives the same
    mask.  ``keep_fraction`` must lie in :math:`[0, 1]`.
    """
    if not 0.0 <= float(keep_fraction) <= 1.0:
        raise SignalError(f"random mask: keep_fraction must be in [0, 1], got {keep_fraction}")
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape))
    keep = int(round(float(keep_fraction) * n))
    flat = np.zeros(n, dtype=bool)
    flat[np.random.default_rng(seed).permutation(n)[:keep]] = True
    return flat.reshape(shape)


def box_mask(
    shape: Sequence[int],
    box: Sequence[float],
    *,
    hole: bool = True,
) -> np.ndarray:
    r"""Boolean mask, True = observed, from an axis-aligned box in coordinates.

    ``box = (x0, x1, y0, y1)`` in the :math:`[-1, 1]^2` pixel-centre coordinates of
    :func:`grid_coords`.  A pixel is *in* the box when its centre satisfies
    :math:`x_0 \le x \le x_1,\ y_0 \le y \le y_1`.  With ``hole=True`` (default, inpainting a
    missing region) the box is unobserved: ``mask = ~inside``; with ``hole=False`` only the box
    is observed: ``mask = inside``.
    """
    if len(box) != 4:
        raise SignalError(f"box mask: need (x0, x1, y0, y1), got {tuple(box)}")
    x0, x1, y0, y1 = (float(v) for v in box)
    if x0 > x1 or y0 > y1:
        raise SignalError(f"box mask: need x0 <= x1 and y0 <= y1, got {tuple(box)}")
    c = grid_coords(shape)
    inside = (c[..., 0] >= x0) & (c[..., 0] <= x1) & (c[..., 1] >= y0) & (c[..., 1] <= y1)
    return ~inside if hole else inside


# --------------------------------------------------------------------------------------------
# Priors (torch tensors)
# --------------------------------------------------------------------------------------------


def total_variation(
    grad_x: torch.Tensor,
    grad_y: torch.Tensor,
    *,
    isotropic: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    r"""Total-variation prior from the network gradient at sample points (scalar tensor).

    Isotropic (default), a Charbonnier-smoothed :math:`\|\nabla\varphi\|_2`:

    .. math:: \mathrm{TV} = \operatorname{mean}\Bigl(\sqrt{\varphi_x^2 + \varphi_y^2
              + \varepsilon} - \sqrt{\varepsilon}\Bigr),

    differentiable at :math:`\nabla\varphi = 0` and exactly 0 for a constant field.
    Anisotropic (``isotropic=False``): :math:`\operatorname{mean}(|\varphi_x| + |\varphi_y|)`.
    The mean runs over points and channels (each channel its own TV).  Monte-Carlo estimate of
    :math:`\frac{1}{|\Omega|}\int_\Omega |\nabla\varphi|` for uniformly sampled points.
    """
    if grad_x.shape != grad_y.shape:
        raise SignalError(
            f"total_variation: shapes differ, {tuple(grad_x.shape)} vs {tuple(grad_y.shape)}"
        )
    if not isotropic:
        return (grad_x.abs() + grad_y.abs()).mean()
    return ((grad_x.square() + grad_y.square() + eps).sqrt() - eps**0.5).mean()


def hessian_frobenius(
    uxx: torch.Tensor,
    uyy: torch.Tensor,
    uxy: torch.Tensor,
    *,
    squared: bool = False,
    eps: float = 1e-8,
) -> torch.Tensor:
    r"""Hessian Frobenius-norm prior (scalar tensor).

    .. math:: \|H\varphi\|_F = \sqrt{\varphi_{xx}^2 + 2\varphi_{xy}^2 + \varphi_{yy}^2}

    (the off-diagonal entry counts twice).  Default: :math:`\operatorname{mean}(\sqrt{\|H\|_F^2
    + \varepsilon} - \sqrt{\varepsilon})`, an edge-preserving second-order TV; with
    ``squared=True``: :math:`\operatorname{mean}\|H\|_F^2`, the thin-plate (quadratic) energy.
    """
    if not (uxx.shape == uyy.shape == uxy.shape):
        raise SignalError("hessian_frobenius: uxx, uyy, uxy must have the same shape")
    sq = uxx.square() + uyy.square() + 2.0 * uxy.square()
    if squared:
        return sq.mean()
    return ((sq + eps).sqrt() - eps**0.5).mean()


# --------------------------------------------------------------------------------------------
# Fit targets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitTargets:
    r"""Flattened supervision targets of one signal on its pixel grid.

    Points are the pixel centres in C order over ``(i_x, i_y)``: row ``k = i_x * ny + i_y``
    holds :math:`(x_{i_x}, y_{i_y})`.

    Attributes:
        coords: ``(N, 2)`` float64, columns ``(x, y)``, :math:`N = n_x n_y`.
        values: ``(N, C)`` signal values.
        gradient: ``(N, 2C)`` Sobel gradient, column ``2c + d`` is
            :math:`\partial_d s_c` with ``d = 0`` for x, 1 for y (the row-major flattening of
            the ``(C, 2)`` Jacobian): ``[dx s0, dy s0, dx s1, dy s1, ...]``.
        laplacian: ``(N, C)`` five-point Laplacian.
        shape: grid shape ``(nx, ny)``.
        spacing: ``(hx, hy)`` used for the derivatives.
        mask: ``(N,)`` bool, True = observed, or None for all pixels.
    """

    coords: np.ndarray
    values: np.ndarray
    gradient: np.ndarray
    laplacian: np.ndarray
    shape: tuple[int, int]
    spacing: tuple[float, float]
    mask: np.ndarray | None = None

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.values.shape[1])

    @property
    def n_points(self) -> int:
        """Number of pixels ``N``."""
        return int(self.coords.shape[0])

    def gradient_per_channel(self) -> np.ndarray:
        """Gradient as ``(N, C, 2)``: ``[k, c, d] = d s_c / d x_d``."""
        return self.gradient.reshape(self.n_points, self.channels, 2)

    def to_grid(self, flat: np.ndarray) -> np.ndarray:
        """Reshape ``(N,)`` or ``(N, K)`` back to ``(nx, ny)`` or ``(nx, ny, K)``."""
        flat = np.asarray(flat)
        return flat.reshape(self.shape + flat.shape[1:])


def build_fit_targets(
    signal: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    mode: BoundaryMode = "extrapolate",
) -> FitTargets:
    """Bundle coords, values, Sobel gradient and 5-point Laplacian of ``signal`` (see FitTargets).

    ``signal`` is ``(nx, ny)`` or ``(nx, ny, C)`` on the :math:`[-1, 1]^2` grid (spacing
    :func:`grid_spacing`); ``mask`` (``(nx, ny)`` bool, True = observed) is stored flattened;
    ``mode`` is the derivative boundary mode of :func:`sobel_gradient`.
    """
    sig = np.asarray(signal, dtype=np.float64)
    if sig.ndim == 2:
        sig = sig[..., None]
    if sig.ndim != 3:
        raise SignalError(
            f"build_fit_targets: need (nx, ny) or (nx, ny, C), got {np.shape(signal)}"
        )
    nx, ny, c = sig.shape
    spacing = grid_spacing((nx, ny))
    gx, gy = sobel_gradient(sig, spacing, mode=mode)
    lap = laplacian_5pt(sig, spacing, mode=mode)
    n = nx * ny
    flat_mask = None
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != (nx, ny):
            raise SignalError(f"build_fit_targets: mask shape {m.shape} != grid {(nx, ny)}")
        flat_mask = m.reshape(n)
    return FitTargets(
        coords=grid_coords((nx, ny)).reshape(n, 2),
        values=sig.reshape(n, c),
        gradient=np.stack([gx, gy], axis=-1).reshape(n, 2 * c),
        laplacian=lap.reshape(n, c),
        shape=(nx, ny),
        spacing=spacing,
        mask=flat_mask,
    )
