"""Input validation shared by the reference solvers.

Every check raises :class:`ValueError` with a one-line message that names the
offending argument, so that a command-line front end can print it verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_coords",
    "check_finite",
    "check_positive",
    "check_shape",
    "uniform_spacing",
]


def check_finite(name: str, value: np.ndarray | float | complex) -> np.ndarray:
    """Return ``value`` as an array; raise ``ValueError`` if any entry is NaN or infinite."""
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ValueError(f"{name} must be numeric, got an object array")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def check_positive(name: str, value: np.ndarray | float) -> np.ndarray:
    """Return ``value`` as a real array; raise ``ValueError`` unless finite and > 0 everywhere."""
    arr = check_finite(name, value)
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got complex values")
    if arr.size and not np.all(arr > 0):
        raise ValueError(f"{name} must be positive everywhere (minimum is {float(np.min(arr)):g})")
    return arr.astype(float, copy=False)


def check_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Broadcast a scalar to ``shape``; raise ``ValueError`` if an array has another shape."""
    arr = np.asarray(arr)
    if arr.ndim == 0:
        return np.broadcast_to(arr, shape)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    return arr


def uniform_spacing(name: str, coord: np.ndarray, rtol: float = 1e-6) -> float:
    """Return the spacing ``h`` of an increasing, uniformly spaced 1-D coordinate array.

    Raises ``ValueError`` if the array is not 1-D, has fewer than 3 nodes, is not strictly
    increasing, or its spacing varies by more than ``rtol`` relative.
    """
    c = check_finite(name, coord)
    if c.ndim != 1 or c.size < 3:
        raise ValueError(f"{name} must be a 1-D array with at least 3 nodes, got shape {c.shape}")
    d = np.diff(c.astype(float))
    h = float(c[-1] - c[0]) / (c.size - 1)
    if h <= 0 or np.any(d <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    if np.max(np.abs(d - h)) > rtol * h:
        raise ValueError(f"{name} must be uniformly spaced (np.linspace), spacing varies")
    return h


def as_coords(coords: Sequence[np.ndarray], max_dim: int) -> tuple[list[np.ndarray], list[float]]:
    """Validate a sequence of 1-D node-centred axes; return float arrays and their spacings."""
    if isinstance(coords, np.ndarray) and coords.ndim == 1:
        coords = [coords]
    coords = list(coords)
    if not 1 <= len(coords) <= max_dim:
        raise ValueError(f"coords must hold 1 to {max_dim} axes, got {len(coords)}")
    names = "xyz"
    arrays = [np.asarray(c, dtype=float) for c in coords]
    spacings = [uniform_spacing(f"coords[{k}] ({names[k]})", c) for k, c in enumerate(arrays)]
    return arrays, spacings
