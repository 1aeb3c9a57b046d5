"""Safe arithmetic expressions for coefficient fields.

A coefficient may be written as a string in the problem's axis names, for example
``0.02*exp(-(x**2 + y**2)/1e-3)`` or ``where(x**2 + y**2 < 0.01, 2.0, 1.0)``.
The string is parsed once with :mod:`ast` and checked against a whitelist:

* numbers, the axis names of the problem, and the constants ``pi`` and ``e``;
* the operators ``+ - * / **`` and unary ``-``/``+``;
* comparisons ``< <= > >= == !=`` (chained comparisons allowed) and ``and``/``or``/``not``
  on their results;
* the functions ``sin cos tan exp log sqrt tanh abs`` and ``where(cond, a, b)``,
  ``minimum(a, b)``, ``maximum(a, b)``.

Nothing is ever handed to Python's ``eval``. The parsed tree compiles to a closure
that evaluates with numpy arrays (for the finite-difference reference) or torch
tensors (for training) from the one definition, so both solvers see the same
coefficients.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

FUNCTIONS_1 = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "abs")
FUNCTIONS_2 = ("minimum", "maximum")
CONSTANTS = {"pi": math.pi, "e": math.e}
ALLOWED_TEXT = (
    "numbers, axis names, pi, e, + - * / **, comparisons, and/or/not, "
    + ", ".join(FUNCTIONS_1 + FUNCTIONS_2)
    + ", where(cond, a, b)"
)

Evaluator = Callable[[Mapping[str, Any]], Any]


class ExpressionError(ValueError):
    """A malformed or disallowed expression; the message is one line."""


def is_torch(value: Any) -> bool:
    """True for a torch tensor."""
    return isinstance(value, torch.Tensor)


def _backend(*values: Any) -> Any:
    """Return the array namespace (numpy or torch) that the operands call for."""
    return torch if any(is_torch(v) for v in values) else np


def _apply1(name: str, a: Any) -> Any:
    xp = _backend(a)
    if xp is np:
        return getattr(np, "absolute" if name == "abs" else name)(a)
    fn = getattr(xp, name)
    return fn(a)


def _apply2(name: str, a: Any, b: Any) -> Any:
    xp = _backend(a, b)
    if xp is np:
        return getattr(np, name)(a, b)
    a, b = _as_tensors(xp, a, b)
    return getattr(xp, name)(a, b)


def _as_tensors(xp: Any, *values: Any) -> list[Any]:
    ref = next(v for v in values if is_torch(v))
    out = []
    for v in values:
        if is_torch(v):
            out.append(v)
        else:
            out.append(xp.as_tensor(v, dtype=ref.dtype, device=ref.device))
    return out


def _where(cond: Any, a: Any, b: Any) -> Any:
    xp = _backend(cond, a, b)
    if xp is np:
        return np.where(cond, a, b)
    floats = [v for v in (a, b) if is_torch(v) and v.is_floating_point()]
    # two plain numbers: keep them exact in float64; the caller casts the final result
    dtype = floats[0].dtype if floats else xp.float64
    device = next(v.device for v in (cond, a, b) if is_torch(v))
    cond = cond if is_torch(cond) else xp.as_tensor(cond, device=device)
    a = a if is_torch(a) else xp.as_tensor(a, dtype=dtype, device=device)
    b = b if is_torch(b) else xp.as_tensor(b, dtype=dtype, device=device)
    return xp.where(cond, a, b)


def _logical(op: str, a: Any, b: Any) -> Any:
    if _backend(a, b) is np:
        return np.logical_and(a, b) if op == "and" else np.logical_or(a, b)
    return (a & b) if op == "and" else (a | b)


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}


class Expression:
    """A parsed, whitelisted expression in named variables.

    ``Expression("exp(-x**2)", allowed_names={"x"})`` compiles the text;
    ``expr({"x": array})`` evaluates it with numpy or torch operands.
    """

    def __init__(self, text: str, allowed_names: set[str] | None = None) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError("empty expression")
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
        self.names: set[str] = set()
        self._fn = self._compile(tree.body)
        if allowed_names is not None:
            unknown = sorted(self.names - set(allowed_names))
            if unknown:
                raise ExpressionError(
                    f"{text!r} uses {', '.join(unknown)}, which is not an axis "
                    f"(axes: {', '.join(sorted(allowed_names)) or 'none'})"
                )

    def __call__(self, variables: Mapping[str, Any]) -> Any:
        return self._fn(variables)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def _compile(self, node: ast.AST) -> Evaluator:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"{self.text!r}: only numbers are allowed as constants")
            value = float(node.value)
            return lambda env: value
        if isinstance(node, ast.Name):
            name = node.id
            if name in CONSTANTS:
                const = CONSTANTS[name]
                return lambda env: const
            self.names.add(name)
            return lambda env: env[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            op = _BINOPS[type(node.op)]
            left, right = self._compile(node.left), self._compile(node.right)
            return lambda env: op(left(env), right(env))
        if isinstance(node, ast.UnaryOp):
            operand = self._compile(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda env: -operand(env)
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.Not):
                return lambda env: _not(operand(env))
        if isinstance(node, ast.Compare):
            return self._compile_compare(node)
        if isinstance(node, ast.BoolOp):
            kind = "and" if isinstance(node.op, ast.And) else "or"
            parts = [self._compile(v) for v in node.values]

            def boolop(env: Mapping[str, Any]) -> Any:
                result = parts[0](env)
                for part in parts[1:]:
                    result = _logical(kind, result, part(env))
                return result

            return boolop
        if isinstance(node, ast.Call):
            return self._compile_call(node)
        raise ExpressionError(
            f"{self.text!r}: '{ast.unparse(node)}' is not allowed (allowed: {ALLOWED_TEXT})"
        )

    def _compile_compare(self, node: ast.Compare) -> Evaluator:
        operands = [self._compile(node.left)] + [self._compile(c) for c in node.comparators]
        ops = []
        for op in node.ops:
            if type(op) not in _CMPOPS:
                raise ExpressionError(
                    f"{self.text!r}: comparison '{type(op).__name__}' not allowed"
                )
            ops.append(_CMPOPS[type(op)])

        def compare(env: Mapping[str, Any]) -> Any:
            values = [o(env) for o in operands]
            result = ops[0](values[0], values[1])
            for i in range(1, len(ops)):
                result = _logical("and", result, ops[i](values[i], values[i + 1]))
            return result

        return compare

    def _compile_call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise ExpressionError(f"{self.text!r}: only plain calls like sin(x) are allowed")
        name = node.func.id
        args = [self._compile(a) for a in node.args]
        arity = (
            1 if name in FUNCTIONS_1 else 2 if name in FUNCTIONS_2 else 3 if name == "where" else 0
        )
        if arity == 0:
            raise ExpressionError(
                f"{self.text!r}: unknown function {name!r} (allowed: {ALLOWED_TEXT})"
            )
        if len(args) != arity:
            raise ExpressionError(f"{self.text!r}: {name} takes {arity} argument(s)")
        if arity == 1:
            (a,) = args
            return lambda env: _apply1(name, a(env))
        if arity == 2:
            a, b = args
            return lambda env: _apply2(name, a(env), b(env))
        c, a, b = args
        return lambda env: _where(c(env), a(env), b(env))


def _not(value: Any) -> Any:
    return np.logical_not(value) if _backend(value) is np else ~value
