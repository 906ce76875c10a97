"""Which variables certainly hold Python floats (and other scalar types), given the
types of the arguments.

The forward run stashes values into typed float arrays when it can; a value of another
type needs a run-time check first (see `codegen.Generator.push`). When the arguments are
Python floats and ints, most loop-carried values provably stay floats, and the generated
code for that argument signature can skip the check. The gradient sweep uses the same
facts to inline the derivatives of scalar arithmetic (`bytrev.adjoint`).

This is a small forward data-flow pass over the normal-form body on the lattice

    float (Python float), f64 (NumPy float64 scalar), real (one of the two), int, bool,
    f64[k] (a float64 ndarray of k dimensions), and unknown (None).

A float64 scalar is a subclass of float with the same arithmetic, so `real` values can
share inlined derivative code; only `float` is exact enough for the forward run's
stash (it must give back the very type it stashed).
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from . import ir

NUMERIC = ("float", "int", "bool")
REALS = ("float", "f64", "real")  # values with Python float arithmetic
SCALARS = REALS + ("int", "bool")

_MATH_FLOAT = {
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh",
    "acosh", "atanh", "exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "sqrt", "cbrt",
    "hypot", "fabs", "pow", "fmod", "copysign", "degrees", "radians", "erf", "erfc", "gamma",
    "lgamma",
}


def type_name(value):
    """The lattice element for a run-time value (exact types only: no subclasses)."""
    t = type(value)
    if t is np.ndarray and value.dtype == np.float64:
        return f"f64[{value.ndim}]"
    return {float: "float", int: "int", bool: "bool", np.float64: "f64"}.get(t)


def _join(a, b):
    if a == b:
        return a
    return "real" if a in REALS and b in REALS else None


def _join_env(a: dict, b: dict) -> dict:
    return {k: _join(a.get(k), b.get(k)) for k in a.keys() | b.keys()}


def _arith(left, right):
    """The type of `left op right` for + - * / // % ** on scalars, with a float among them."""
    if "f64" in (left, right):
        return "f64"  # NumPy scalars win over Python numbers
    if "real" in (left, right):
        return "real"
    return "float"


class FloatVars:
    """`floats_before[id(stmt)]`: the variables holding a Python float whenever the
    forward run reaches `stmt`; `env_before` / `env_after[id(stmt)]`: every variable's
    lattice type there (for `type(expr, env)`)."""

    def __init__(self, body, params, arg_types, context):
        self.cx = context
        self.floats_before = {}
        self.env_before = {}
        self.env_after = {}
        self._breaks = []
        self.block(body, dict(zip(params, arg_types)))

    # ---- expressions

    def type(self, e, env):
        if isinstance(e, ir.Const):
            return type_name(e.value)
        if isinstance(e, ir.Name):
            return env.get(e.id)
        if isinstance(e, ir.BinOp):
            left, right = self.type(e.left, env), self.type(e.right, env)
            if left not in SCALARS or right not in SCALARS:
                return None
            if left not in NUMERIC or right not in NUMERIC:
                return _arith(left, right) if e.op in ("+", "-", "*", "/", "%", "//", "**") \
                    else None
            if e.op == "/":
                return "float"
            if e.op in ("+", "-", "*", "%", "//", "**"):
                if "float" in (left, right):
                    return "float"
                return "int" if e.op != "**" else None  # int ** negative int is a float
            return "int" if e.op in ("&", "|", "^", "<<", ">>") and "float" not in (left, right) \
                else None
        if isinstance(e, ir.UnaryOp):
            t = self.type(e.operand, env)
            if e.op == "not":
                return "bool"
            if e.op in ("-", "+") and t in SCALARS:
                return t if t in REALS else "int"
            return "int" if e.op == "~" and t in ("int", "bool") else None
        if isinstance(e, ir.Compare):
            return "bool" if self.type(e.left, env) in NUMERIC and \
                self.type(e.right, env) in NUMERIC else None
        if isinstance(e, ir.BoolOp):
            return _join(self.type(e.left, env), self.type(e.right, env))
        if isinstance(e, ir.IfExp):
            return _join(self.type(e.body, env), self.type(e.orelse, env))
        if isinstance(e, ir.Call) and not e.kwargs:
            return self.call_type(e, env)
        if isinstance(e, ir.Subscript) and env.get(getattr(e.value, "id", None)) == "f64[1]" \
                and self.type(e.index, env) == "int":
            return "f64"  # an element of a 1-D float64 array
        return None

    def call_type(self, e, env):
        obj = self.cx.resolve(e.func)
        args = [self.type(a, env) for a in e.args]
        if obj is None:
            return None
        if getattr(obj, "__name__", None) in _MATH_FLOAT and getattr(math, obj.__name__, None) is obj:
            return "float"
        if obj is builtins.float:
            return "float"
        if obj in (builtins.int, builtins.len) or (obj is builtins.round and len(args) == 1):
            return "int"
        if obj is builtins.abs and args and args[0] in SCALARS:
            return args[0] if args[0] in REALS else "int"
        if obj in (builtins.min, builtins.max) and len(args) > 1 and all(a in SCALARS for a in args):
            out = args[0]
            for a in args[1:]:
                out = _join(out, a)
            return out
        return None

    # ---- statements

    def block(self, stmts, env):
        for s in stmts:
            env = self.stmt(s, env)
        return env

    def stmt(self, s, env):
        self.floats_before[id(s)] = frozenset(k for k, t in env.items() if t == "float")
        self.env_before[id(s)] = env
        env = self._effect(s, dict(env))
        self.env_after[id(s)] = env
        return env

    def _effect(self, s, env):
        if isinstance(s, ir.Assign):
            if isinstance(s.target, ir.Name):
                env[s.target.id] = self.type(s.value, env)
            elif isinstance(s.target, ir.Tuple):
                names = [t for t in s.target.elts]
                values = s.value.elts if isinstance(s.value, (ir.Tuple, ir.List)) and \
                    len(s.value.elts) == len(names) else [None] * len(names)
                types = [self.type(v, env) if v is not None else None for v in values]
                for t, ty in zip(names, types):
                    for n in ir.target_names(t):
                        env[n] = ty if isinstance(t, ir.Name) else None
        elif isinstance(s, ir.AugAssign) and isinstance(s.target, ir.Name):
            env[s.target.id] = self.type(ir.BinOp(s.op, s.target, s.value), env)
        elif isinstance(s, ir.If):
            env = _join_env(self.block(s.body, env), self.block(s.orelse, env))
        elif isinstance(s, (ir.For, ir.While)):
            env = self.loop(s, env)
        elif isinstance(s, ir.Break):
            self._breaks[-1].append(env)
        return env

    def loop(self, s, env):
        targets = ir.target_names(s.target) if isinstance(s, ir.For) else set()
        target_type = None
        if isinstance(s, ir.For) and isinstance(s.target, ir.Name) and \
                isinstance(s.iter, ir.Call) and self.cx.resolve(s.iter.func) is range:
            target_type = "int"
        elif isinstance(s, ir.For) and isinstance(s.target, ir.Name) and \
                isinstance(s.iter, ir.Name) and env.get(s.iter.id) == "f64[1]":
            target_type = "f64"
        header = env
        while True:
            self._breaks.append([])
            inner = dict(header)
            for t in targets:
                inner[t] = target_type
            end = self.block(s.body, inner)
            breaks = self._breaks.pop()
            new = _join_env(header, end)
            if new == header:
                break
            header = new
        out = header
        for b in breaks:
            out = _join_env(out, b)
        for t in targets:  # after the loop: the last element, or the old value if none ran
            out[t] = _join(env.get(t), target_type) if t in env else None
        return out
