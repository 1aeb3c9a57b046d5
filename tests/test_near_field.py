"""Near-field subtraction of a Helmholtz total field: the subtracted field's operator against
finite differences, the forcing that cancels the source, a coarse solve against FD, the rules."""

from __future__ import annotations

import numpy as np
import pytest

from pinnsiren.families.helmholtz.incident import cutoff, near_field
from pinnsiren.families.helmholtz.operator import pml_coefficients, source_density
from pinnsiren.families.helmholtz.schema import Source
from pinnsiren.problem import SpecError, load_problem
from pinnsiren.run.compare import compare_run
from pinnsiren.run.solve import solve
from tests.conftest import PROBLEMS

SOURCE = [Source(position=(0.05, -0.02), amplitude=[1.0, 1.0], sigma=0.01)]
OMEGA, INNER, OUTER = 20.0, 0.2, 0.7


def test_cutoff_is_one_then_zero_with_smooth_ends():
    r = np.array([0.0, 0.2, 0.2 + 1e-6, 0.45, 0.7 - 1e-6, 0.7, 1.0])
    chi, d1, d2 = cutoff(r, 0.2, 0.7)
    assert chi[0] == chi[1] == 1.0 and chi[-1] == chi[-2] == 0.0
    assert chi[3] == pytest.approx(0.5)
    assert np.abs(d1[[1, 2, 4, 5]]).max() < 1e-9 and np.abs(d2[[1, 2, 4, 5]]).max() < 1e-3


def test_forcing_is_the_source_minus_the_operator_of_the_near_field():
    """Without a PML (A = B = C = 1) the forcing is f − (Δ + k²)(χ u₀): zero inside the inner
    disk (the source and the field cancel), and outside it matches the five-point Laplacian of
    ψ = χ u₀ to second order."""
    spec = load_problem(PROBLEMS / "helmholtz_dirichlet.yaml")  # walls: no PML coefficients
    h = 1e-4
    x = np.array([0.1, 0.3, -0.4, 0.52, 0.05])
    y = np.array([0.0, 0.2, 0.35, -0.1, 0.0])
    co = pml_coefficients(x, y, spec, OMEGA)
    k2 = np.full(x.shape, OMEGA**2)
    psi, forcing = near_field(x, y, SOURCE, OMEGA, 1.0, INNER, OUTER, co, k2)

    def value(px, py):
        return near_field(px, py, SOURCE, OMEGA, 1.0, INNER, OUTER)[0]

    lap = (value(x + h, y) + value(x - h, y) + value(x, y + h) + value(x, y - h) - 4 * psi) / h**2
    expected = source_density(x, y, SOURCE) - (lap + k2 * psi)
    far = np.hypot(x - 0.05, y + 0.02) > INNER
    assert not far[0] and not far[-1] and far[1:4].all()
    np.testing.assert_allclose(forcing[~far], 0.0)
    np.testing.assert_allclose(forcing[far], expected[far], rtol=1e-4, atol=1e-3)
    assert np.abs(forcing[far]).max() > 1.0


def test_coarse_near_field_solve_matches_the_fd_total_field(tmp_path):
    spec = load_problem(
        PROBLEMS / "helmholtz_uniform.yaml",
        [
            "pde.omega=10",
            "model.width=800",
            "model.omega_0=60",
            "sampling.points={residual: 2000, interior: 1000}",
            "evaluation.grid={x: 64, y: 64}",
            "output.plots=false",
        ],
    )
    solve(spec, tmp_path, progress=False)
    assert compare_run(tmp_path, plots=False)["rel_l2"] < 2e-2


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("pde.near_field.inner=0.05", "pde.near_field.inner"),  # < 8 sigma
        ("pde.near_field.inner=0.8", "pde.near_field"),  # inner >= outer
        ("pde.sources.0.position=[0.4, 0.0]", "pde.near_field.inner"),  # disk reaches the PML
        ("pde.velocity=1 + 0.5*x", "pde.near_field.inner"),  # not constant around the source
    ],
)
def test_near_field_rules(override, path):
    with pytest.raises(SpecError) as info:
        load_problem(PROBLEMS / "helmholtz_uniform.yaml", [override])
    assert info.value.path == path
