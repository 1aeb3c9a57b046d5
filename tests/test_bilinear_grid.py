"""The bilinear grid of the hybrid velocity model: exact on bilinear functions, clamped outside."""

from __future__ import annotations

import pytest
import torch

from pinnsiren.engine.bilinear_grid import BilinearGrid

BOX = ((-0.5, 0.5), (-1.0, 1.0))


def bilinear(x: torch.Tensor) -> torch.Tensor:
    """f = 1 + 2x − 3y + 4xy, reproduced exactly by bilinear interpolation."""
    return 1 + 2 * x[:, 0] - 3 * x[:, 1] + 4 * x[:, 0] * x[:, 1]


def grid_of_bilinear(shape: tuple[int, int]) -> BilinearGrid:
    grid = BilinearGrid(shape, BOX)
    xs = torch.linspace(*BOX[0], shape[0], dtype=torch.float64)
    ys = torch.linspace(*BOX[1], shape[1], dtype=torch.float64)
    nodes = torch.cartesian_prod(xs, ys)
    with torch.no_grad():
        grid.values.copy_(bilinear(nodes).reshape(shape))
    return grid


def test_bilinear_function_and_its_gradient_are_exact():
    grid = grid_of_bilinear((5, 7))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(200, 2, generator=gen, dtype=torch.float64)
    x = x * torch.tensor([1.0, 2.0], dtype=torch.float64) - torch.tensor([0.5, 1.0])
    value, grad = grid.with_gradient(x)
    torch.testing.assert_close(value[:, 0], bilinear(x))
    torch.testing.assert_close(grid(x)[:, 0], bilinear(x))
    torch.testing.assert_close(grad[:, 0], 2 + 4 * x[:, 1])  # ∂f/∂x
    torch.testing.assert_close(grad[:, 1], -3 + 4 * x[:, 0])  # ∂f/∂y


def test_outside_the_box_takes_the_nearest_boundary_value():
    grid = grid_of_bilinear((4, 4))
    outside = torch.tensor([[0.9, 0.2], [-3.0, -2.0]], dtype=torch.float64)
    nearest = torch.tensor([[0.5, 0.2], [-0.5, -1.0]], dtype=torch.float64)
    value, grad = grid.with_gradient(outside)
    torch.testing.assert_close(value[:, 0], bilinear(nearest))
    assert float(grad[0, 0]) == 0 and float(grad[0, 1]) == pytest.approx(-3 + 4 * 0.5)  # x clamped
    assert torch.all(grad[1] == 0)


def test_starts_at_zero_and_trains():
    grid = BilinearGrid((3, 3), BOX)
    x = torch.tensor([[0.1, 0.3]], dtype=torch.float64)
    assert float(grid(x)) == 0.0
    (grid(x) - 1.0).pow(2).sum().backward()
    assert grid.values.grad is not None and int((grid.values.grad != 0).sum()) == 4  # one cell


def test_too_small_grid_is_refused():
    with pytest.raises(ValueError, match="2 × 2"):
        BilinearGrid((1, 5), BOX)
