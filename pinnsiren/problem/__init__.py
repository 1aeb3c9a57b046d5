"""The whole problem: the schema assembled from the registered families, and loading."""

from pinnsiren.problem.loading import apply_overrides, load_problem, parse_problem
from pinnsiren.problem.spec import ProblemSpec
from pinnsiren.schema.types import SpecError

__all__ = ["ProblemSpec", "SpecError", "apply_overrides", "load_problem", "parse_problem"]
