"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "problems"
SHARED = ROOT.parent / "shared"


@pytest.fixture
def problems_dir() -> Path:
    return PROBLEMS
