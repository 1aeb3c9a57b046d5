"""Tests for pinnsiren.signals: loaders, finite differences, PSNR, gauges, masks, priors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pinnsiren.errors import UserError
from pinnsiren.families.fit import signals as S

# ---------------------------------------------------------------------------------------------
# helpers


def _xy(n: int) -> tuple[np.ndarray, np.ndarray]:
    c = S.grid_coords((n, n))
    return c[..., 0], c[..., 1]


def _trig(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """f = sin(pi x) cos(2 pi y) with its exact gradient and Laplacian."""
    x, y = _xy(n)
    f = np.sin(np.pi * x) * np.cos(2 * np.pi * y)
    fx = np.pi * np.cos(np.pi * x) * np.cos(2 * np.pi * y)
    fy = -2 * np.pi * np.sin(np.pi * x) * np.sin(2 * np.pi * y)
    return f, fx, fy, -5 * np.pi**2 * f


# ---------------------------------------------------------------------------------------------
# grid


def test_grid_coords_ij_convention() -> None:
    c = S.grid_coords((5, 3))
    assert c.shape == (5, 3, 2)
    np.testing.assert_allclose(c[:, 0, 0], np.linspace(-1, 1, 5))  # axis 0 is x
    np.testing.assert_allclose(c[0, :, 1], np.linspace(-1, 1, 3))  # axis 1 is y
    assert S.grid_spacing((5, 3)) == (0.5, 1.0)


# ---------------------------------------------------------------------------------------------
# finite differences


def test_sobel_and_laplacian_exact_on_polynomials() -> None:
    nx, ny = 21, 17
    c = S.grid_coords((nx, ny))
    x, y = c[..., 0], c[..., 1]
    # quadratic: central differences are exact, Sobel smoothing of a linear derivative exact
    q = 1.5 * x**2 - 0.7 * x * y + 3.0 * y**2 + 0.2 * x - y + 4.0
    gx, gy = S.sobel_gradient(q)
    np.testing.assert_allclose(gx, 3.0 * x - 0.7 * y + 0.2, atol=1e-10)
    np.testing.assert_allclose(gy, -0.7 * x + 6.0 * y - 1.0, atol=1e-10)
    np.testing.assert_allclose(S.laplacian_5pt(q), 3.0 + 6.0, atol=1e-9)
    # cubic: the 5-point Laplacian (cubic ghost cells at the edges) is still exact everywhere
    cub = x**3 - 2 * x * y**2 + y**3 + x**2 * y
    np.testing.assert_allclose(S.laplacian_5pt(cub), 6 * x - 4 * x + 6 * y + 2 * y, atol=1e-8)


def test_sobel_sign_and_units_on_linear_ramp() -> None:
    x, y = _xy(9)
    gx, gy = S.sobel_gradient(2.0 * x - 5.0 * y, mode="nearest")
    np.testing.assert_allclose(gx[1:-1, 1:-1], 2.0)
    np.testing.assert_allclose(gy[1:-1, 1:-1], -5.0)


def test_derivatives_second_order_convergence() -> None:
    errs = []
    for n in (33, 65, 129):
        f, fx, fy, lap = _trig(n)
        gx, gy = S.sobel_gradient(f)
        ll = S.laplacian_5pt(f)
        inner = (slice(1, -1), slice(1, -1))
        errs.append(
            [
                np.abs(gx - fx)[inner].max(),
                np.abs(gy - fy)[inner].max(),
                np.abs(ll - lap)[inner].max(),
                np.abs(gx - fx).max(),  # whole grid, incl. edges (extrapolate mode)
                np.abs(ll - lap).max(),
            ]
        )
    e = np.array(errs)
    ratios = e[:-1] / e[1:]
    # interior: ~4x per halving of h (second order)
    assert np.all(ratios[:, :3] > 3.5) and np.all(ratios[:, :3] < 4.5), ratios
    # edges with cubic ghost cells also converge at second order asymptotically
    assert np.all(ratios[-1, 3:] > 3.5), ratios
    # and the absolute error is at discretisation level
    assert e[-1, 0] < 0.02 and e[-1, 2] < 0.05


def test_scipy_boundary_mode_edge_error_does_not_converge() -> None:
    # documented: with mode="nearest" the edge row is O(1) wrong; interior is fine
    f, fx, _, _ = _trig(129)
    gx, _ = S.sobel_gradient(f, mode="nearest")
    assert np.abs(gx - fx)[1:-1, 1:-1].max() < 0.02
    assert np.abs(gx - fx)[0].max() > 1.0


def test_derivatives_per_channel_and_spacing() -> None:
    f, fx, fy, lap = _trig(65)
    stack = np.stack([f, 2.0 * f], axis=-1)
    gx, gy = S.sobel_gradient(stack)
    assert gx.shape == (65, 65, 2)
    g0, _ = S.sobel_gradient(f)
    np.testing.assert_allclose(gx[..., 1], 2.0 * g0, atol=1e-12)
    np.testing.assert_allclose(S.laplacian_5pt(stack)[..., 0], S.laplacian_5pt(f), atol=1e-12)
    # an explicit spacing scales as 1/h and 1/h^2
    h = S.grid_spacing(f.shape)[0]
    np.testing.assert_allclose(S.sobel_gradient(f, 2 * h)[0], 0.5 * g0, atol=1e-12)
    np.testing.assert_allclose(S.laplacian_5pt(f, 2 * h), 0.25 * S.laplacian_5pt(f), atol=1e-9)


def test_bad_boundary_mode() -> None:
    with pytest.raises(ValueError, match="boundary mode"):
        S.sobel_gradient(np.zeros((8, 8)), mode="constant")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# PSNR


def test_psnr_known_levels() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (32, 32))
    target[0, 0], target[0, 1] = -1.0, 1.0  # range exactly 2
    assert S.psnr(target + 0.01 * 2.0, target) == pytest.approx(40.0, abs=1e-9)
    assert S.psnr(target + 0.1, target, data_range=1.0) == pytest.approx(20.0, abs=1e-9)
    assert S.psnr(target, target) == float("inf")
    with pytest.raises(ValueError):
        S.psnr(np.ones(4), np.ones(4))  # constant target, no data_range


# ---------------------------------------------------------------------------------------------
# gauge fixing


def test_fit_constant_recovers_shift() -> None:
    f, *_ = _trig(33)
    adjusted, c = S.fit_constant(f - 0.37, f)
    assert c == pytest.approx(0.37, abs=1e-12)
    np.testing.assert_allclose(adjusted, f, atol=1e-12)
    rgb = np.stack([f, -f, 2 * f], axis=-1)
    adjusted, c = S.fit_constant(rgb + np.array([0.1, -0.2, 0.3]), rgb)
    np.testing.assert_allclose(c, [-0.1, 0.2, -0.3], atol=1e-12)
    np.testing.assert_allclose(adjusted, rgb, atol=1e-12)


def test_fit_constant_with_mask_ignores_unobserved() -> None:
    f, *_ = _trig(33)
    est = f + 1.0
    est[:5] += 100.0  # garbage where unobserved
    mask = np.ones(f.shape, bool)
    mask[:5] = False
    adjusted, c = S.fit_constant(est, f, mask=mask)
    assert c == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_allclose(adjusted[mask], f[mask], atol=1e-12)


def test_fit_harmonic_recovers_harmonic_drift() -> None:
    coords = S.grid_coords((40, 30))
    x, y = coords[..., 0], coords[..., 1]
    f = np.sin(3 * x) * np.exp(y) + x**2 * y
    est = f - (0.5 + 1.2 * x - 0.8 * y + 0.3 * (x**2 - y**2) + 0.6 * x * y)
    adjusted, coef = S.fit_harmonic(est, f, coords, degree=2)
    np.testing.assert_allclose(adjusted, f, atol=1e-10)
    # basis: 1, x, y, x^2-y^2, 2xy
    np.testing.assert_allclose(coef, [0.5, 1.2, -0.8, 0.3, 0.3], atol=1e-10)
    # degree 1 cannot absorb the quadratic part; degree 3 can also absorb Re z^3
    bad, _ = S.fit_harmonic(est, f, coords, degree=1)
    assert np.abs(bad - f).max() > 1e-2
    est3 = f + 0.4 * (x**3 - 3 * x * y**2)
    adjusted3, coef3 = S.fit_harmonic(est3, f, coords, degree=3)
    np.testing.assert_allclose(adjusted3, f, atol=1e-10)
    assert coef3.shape == (7,)


def test_fit_harmonic_flat_points_and_channels() -> None:
    coords = S.grid_coords((16, 16)).reshape(-1, 2)
    x, y = coords[:, 0], coords[:, 1]
    f = np.stack([np.cos(4 * x * y), x**4], axis=-1)  # (N, 2)
    drift = np.stack([1.0 + x, 2.0 * y - 0.5], axis=-1)
    adjusted, coef = S.fit_harmonic(f + drift, f, coords, degree=2)
    np.testing.assert_allclose(adjusted, f, atol=1e-10)
    assert coef.shape == (5, 2)


def test_harmonic_basis_is_harmonic() -> None:
    coords = S.grid_coords((65, 65))
    basis, names = S.harmonic_basis(coords, degree=4)
    assert len(names) == 9 and basis.shape == (65, 65, 9)
    for m in range(7):  # degree <= 3: the 5-point Laplacian is exact for cubics
        np.testing.assert_allclose(S.laplacian_5pt(basis[..., m]), 0.0, atol=1e-8)
    for m in (7, 8):  # degree 4: only up to the O(h^2) truncation error (4 h^2 for Re z^4)
        assert np.abs(S.laplacian_5pt(basis[..., m])).max() < 0.1


# ---------------------------------------------------------------------------------------------
# masks


def test_random_mask_fraction_and_seed() -> None:
    m = S.random_mask((50, 40), 0.1, seed=3)
    assert m.dtype == bool and m.shape == (50, 40) and m.sum() == 200
    np.testing.assert_array_equal(m, S.random_mask((50, 40), 0.1, seed=3))
    assert not np.array_equal(m, S.random_mask((50, 40), 0.1, seed=4))
    with pytest.raises(ValueError):
        S.random_mask((4, 4), 1.5)


def test_box_mask_in_coordinates() -> None:
    m = S.box_mask((5, 5), (-0.1, 0.6, -1.0, 0.0))  # x in {0, 0.5}, y in {-1, -0.5, 0}
    assert m.dtype == bool
    hole = ~m
    assert hole.sum() == 6
    assert hole[2, 0] and hole[3, 2] and not hole[4, 0] and not hole[2, 3]
    np.testing.assert_array_equal(S.box_mask((5, 5), (-0.1, 0.6, -1.0, 0.0), hole=False), hole)
    # the box is closed: centres exactly on its edges are inside
    assert (~S.box_mask((5, 5), (0.0, 0.5, -1.0, 0.0))).sum() == 6


# ---------------------------------------------------------------------------------------------
# priors


def test_priors_values_and_gradients() -> None:
    torch = pytest.importorskip("torch")
    gx = torch.tensor([3.0, 0.0, 0.0], requires_grad=True)
    gy = torch.tensor([4.0, 0.0, -2.0])
    tv = S.total_variation(gx, gy)
    assert tv.item() == pytest.approx((5.0 + 0.0 + 2.0) / 3, abs=1e-4)
    tv.backward()
    assert torch.isfinite(gx.grad).all()  # smooth at zero gradient
    assert S.total_variation(gx, gy, isotropic=False).item() == pytest.approx(3.0)
    z = torch.zeros(4)
    assert float(S.total_variation(z, z)) == 0.0
    uxx, uyy, uxy = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([2.0])
    assert float(S.hessian_frobenius(uxx, uyy, uxy, squared=True)) == pytest.approx(13.0)
    assert float(S.hessian_frobenius(uxx, uyy, uxy)) == pytest.approx(13.0**0.5, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# loaders


def test_resize_area_block_mean_and_constants() -> None:
    a = np.arange(36.0).reshape(6, 6)
    out = S.resize_area(a, (3, 2))
    np.testing.assert_allclose(out, a.reshape(3, 2, 2, 3).mean(axis=(1, 3)))
    np.testing.assert_allclose(S.resize_area(np.full((7, 5, 3), 2.5), (4, 9)), 2.5)
    up = S.resize_area(np.array([[0.0], [1.0]]), (4, 1))  # linear, clamped at the ends
    np.testing.assert_allclose(up[:, 0], [0.0, 0.25, 0.75, 1.0])


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5"])
def test_array_roundtrip_keeps_xy_layout(tmp_path: Path, ext: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.normal(size=(7, 5))
    path = tmp_path / f"sig{ext}"
    if ext == ".npy":
        np.save(path, arr)
    elif ext == ".npz":
        np.savez(path, lon=np.arange(7.0), field=arr)  # only one 2-D array: chosen by default
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset("group/field", data=arr)
            f.create_dataset("axis", data=np.arange(7.0))
    out = S.load_signal(path, normalise="none")
    np.testing.assert_allclose(out, arr)
    if ext != ".npy":
        np.testing.assert_allclose(S.load_signal(path, normalise="none", key=_key(ext)), arr)
    unit = S.load_signal(path, normalise="unit")
    assert unit.min() == 0.0 and unit.max() == 1.0
    np.testing.assert_allclose(S.load_signal(path, orientation="yx", normalise="none"), arr.T)


def _key(ext: str) -> str:
    return "field" if ext == ".npz" else "group/field"


def test_missing_and_ambiguous_keys(tmp_path: Path) -> None:
    npz = tmp_path / "two.npz"
    np.savez(npz, a=np.zeros((3, 3)), b=np.ones((3, 3)))
    with pytest.raises(ValueError, match="give key"):
        S.load_signal(npz)
    with pytest.raises(ValueError, match=r"no array 'c'.*\['a', 'b'\]"):
        S.load_signal(npz, key="c")
    np.testing.assert_allclose(S.load_signal(npz, key="b", normalise="none"), 1.0)
    h5 = tmp_path / "one.h5"
    with h5py.File(h5, "w") as f:
        f["u"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="no dataset 'v'"):
        S.load_signal(h5, key="v")


def test_png_orientation_top_left_is_xm1_yp1(tmp_path: Path) -> None:
    img = np.zeros((4, 6), dtype=np.uint8)  # 4 rows (y), 6 columns (x)
    img[0, 0] = 255  # top-left
    img[3, 5] = 128  # bottom-right
    path = tmp_path / "corner.png"
    Image.fromarray(img, mode="L").save(path)
    s = S.load_signal(path, normalise="unit")
    assert s.shape == (6, 4)  # (nx, ny) = (width, height)
    coords = S.grid_coords(s.shape)
    i_x, i_y = np.unravel_index(np.argmax(s), s.shape)
    np.testing.assert_allclose(coords[i_x, i_y], [-1.0, 1.0])
    assert s[5, 0] == pytest.approx(128 / 255)  # bottom-right -> (x, y) = (+1, -1)
    assert np.count_nonzero(s) == 2


def test_png_rgb_grayscale_and_colour(tmp_path: Path) -> None:
    img = np.zeros((3, 3, 3), dtype=np.uint8)
    img[0, 0] = (255, 0, 0)  # top-left red
    img[2, 2] = (0, 0, 255)  # bottom-right blue
    path = tmp_path / "rgb.png"
    Image.fromarray(img, mode="RGB").save(path)
    gray = S.load_signal(path, normalise="none")
    assert gray.shape == (3, 3)
    assert gray[0, 2] == pytest.approx(0.299, abs=1e-6)
    assert gray[2, 0] == pytest.approx(0.114, abs=1e-6)
    colour = S.load_signal(path, grayscale=False, normalise="none")
    assert colour.shape == (3, 3, 3)
    np.testing.assert_allclose(colour[0, 2], [1, 0, 0])
    np.testing.assert_allclose(colour[2, 0], [0, 0, 1])


def test_size_centre_crops_then_resizes(tmp_path: Path) -> None:
    arr = np.zeros((8, 4))  # (nx, ny): wide in x
    arr[:2] = 5.0  # left quarter, cropped away by the centre square crop
    arr[2:6] = np.arange(4.0)[None, :]
    path = tmp_path / "wide.npy"
    np.save(path, arr)
    out = S.load_signal(path, size=2, normalise="none")
    np.testing.assert_allclose(out, [[0.5, 2.5], [0.5, 2.5]])
    stretched = S.load_signal(path, size=(4, 4), crop=False, normalise="none")
    assert stretched.shape == (4, 4) and stretched[0].max() == 5.0


def test_grace_hopper_sample() -> None:
    s = S.load_signal("sample:grace_hopper.jpg", size=64)
    assert s.shape == (64, 64) and s.dtype == np.float64
    assert s.min() == -1.0 and s.max() == 1.0
    # full resolution: picture (600 rows, 512 columns) -> (nx, ny) = (512, 600), upright
    import matplotlib.image as mpimg

    raw = mpimg.imread(S.sample_data_path("grace_hopper.jpg")).astype(float) @ [0.299, 0.587, 0.114]
    full = S.load_signal("sample:grace_hopper.jpg", normalise="none")
    assert full.shape == (512, 600)
    np.testing.assert_allclose(full[0, -1], raw[0, 0])  # top-left -> (x, y) = (-1, +1)
    np.testing.assert_allclose(full[100, 40], raw[600 - 1 - 40, 100])


def test_topobathy_sample() -> None:
    raw = np.load(S.sample_data_path("topobathy.npz"))["topo"]  # [lat, lon], lat ascending
    s = S.load_signal("sample:topobathy.npz", orientation="yx", normalise="none")
    assert s.shape == (raw.shape[1], raw.shape[0])
    assert s[3, 7] == raw[7, 3]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        S.load_signal(tmp_path / "absent.png")
    with pytest.raises(UserError, match="absent.png"):  # the CLI's one exception family
        S.load_signal(tmp_path / "absent.png")
    bad = tmp_path / "signal.tiff"
    bad.write_bytes(b"xx")
    with pytest.raises(ValueError, match=r"signal\.tiff.*unsupported extension.*\.png"):
        S.load_signal(bad)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    with pytest.raises(S.SignalError, match="cannot read"):
        S.load_signal(junk)
    with pytest.raises(FileNotFoundError, match="sample data"):
        S.sample_data_path("nope.jpg")
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="NaN"):
        S.load_signal(tmp_path / "nan.npy")
    np.save(tmp_path / "vec.npy", np.zeros(5))
    with pytest.raises(ValueError, match="shape"):
        S.load_signal(tmp_path / "vec.npy")


# ---------------------------------------------------------------------------------------------
# fit targets


def test_build_fit_targets_layout() -> None:
    f, fx, fy, lap = _trig(17)
    rgb = np.stack([f, -f], axis=-1)
    mask = S.random_mask((17, 17), 0.5, seed=0)
    t = S.build_fit_targets(rgb, mask=mask)
    assert t.coords.shape == (289, 2) and t.values.shape == (289, 2)
    assert t.gradient.shape == (289, 4) and t.laplacian.shape == (289, 2)
    assert t.shape == (17, 17) and t.channels == 2 and t.mask is not None and t.mask.sum() == 144
    k = 5 * 17 + 11  # i_x = 5, i_y = 11
    np.testing.assert_allclose(t.coords[k], [-1 + 5 / 8, -1 + 11 / 8])
    gx, gy = S.sobel_gradient(f)
    np.testing.assert_allclose(t.gradient[k], [gx[5, 11], gy[5, 11], -gx[5, 11], -gy[5, 11]])
    np.testing.assert_allclose(t.gradient_per_channel()[k, 1], [-gx[5, 11], -gy[5, 11]])
    np.testing.assert_allclose(t.to_grid(t.values), rgb)
    np.testing.assert_allclose(t.to_grid(t.laplacian[:, 0]), S.laplacian_5pt(f))
    gray = S.build_fit_targets(f)
    assert gray.values.shape == (289, 1) and gray.mask is None
