"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "problems"
#: the real cylinder inversion data set shipped with the project (provenance in its README)
CYLINDER = PROBLEMS / "data" / "siren-fwi-cylinder" / "data_cylinder_5.mat"


@pytest.fixture
def problems_dir() -> Path:
    return PROBLEMS
