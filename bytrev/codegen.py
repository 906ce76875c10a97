"""Code generation: compile an `Analysis` into two Python functions.

* `forward(tape_containers, *params)` runs the function and appends to the tape;
* `backward(tape_containers, *results, *held)` runs it in reverse and returns the
  parameters.

Both are built as Python `ast`, compiled once and cached by the caller. Generated names
start with `_br_`; IR temporaries `$n` become `_br_n`, recovered old values `_br_o_x`.
Non-literal constants (helpers, callables, code objects) are passed in as closure
variables of a factory function, so the generated code runs with the user's own globals.
"""
from __future__ import annotations

import ast
import re
import sys
import types
from array import array
from dataclasses import dataclass

import numpy as np

from . import ir
from .analysis import (Analysis, AssignPlan, Refused, callable_kind, current_values,
                       is_random_generator, user_function_effects, user_function_is_pure,
                       _base_name)
from .backend import is_array
from .scalars import REALS
from .tape import extend_floats
from .errors import NotInvertibleError, ReversalError, UnsupportedError

# --------------------------------------------------------------------------- runtime helpers


class _Unbound:
    """Stands for a variable that had no value when the forward run stashed it."""

    def __repr__(self):
        return "<unbound>"


UNBOUND = _Unbound()


def copy_value(v):
    """A copy of `v` that later in-place changes cannot reach."""
    if is_array(v):
        return v.copy()
    if isinstance(v, (list, dict, set, bytearray)):
        return type(v)(v)
    return v


def restore(current, old):
    """Put `old` back: in place when the current value is the same array object the
    forward run changed in place, so that every alias sees the restored contents."""
    if is_array(current) and is_array(old) \
            and current.shape == old.shape and current is not old:
        current[...] = old
        return current
    return old


def extend_stash(containers, index, values):
    """Move a block's values (Generator.loop_in_blocks) onto a stash site's stack, which
    may receive other values than floats: into its float array while they are all Python floats, else into a
    list; empty the block. Returns the stack."""
    stack = containers[index]
    if type(stack) is array and all(type(v) is float for v in values):
        extend_floats(stack, values)
        return stack
    if type(stack) is array:
        stack = containers[index] = [*stack, *values]
    else:
        stack.extend(values)
    values.clear()
    return stack


def promote(containers, index, value):
    """Turn a stash site's float array into a list holding `value` too; return it."""
    values = list(containers[index])
    values.append(value)
    containers[index] = values
    return values


def nonzero(v) -> bool:
    if isinstance(v, (int, float, complex)):
        return v != 0
    r = v != 0
    return bool(r.all()) if hasattr(r, "all") else bool(r)


_REALS = (float, np.float64)  # one arithmetic: the backward run gives floats back as floats


def same_kind(old, new) -> bool:
    """Whether an inverse, which gives back a value like `new`, can give back `old`: one
    type (a Python float and a NumPy float64 count as one) and, for arrays, one shape
    and dtype."""
    if type(old) is not type(new):
        return type(old) in _REALS and type(new) in _REALS
    shape = getattr(old, "shape", None)
    return shape is None or (shape == new.shape and old.dtype == new.dtype)


BLOCK = 4096  # iterations of a loop run in blocks (Generator.in_blocks)
_TINY, _HUGE = sys.float_info.min, sys.float_info.max  # float64's normal magnitudes


def scaled_back(old, new) -> bool:
    """Whether the inverse of a product or quotient (AssignPlan.scaled) gives `old` back
    from `new`: one kind (same_kind) and, for a float or complex `new`, a normal finite
    magnitude (zero only from a zero `old`). A product that underflows to zero or to a
    subnormal has lost `old`'s digits, one that overflows has lost `old`."""
    if not same_kind(old, new):
        return False
    if not isinstance(new, (float, complex, np.floating, np.complexfloating)):
        return True  # exact arithmetic; arrays are not checked (README: Known limits)
    if isinstance(new, (float, complex)):
        tiny, huge = _TINY, _HUGE
    else:
        info = np.finfo(new.dtype)
        tiny, huge = info.tiny, info.max
    return bool(tiny <= abs(new) <= huge or new == old == 0)


def _float_scaled_back(old, new):
    """scaled_back inlined for two floats: `TINY <= new <= HUGE or -HUGE <= new <= -TINY
    or new == old == 0`."""
    def between(low, high):
        return ast.Compare(ast.Constant(low), [ast.LtE(), ast.LtE()], [new, ast.Constant(high)])
    return ast.BoolOp(ast.Or(), [between(_TINY, _HUGE), between(-_HUGE, -_TINY),
                                 ast.Compare(new, [ast.Eq(), ast.Eq()], [old, ast.Constant(0)])])


def check_disjoint(changed, values, where, text):
    """Refuse an in-place change whose undo would read something it changes: `a[1] += t`
    is undone by `a[1] -= t`, which needs t unchanged (`t = a[0]` is a number for a 1-D
    a, but a row of a 2-D one, maybe the row being changed)."""
    if not is_array(changed):
        return
    for v in values:
        if not is_array(v):
            continue
        try:
            shared = bool(np.may_share_memory(changed, v))
        except Exception:
            shared = True
        if shared:
            fn, filename, line = where
            raise UnsupportedError(f"`{text}`, which reads a view of the array it changes",
                                   function=fn, filename=filename, line=line,
                                   hint="copy the value first, e.g. t = a[0].copy()")


def divide_in_place(target, value):
    """Undo `target *= value` (in place for arrays, exactly for integers)."""
    if is_array(target):
        if target.dtype.kind in "iu":
            np.floor_divide(target, value, out=target)
        else:
            np.divide(target, value, out=target)
        return target
    if isinstance(target, int) and isinstance(value, int):
        return target // value
    return target / value


SEQUENCE_TYPES = (range, tuple, list, str, bytes)  # and arrays of any backend


def sequence(obj, where):
    """Check that a loop iterates over something the backward run can index."""
    if isinstance(obj, SEQUENCE_TYPES) or is_array(obj):
        return obj
    fn, filename, line = where
    raise UnsupportedError(f"iteration over a {type(obj).__name__}", function=fn,
                           filename=filename, line=line,
                           hint="bytrev indexes the sequence in the backward run; iterate "
                                "over a list, tuple, range or array (e.g. list(...))")


def range_bitmap(r):
    """A zeroed bitmap, one byte per iteration of a loop over `r`, for the bits of its
    branches (see analysis.Analyzer.bitmap_branches)."""
    if type(r) is not range:  # `range` was rebound after the function was compiled
        raise ReversalError(f"expected a range to loop over, got a {type(r).__name__}")
    return bytearray(len(r))


_FLIP = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def flip_bitmap(bitmap):
    """A bitmap marked where the `else` arm ran, as the bits of the `if` arm."""
    return bitmap.translate(_FLIP)


@dataclass
class Bitmap:
    """A branch's bitmap in a loop (range_bitmap): the generated variable, the index
    expression of the iteration's byte, and whether the `else` arm marks it."""
    name: str
    position: ast.expr
    flipped: bool = False


def _tape_writes(stmts) -> int:
    """Places in generated statements that write to the tape (its stacks `_br_sN` and
    block buffers `_br_bN`) on every run of them, not only under an `if` (such as the
    record of a failed check): a rough count of the recording an arm always pays for."""
    count = 0
    for st in stmts:
        if isinstance(st, ast.If):
            continue
        count += sum(isinstance(node, ast.Name) and re.fullmatch(r"_br_[sb]\d+", node.id)
                     is not None for node in ast.walk(st))
    return count


def make_function(globals_, code, defaults, kwdefaults, closure):
    """The function object a nested `def`/`lambda` creates (closure cells snapshot the
    captured variables, which bytrev checks are not reassigned)."""
    cells = tuple(types.CellType(v) for v in closure) or None
    fn = types.FunctionType(code, globals_, code.co_name, defaults or None, cells)
    if kwdefaults:
        fn.__kwdefaults__ = dict(kwdefaults)
    return fn


_CALLABLES: dict = {}  # id(callable) -> (callable, (construct, hint) refusing it, or None)


def checked_parameter_callable(obj, where):
    """A parameter f calls (`def f(x, op): ... op(x)`): the analysis could not see what it
    holds and took its calls as pure, free to run again in the backward run or to be
    undone by an inverse. Check the argument when the run starts: a random draw, a
    side-effect builtin, a function that changes its argument, or a user function doing
    any of these is refused; a user function bytrev cannot lift runs as it is."""
    entry = _CALLABLES.get(id(obj))
    if entry is None or entry[0] is not obj:
        if len(_CALLABLES) > 4096:
            _CALLABLES.clear()
        entry = _CALLABLES[id(obj)] = (obj, _refusal(obj))
    if entry[1] is not None:
        construct, hint = entry[1]
        raise UnsupportedError(construct, function=where[0], filename=where[1], line=where[2],
                               hint=hint)


def checked_parameter_receiver(obj, where):
    """A parameter whose methods f calls (`rng.normal(c)`): refused when it is a random
    generator, whose methods the analysis took as pure (see checked_parameter_callable)."""
    if is_random_generator(obj):
        raise UnsupportedError(
            f"calls of the methods of a {type(obj).__name__} passed as a parameter (they draw "
            "another value each time, and the backward run would call them again)",
            function=where[0], filename=where[1], line=where[2],
            hint="draw the numbers outside the function and pass them in")


def _refusal(obj):
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    try:
        kind = callable_kind(obj)
        if kind == "impure":
            return (f"a call to {name} through a parameter (its result changes from call to "
                    "call, and the backward run would call it again)",
                    "call it outside the function and pass its result in")
        if kind == "user" and not user_function_is_pure(obj):
            return (f"a call to {name} through a parameter (it has side effects or changes "
                    "its arguments)", "pass a pure function, or its results")
    except Refused as refused:
        return (f"{refused.construct} through a parameter", refused.hint)
    except UnsupportedError:
        pass  # a function bytrev cannot lift: run as it is
    return None


def checked_call(func, params, where):
    """Call `func`, which may apply `x += ...` to the parameters `params`: fine for
    numbers, an in-place change bytrev cannot undo for arrays and lists."""
    names = func.__code__.co_varnames[:func.__code__.co_argcount]
    positions = [names.index(p) for p in params if p in names]

    def call(*args, **kwargs):
        for i, p in zip(positions, params):
            value = args[i] if i < len(args) else kwargs.get(p)
            if isinstance(value, (list, dict, set, bytearray)) or is_array(value):
                fn, filename, line = where
                raise UnsupportedError(
                    f"call to {func.__qualname__}, which updates its argument {p} in place",
                    function=fn, filename=filename, line=line,
                    hint="bytrev does not yet undo in-place updates made inside called "
                         "functions; write `p = p + ...` there, or inline the update")
        return func(*args, **kwargs)
    return call


def not_invertible(function, filename, line, text):
    raise NotInvertibleError(function, filename, [(line, text)])


# --------------------------------------------------------------------------- names


def pyname(id: str) -> str:
    if id.startswith("\0"):
        return "_br_o_" + pyname(id[1:]).lstrip("_")
    if id.startswith("$"):
        return "_br_" + id[1:]
    return id


def _name(id, ctx=ast.Load):
    return ast.Name(pyname(id), ctx())


def _call(func: str, *args):
    return ast.Call(ast.Name(func, ast.Load()), list(args), [])


def _assign(target: str, value):
    return ast.Assign([ast.Name(target, ast.Store())], value)


def _expr_stmt(value):
    return ast.Expr(value)


def _tuple_of(names, ctx=ast.Load):
    if len(names) == 1:
        return _name(names[0], ctx)
    return ast.Tuple([_name(n, ctx) for n in names], ctx())


# --------------------------------------------------------------------------- generator


class Generator:
    def __init__(self, an: Analysis, pyfunc, invert_mode: bool, floats=None, namespace=None):
        self.an = an
        # The globals the generated code runs with: f's own, or for dual numbers
        # (forward over reverse) f's globals as `forward.DualNamespace` hands them out.
        self.namespace = pyfunc.__globals__ if namespace is None else namespace
        self.floats = floats  # scalars.FloatVars for one argument signature, or None
        self.known_floats = frozenset()  # variables holding floats where code is emitted
        self.all_floats = {}  # stash site -> whether every value pushed there is a float
        # Stashes in the body of a loop run in blocks (forward_for): while that body is
        # generated, site -> whether every value it pushes is a float; None elsewhere.
        self.block_stashes = None
        self.pushed_in_blocks = set()
        self.fn = an.function
        self.cx = an.context
        self.pyfunc = pyfunc
        self.invert_mode = invert_mode
        self.consts = {}  # python name -> value
        self.bitmaps = {}  # id(If) -> the Bitmap its bits are set in
        self.hoisted = {}  # (module, attribute) -> the local holding it (hoist_module_attribute)
        # parameter -> first line calling it (checked_parameter_callable) or one of its
        # methods (checked_parameter_receiver)
        self.called_parameters, self.receiver_parameters = {}, {}
        self._const_ids = {}
        self.counter = 0
        self.where = (self.fn.qualname, self.fn.filename)
        for name in self._all_locals():
            if name.startswith("_br_"):
                raise UnsupportedError(f"a variable named {name}", function=self.fn.qualname,
                                       filename=self.fn.filename, line=self.fn.firstlineno,
                                       hint="names starting with _br_ are reserved by bytrev")

    def _all_locals(self):
        return [n for n in self.fn.code.co_varnames] if self.fn.code else []

    def fresh(self, stem):
        self.counter += 1
        return f"_br_{stem}{self.counter}"

    def const(self, value) -> str:
        key = id(value)
        if key in self._const_ids:
            return self._const_ids[key]
        name = f"_br_c{len(self.consts)}"
        self.consts[name] = value
        self._const_ids[key] = name
        self._keep = getattr(self, "_keep", []) + [value]
        return name

    # ---- expressions

    def lower(self, e, line):
        """IR expression → IR expression the AST translation can print: nested functions
        become calls of `make_function`, calls of user functions that may update array
        arguments in place get a run-time check."""
        def rewrite(x):
            if isinstance(x, ir.MakeFunction):
                self.check_closure(x, line)
                return ir.Call(ir.Const(make_function), (
                    ir.Const(self.namespace), ir.Const(x.code), ir.Tuple(x.defaults),
                    ir.Dict(tuple(ir.Const(k) for k, _ in x.kwdefaults),
                            tuple(v for _, v in x.kwdefaults)),
                    ir.Tuple(tuple(ir.Name(n) for n in x.closure))))
            if isinstance(x, ir.Call) and isinstance(x.func, ir.Name) \
                    and x.func.id in self.an.held:
                self.called_parameters.setdefault(x.func.id, line)
            if isinstance(x, ir.Call) and isinstance(x.func, ir.Attribute) \
                    and isinstance(x.func.value, ir.Name) and x.func.value.id in self.an.held:
                self.receiver_parameters.setdefault(x.func.value.id, line)
            if isinstance(x, ir.Call) and not isinstance(x.func, ir.Const):
                obj = self.cx.resolve(x.func)
                if isinstance(obj, types.FunctionType):
                    info = self.cx.classify_call(x, line)
                    if info.kind == "user":
                        params = _updated_params(obj)
                        if params:
                            wrapper = checked_call(obj, params, (*self.where, line))
                            return ir.Call(ir.Const(wrapper), x.args, x.kwargs)
            return x
        return ir.map_expr(ir.map_expr(e, rewrite), self.hoist_module_attribute)

    def hoist_module_attribute(self, e):
        """`module.attr` (`math.sin`, `np.exp`) becomes a local read once at the start of
        the generated function: in a loop, a local read is cheaper than a global read
        plus an attribute read (3-4% of a scalar loop's time). Safe because nothing a
        lifted function runs can rebind a global or set an attribute (the lifter refuses
        `global` writes, attribute assignment and setattr), and only attributes in the
        module's __dict__ now are hoisted, so the early read can neither fail nor run a
        module __getattr__ (lazy imports, deprecation warnings) where f's would not.
        Not under dual numbers, whose globals hand out other objects."""
        if not (isinstance(e, ir.Attribute) and isinstance(e.value, ir.Global)
                and self.namespace is self.pyfunc.__globals__):
            return e
        module = self.cx.resolve(e.value)
        if not isinstance(module, types.ModuleType) or e.attr not in vars(module):
            return e
        key = (e.value.id, e.attr)
        if key not in self.hoisted:  # numbered: `a_b.c` and `a.b_c` may both be read
            self.hoisted[key] = f"$m{len(self.hoisted)}_{e.value.id}_{e.attr}"
        return ir.Name(self.hoisted[key])

    def check_closure(self, mf, line):
        """The new function's cells snapshot the captured values, which matches CPython
        only if those variables are never rebound: check that."""
        counts = _binding_counts(self.fn.body)
        for p in self.fn.params + self.fn.kwonly:
            counts[p] = counts.get(p, 0) + 1
        for name in mf.closure:
            if counts.get(name, 0) > 1:
                raise UnsupportedError(
                    f"a closure over {name}, which is assigned more than once",
                    function=self.fn.qualname, filename=self.fn.filename, line=line,
                    hint=f"pass {name} to the inner function as an argument instead")

    def expr(self, e, line=0):
        cx = ir.AstContext(local=pyname, constant=self.const,
                           free=lambda n: ast.Attribute(
                               ast.Name(self.const(self.cx.cells[n]), ast.Load()),
                               "cell_contents", ast.Load()))
        return ir.expr_ast(self.lower(e, line), cx)

    def target(self, t, line=0):
        cx = ir.AstContext(local=pyname, constant=self.const, free=None)
        return ir.target_ast(t if isinstance(t, ir.Name) else self.lower(t, line), cx)

    def helper(self, fn) -> ast.expr:
        return ast.Name(self.const(fn), ast.Load())

    def call_helper(self, fn, *args):
        return ast.Call(self.helper(fn), list(args), [])

    # ---- tape access

    def push(self, site, value):
        """Append to a site. Stash sites start as an array('d') (8 bytes per float, no
        float objects kept alive); the first value that is not a float turns the site
        into a list (`promote`). A value known to be a float needs no check; a site that
        only receives such values is a plain list, packed into an array('d') when the
        forward run ends (appending to a list is cheaper than to an array('d')). In the
        body of a loop run in blocks, stash values go to the block's list (in_blocks)."""
        # `container.append(v)` rather than a pre-bound method: CPython specialises the
        # method call for lists (LIST_APPEND), which halves the cost of recording.
        known_float = self.is_known_float(value)
        if site.kind == "stash" and self.block_stashes is not None:
            self.block_stashes[site.index] = self.block_stashes.get(site.index, True) and known_float
            self.pushed_in_blocks.add(site.index)
            return _expr_stmt(ast.Call(ast.Attribute(ast.Name(f"_br_b{site.index}", ast.Load()),
                                                     "append", ast.Load()), [value], []))
        append = ast.Attribute(ast.Name(f"_br_s{site.index}", ast.Load()), "append", ast.Load())
        if site.kind == "stash":
            self.all_floats[site.index] = self.all_floats.get(site.index, True) and known_float
        if site.kind != "stash" or known_float:
            return _expr_stmt(ast.Call(append, [value], []))
        v = ast.Name("_br_v", ast.Load())
        is_float = ast.Compare(
            ast.Call(self.helper(type), [ast.NamedExpr(ast.Name("_br_v", ast.Store()), value)], []),
            [ast.Is()], [self.helper(float)])
        return ast.If(is_float, [_expr_stmt(ast.Call(append, [v], []))], [ast.Assign(
            [ast.Name(f"_br_s{site.index}", ast.Store())],
            self.call_helper(promote, ast.Name("_br_T", ast.Load()), ast.Constant(site.index), v))])

    def pop(self, site):
        return ast.Call(ast.Name(f"_br_p{site.index}", ast.Load()), [], [])

    def is_known_float(self, value) -> bool:
        return isinstance(value, ast.Name) and any(
            value.id == pyname(v) for v in self.known_floats)

    def push_vars(self, site, names):
        """Stash variables that may be unbound on this path (one entry per variable)."""
        out = []
        for n in names:
            if n in self.known_floats:
                out.append(self.push(site, _name(n)))
                continue
            out += [ast.Try(body=[_assign("_br_u", _name(n))],
                            handlers=[ast.ExceptHandler(ast.Name("NameError", ast.Load()), None,
                                                        [_assign("_br_u", self.helper_unbound())])],
                            orelse=[], finalbody=[]),
                    self.push(site, ast.Name("_br_u", ast.Load()))]
        return out

    def push_loop_vars(self, site, names):
        """Like push_vars, inside or after a loop, where the types known before the loop
        may no longer hold."""
        known, self.known_floats = self.known_floats, frozenset()
        try:
            return self.push_vars(site, names)
        finally:
            self.known_floats = known

    def helper_unbound(self):
        return ast.Name(self.const(UNBOUND), ast.Load())

    def pop_vars(self, site, names):
        return [ast.Assign([_name(n, ast.Store)], self.pop(site)) for n in reversed(names)]

    def fail(self, site):
        """In the inverse, a place that needs the tape raises NotInvertibleError."""
        return self.call_helper(not_invertible, ast.Constant(self.fn.qualname),
                                ast.Constant(self.fn.filename), ast.Constant(site.line),
                                ast.Constant(site.text))

    def read(self, site):
        return self.fail(site) if self.invert_mode else self.pop(site)

    def all_nonzero(self, exprs, line):
        """`nonzero(e1) and nonzero(e2) ...`: the run-time guard of an inverse."""
        tests = [self.call_helper(nonzero, self.expr(e, line)) for e in exprs]
        return tests[0] if len(tests) == 1 else ast.BoolOp(ast.And(), tests)

    # ---- forward

    def forward_block(self, stmts):
        out = []
        for s in stmts:
            out += self.forward_stmt(s)
        return out or [ast.Pass()]

    def forward_stmt(self, s):
        plan = self.an.plans.get(id(s))
        line = s.line
        self.known_floats = self.floats.floats_before.get(id(s), frozenset()) \
            if self.floats else frozenset()
        if isinstance(s, (ir.Assign, ir.Return)) and isinstance(plan, AssignPlan):
            out, checks = [], []
            approximate = self.approximate(s, plan)
            for var, site in approximate.items():
                out.append(self.push(site, _name(var)))
            for var, _ in plan.recover:
                if var in approximate or var not in plan.guards and var not in plan.checks:
                    continue
                guards, stash_site = plan.guards.get(var, (None, None))
                test = self.all_nonzero([current_values(g) for g in guards], line) \
                    if guards else None
                check = var in plan.checks and self.checked(
                    s, var, *plan.checks[var][:2], scaled=var in plan.scaled)
                if check:
                    source, path, failures, stash_site = plan.checks[var]
                    old = self.fresh("o")
                    out.append(_assign(old, _name(var)))
                    if test is not None:
                        out.append(_assign(old + "g", test))
                    checks.append((check, old, source, path, failures, stash_site,
                                   test is not None, False))
                elif test is not None:
                    out.append(ast.If(ast.UnaryOp(ast.Not(), test),
                                      [self.push(stash_site, _name(var))], []))
            if plan.stash:
                out.append(self.push(plan.stash_site, _tuple_of(plan.stash)))
            value = self.expr(s.value, line)
            if isinstance(s, ir.Return):
                finish = self.finish_checks()
                if checks or finish:
                    out.append(_assign("_br_r", value))
                    value = ast.Name("_br_r", ast.Load())
                out += self.record_checks(checks, {"$result": value}) + finish
                out.append(ast.Return(value))
            else:
                out.append(ast.Assign([self.target(s.target, line)], value))
                out += self.record_checks(checks, {})
            return _at(out, line)
        if isinstance(s, ir.Assign):  # item store
            out = self.disjoint_checks(s, plan)
            if plan.dying:
                out.append(self.push(plan.dying_site, _tuple_of(plan.dying)))
            out.append(self.push(plan.stash_site, self.call_helper(
                copy_value, self.expr(s.target, line))))
            out.append(ast.Assign([self.target(s.target, line)], self.expr(s.value, line)))
            if plan.revive_site:
                out.append(self.push(plan.revive_site, _name(_base_name(s.target))))
            return _at(out, line)
        if isinstance(s, ir.AugAssign):
            out = self.disjoint_checks(s, plan)
            if plan.dying:
                out.append(self.push(plan.dying_site, _tuple_of(plan.dying)))
            old = (_name(s.target.id) if isinstance(s.target, ir.Name)
                   and s.target.id in self.known_floats
                   else self.call_helper(copy_value, self.expr(s.target, line)))
            checks = []
            approximate = self.approximate(s, plan)
            check = plan.check and not approximate and self.checked(
                s, s.target.id, s.target.id, (), in_place=True, scaled=plan.scaled)
            if check:
                name = self.fresh("o")
                out.append(_assign(name, _name(s.target.id)))
                checks.append((check, name, s.target.id, (), *plan.check,
                               plan.guard is not None, True))
            if plan.guard is not None and not approximate:
                test = self.call_helper(nonzero, self.expr(plan.guard, line))
                if checks:
                    out.append(_assign(checks[0][1] + "g", test))
                    test = ast.Name(checks[0][1] + "g", ast.Load())
                out.append(ast.If(ast.UnaryOp(ast.Not(), test),
                                  [self.push(plan.guard_site, old)], []))
            if plan.stash_site or approximate:
                out.append(self.push(plan.stash_site or approximate, old))
            out.append(ast.AugAssign(self.target(s.target, line), ir.binop_ast(s.op),
                                     self.expr(s.value, line)))
            out += self.record_checks(checks, {})
            if plan.revive_site:
                out.append(self.push(plan.revive_site, _name(_base_name(s.target))))
            return _at(out, line)
        if isinstance(s, ir.ExprStmt):
            return _at([_expr_stmt(self.expr(s.value, line))], line)
        if isinstance(s, ir.If):
            arms = []
            known = self.known_floats
            bit_site = self.branch_bit(s, plan)
            for bit, arm, keep, site in ((1, s.body, plan.keep_body, plan.keep_body_site),
                                         (0, s.orelse, plan.keep_orelse, plan.keep_orelse_site)):
                pre = [self.push(bit_site, ast.Constant(bit))] \
                    if bit_site and not bit_site.bitmap else []
                self.known_floats = known  # keeps are taken on entry to the arm
                if keep:
                    pre += self.push_vars(site, keep)
                arms.append(pre + self.forward_block(arm))
            if bit_site and bit_site.bitmap:
                self.set_bitmap_byte(s, arms)
            return _at([ast.If(self.expr(s.test, line), arms[0], arms[1])], line)
        if isinstance(s, ir.For):
            return self.forward_for(s, plan)
        if isinstance(s, ir.While):
            n = self.fresh("n")
            body = [ast.AugAssign(ast.Name(n, ast.Store()), ast.Add(), ast.Constant(1))]
            outer, self.block_stashes = self.block_stashes, None
            if plan.keep_iter:
                body += self.push_loop_vars(plan.keep_iter_site, plan.keep_iter)
            body += self.forward_block(s.body)
            self.block_stashes = outer
            out = [_assign(n, ast.Constant(0)), ast.While(self.expr(s.test, line), body, []),
                   self.push(plan.count_site, ast.Name(n, ast.Load()))]
            if plan.keep_exit:
                out += self.push_loop_vars(plan.keep_exit_site, plan.keep_exit)
            return _at(out, line)
        if isinstance(s, ir.Break):
            return _at([ast.Break()], line)
        raise UnsupportedError(f"statement {type(s).__name__}", function=self.fn.qualname,
                               filename=self.fn.filename, line=line)

    def set_bitmap_byte(self, s, arms):
        """Mark the iteration in the bitmap of a branch (Analyzer.bitmap_branches) from
        the arm that writes less to the tape, so that no iteration pays for both a
        stash and the mark (on the benchmark's branchy loop, 8% of f's time): a bitmap
        marked in the `else` arm is flipped when the loop ends, so the tape holds 1 for
        the `if` arm either way."""
        bitmap = self.bitmaps[id(s)]
        bitmap.flipped = _tape_writes(arms[1]) < _tape_writes(arms[0])
        arms[bitmap.flipped].insert(0, ast.Assign(
            [ast.Subscript(_name(bitmap.name), bitmap.position, ast.Store())], ast.Constant(1)))

    def checked(self, s, var, source, path, in_place=False, scaled=False):
        """How the forward run checks that the inverse gives old `var` back from the new
        value of `source` (its element at `path`), or None where it does not: "kind",
        that the two are of one type and shape (AssignPlan.checks), and for a product or
        quotient (AssignPlan.scaled) "scaled", that and that a float product kept the old
        value, or "scaled float" where the types prove both floats. No check where the
        types prove it needless, nor in the inverse, which has no tape to record the
        answer on."""
        if self.invert_mode:
            return None
        if self.floats is None:
            return "scaled" if scaled else "kind"
        env = self.floats.env_before.get(id(s), {})
        before = env.get(var)
        if isinstance(s, ir.Return) or path:
            element = s.value
            if isinstance(s, ir.Assign) and isinstance(s.target, ir.Tuple):
                element = element.elts[[t.id for t in s.target.elts].index(source)]
            for i in path:
                element = element.elts[i]
            after = self.floats.type(element, env)
        else:
            after = self.floats.env_after.get(id(s), {}).get(source)
        if in_place and before is not None and before.startswith("f64["):
            return None  # an in-place update keeps an array's type and shape
        if before == after == "int":
            return None  # exact arithmetic
        if before in REALS and after in REALS:
            return "scaled float" if scaled else None
        return "scaled" if scaled else "kind"

    def branch_bit(self, s, plan):
        """The bit site of a branch, or None where its condition is re-evaluated: also
        where it reads restored values (IfPlan.approximate) that the types show to be
        integers, which inverses restore exactly, and in the inverse, which has no tape."""
        if plan.approximate and self.restores_exactly(s, plan.approximate):
            return None
        return plan.bit_site

    def approximate(self, s, plan):
        """Where an inverse would select by restored values (AssignPlan.approximate,
        AugPlan.approximate, LoopPlan.approximate) not shown to be integers: for an
        assignment, var -> the site its old value is stashed to; for an augmented one
        (a loop), that site (the one keeping its iterable) or None."""
        if isinstance(plan, AssignPlan):
            return {var: site for var, (names, site) in plan.approximate.items()
                    if not self.restores_exactly(s, names)}
        if plan.approximate and not self.restores_exactly(s, plan.approximate[0]):
            return plan.approximate[1]
        return None

    def restores_exactly(self, s, names) -> bool:
        """Whether the values of `names` that the backward run has at `s` are the
        forward run's exactly: where the types show integers (inverses of integer
        arithmetic are exact), and in the inverse, which has no tape and re-evaluates."""
        return self.invert_mode or self.floats is not None and all(
            self.floats.env_before.get(id(s), {}).get(v) == "int" for v in names)

    def record_checks(self, checks, values):
        """After the statement: per check, whether the inverse applies (the old value is
        of the new one's type and shape, and its guards held). Where not, the execution's
        number goes to the failures site and the old value to the stash (unless it went
        there before the statement, a copy of an array changed in place, when a guard
        failed: `kept`)."""
        out = []
        for check, old, source, path, failures, stash_site, guarded, kept in checks:
            new = values.get(source) or _name(source)
            for i in path:
                new = ast.Subscript(new, ast.Constant(i), ast.Load())
            same = (_float_scaled_back(ast.Name(old, ast.Load()), new) if check == "scaled float"
                    else self.call_helper(scaled_back if check == "scaled" else same_kind,
                                          ast.Name(old, ast.Load()), new))
            guard = ast.Name(old + "g", ast.Load())
            count = ast.Name(f"_br_count{failures.index}", ast.Load())
            out.append(ast.AugAssign(ast.Name(count.id, ast.Store()), ast.Add(), ast.Constant(1)))
            keep = [self.push(stash_site, ast.Name(old, ast.Load()))]
            out.append(ast.If(ast.UnaryOp(ast.Not(), ast.BoolOp(ast.And(), [guard, same])
                                          if guarded else same),
                              [self.push(failures, count)]
                              + ([ast.If(guard, keep, [])] if guarded and kept else keep), []))
        return out

    def failed_check(self, failures):
        """In the backward run: whether this execution's check failed (`_br_count` counts the
        executions down, `_br_fails` holds the failed ones, the last on top)."""
        t, c = f"_br_fails{failures.index}", f"_br_count{failures.index}"
        return ast.BoolOp(ast.And(), [
            ast.Name(t, ast.Load()),
            ast.Compare(ast.Subscript(ast.Name(t, ast.Load()), ast.Constant(-1), ast.Load()),
                        [ast.Eq()], [ast.Name(c, ast.Load())]),
            ast.Call(ast.Attribute(ast.Name(t, ast.Load()), "pop", ast.Load()), [], [])])

    @staticmethod
    def count_down(failures):
        return ast.AugAssign(ast.Name(f"_br_count{failures.index}", ast.Store()), ast.Sub(),
                             ast.Constant(1))

    def failures_sites(self):
        return [] if self.invert_mode else [s for s in self.an.sites if s.failures]

    def finish_checks(self):
        """Before the forward run returns: a failures site that holds failed executions
        gets the number of executions too, for the backward run to count down from."""
        return [ast.If(ast.Name(f"_br_s{s.index}", ast.Load()), [self.push(
            s, ast.Name(f"_br_count{s.index}", ast.Load()))], []) for s in self.failures_sites()]

    def backward_prologue(self):
        """The backward run's access to the tape: a pop per site; for failures sites the
        list itself and the number of executions."""
        out = []
        for s in self.an.sites:
            container = ast.Subscript(ast.Name("_br_T", ast.Load()), ast.Constant(s.index),
                                      ast.Load())
            out.append(_assign(f"_br_p{s.index}", ast.Attribute(container, "pop", ast.Load())))
            if s.failures:
                out.append(_assign(f"_br_fails{s.index}", container))
                out.append(_assign(f"_br_count{s.index}", ast.IfExp(
                    container, self.pop(s), ast.Constant(0))))
        return out

    def disjoint_checks(self, s, plan):
        """Run-time checks of an in-place change whose value or index may read a view of
        what it changes (see analysis._Aliases)."""
        out = []
        text = ast.Constant(ir.unparse(s))
        where = ast.Constant((*self.where, s.line))
        for changed, names in ((s.target, getattr(plan, "check_value", [])),
                               (ir.Name(_base_name(s.target) or ""), plan.check_index)):
            names = [n for n in names if n not in self.known_floats]  # floats share nothing
            if names:
                out.append(_expr_stmt(self.call_helper(
                    check_disjoint, self.expr(changed, s.line),
                    ast.Tuple([_name(n) for n in names], ast.Load()), where, text)))
        return out

    def iteration(self, e):
        """A `for` loop's iterable as a tree the backward run can index:
        ('enumerate', sub, start, func) | ('zip', subs, func) | ('seq', expr); the
        leaves are evaluated once, in Python's order, into temporaries."""
        if isinstance(e, ir.Call) and not e.kwargs:
            obj = self.cx.resolve(e.func)
            if obj is enumerate and len(e.args) in (1, 2):
                start = e.args[1] if len(e.args) == 2 else ir.Const(0)
                return ("enumerate", self.iteration(e.args[0]), ("start", start), e.func)
            if obj is zip and e.args:
                return ("zip", [self.iteration(a) for a in e.args], e.func)
        return ("seq", e)

    @staticmethod
    def leaves(tree):
        if tree[0] == "seq":
            return [tree]
        if tree[0] == "enumerate":
            return Generator.leaves(tree[1]) + [tree[2]]
        return [leaf for sub in tree[1] for leaf in Generator.leaves(sub)]

    def rebuild(self, tree, temps, line):
        """The forward run's iterable, with leaves read from their temporaries."""
        if tree[0] == "seq":
            return temps[id(tree)]
        if tree[0] == "enumerate":
            return ast.Call(self.expr(tree[3], line), [self.rebuild(tree[1], temps, line),
                                                       temps[id(tree[2])]], [])
        return ast.Call(self.expr(tree[2], line),
                        [self.rebuild(sub, temps, line) for sub in tree[1]], [])

    @staticmethod
    def length(tree, temps):
        if tree[0] == "seq":
            return _call("len", temps[id(tree)])
        if tree[0] == "enumerate":
            return Generator.length(tree[1], temps)
        return _call("min", *[Generator.length(sub, temps) for sub in tree[1]])

    @staticmethod
    def element(tree, temps, k):
        if tree[0] == "seq":
            return ast.Subscript(temps[id(tree)], k, ast.Load())
        if tree[0] == "enumerate":
            return ast.Tuple([ast.BinOp(temps[id(tree[2])], ast.Add(), k),
                              Generator.element(tree[1], temps, k)], ast.Load())
        return ast.Tuple([Generator.element(sub, temps, k) for sub in tree[1]], ast.Load())

    def forward_for(self, s, plan):
        line = s.line
        tree = self.iteration(s.iter)
        out = []
        if plan.keep_entry:
            out += self.push_vars(plan.keep_entry_site, plan.keep_entry)
        temps = {}
        for leaf in self.leaves(tree):
            name = self.fresh("it")
            value = self.expr(leaf[1], line)
            if leaf[0] == "seq":
                value = self.call_helper(sequence, value, ast.Constant((*self.where, line)))
            out.append(_assign(name, value))
            temps[id(leaf)] = ast.Name(name, ast.Load())
        kept = plan.iterable_site if plan.iterable == "entry" else self.approximate(s, plan)
        if kept:
            out.append(self.push(kept, ast.Tuple(list(temps.values()), ast.Load())))
        iterable = self.rebuild(tree, temps, line)
        outer = self.block_stashes
        self.block_stashes = {} if self.in_blocks(s) else None
        body = []
        target = self.target(s.target, line)
        if plan.iterable == "element":
            # The body changes what the loop reads, so each element is kept as read.
            element = self.fresh("e")
            body += [self.push(plan.iterable_site, ast.Name(element, ast.Load())),
                     ast.Assign([target], ast.Name(element, ast.Load()))]
            target = ast.Name(element, ast.Store())
        n = None
        if plan.count_site:
            n = self.fresh("n")
            out.append(_assign(n, ast.Constant(0)))
            body.append(ast.AugAssign(ast.Name(n, ast.Store()), ast.Add(), ast.Constant(1)))
        if plan.keep_iter:
            body += self.push_loop_vars(plan.keep_iter_site, plan.keep_iter)
        if plan.bitmaps:  # the iteration's byte: i - range.start
            position = _name(s.target.id)
            start = s.iter.args[0] if len(s.iter.args) == 2 else ir.Const(0)
            if not (isinstance(start, ir.Const) and start.value == 0):
                offset = self.fresh("start")
                out.append(_assign(offset, ast.Attribute(iterable, "start", ast.Load())))
                position = ast.BinOp(position, ast.Sub(), ast.Name(offset, ast.Load()))
        for branch in plan.bitmaps:
            bitmap = self.bitmaps[id(branch)] = Bitmap(self.fresh("bm"), position)
            out.append(_assign(bitmap.name, self.call_helper(range_bitmap, iterable)))
        body += self.forward_block(s.body)
        stashes, self.block_stashes = self.block_stashes, outer
        if stashes:
            out += self.loop_in_blocks(target, iterable, body, stashes)
        else:
            out.append(ast.For(target, iterable, body, []))
        for branch in plan.bitmaps:  # set_bitmap_byte chose how each is marked
            bitmap = self.bitmaps[id(branch)]
            value = self.call_helper(flip_bitmap, _name(bitmap.name)) if bitmap.flipped \
                else _name(bitmap.name)
            out.append(self.push(self.an.plans[id(branch)].bit_site, value))
        if n:
            out.append(self.push(plan.count_site, ast.Name(n, ast.Load())))
        if plan.keep_exit:
            out += self.push_loop_vars(plan.keep_exit_site, plan.keep_exit)
        return _at(out, line)

    def in_blocks(self, s) -> bool:
        """Whether the forward run goes through a `for` loop in blocks of BLOCK iterations:
        a loop over a range (which slices into ranges) with no `break` of its own. The
        stashes in its body (not in nested loops) append to a list, which each block's
        end moves onto the site's stack: a float goes into an array('d') at 8 bytes,
        yet the loop pays only a list append per value, and at most a block's floats
        are alive as objects. A site is one statement's, so all its values go through
        the one list, in order."""
        return (not self.invert_mode and isinstance(s.iter, ir.Call)
                and self.cx.resolve(s.iter.func) is range and not s.iter.kwargs
                and not _breaks(s.body))

    def loop_in_blocks(self, target, iterable, body, stashes):
        """`for b in range(0, len(r), BLOCK): for i in r[b:b + BLOCK]: body`, then each
        stash site's block of values moved onto its stack (see in_blocks)."""
        block = self.fresh("blk")
        chunk = ast.Subscript(iterable, ast.Slice(_name(block), ast.BinOp(
            _name(block), ast.Add(), ast.Constant(BLOCK))), ast.Load())
        flush = []
        for index, floats in stashes.items():
            buffer = ast.Name(f"_br_b{index}", ast.Load())
            if floats:
                flush.append(_expr_stmt(self.call_helper(
                    extend_floats, ast.Name(f"_br_s{index}", ast.Load()), buffer)))
            else:
                flush.append(ast.Assign([ast.Name(f"_br_s{index}", ast.Store())], self.call_helper(
                    extend_stash, ast.Name("_br_T", ast.Load()), ast.Constant(index), buffer)))
        blocks = ast.Call(self.helper(range), [ast.Constant(0), ast.Call(
            self.helper(len), [iterable], []), ast.Constant(BLOCK)], [])
        return [_assign(f"_br_b{index}", ast.List([], ast.Load())) for index in stashes] + [
            ast.For(ast.Name(block, ast.Store()), blocks,
                    [ast.For(target, chunk, body, [])] + flush, [])]

    # ---- backward

    def backward_block(self, stmts):
        out = []
        for s in reversed(stmts):
            out += self.backward_stmt(s)
        return out or [ast.Pass()]

    def backward_stmt(self, s):
        plan = self.an.plans.get(id(s))
        line = s.line
        if isinstance(s, (ir.Assign, ir.Return)) and isinstance(plan, AssignPlan):
            return _at(self.backward_assign(s, plan), line)
        if isinstance(s, ir.Assign):  # item store
            out = self.backward_in_place_records(s, plan)
            out.append(ast.Assign([self.target(s.target, line)], self.read(plan.stash_site)))
            return _at(out, line)
        if isinstance(s, ir.AugAssign):
            return _at(self.backward_aug(s, plan), line)
        if isinstance(s, (ir.ExprStmt, ir.Break)):
            return []
        if isinstance(s, ir.If):
            bit_site = self.branch_bit(s, plan)
            test = self.read(bit_site) if bit_site else self.expr(s.test, line)
            arms = []
            for arm, keep, site in ((s.body, plan.keep_body, plan.keep_body_site),
                                    (s.orelse, plan.keep_orelse, plan.keep_orelse_site)):
                code = self.backward_block(arm)
                if keep:
                    code += self.pop_vars(site, keep) if not self.invert_mode else \
                        [_expr_stmt(self.fail(site))]
                arms.append(code)
            return _at([ast.If(test, arms[0], arms[1])], line)
        if isinstance(s, ir.For):
            return self.backward_for(s, plan)
        if isinstance(s, ir.While):
            out = self.backward_keep(plan.keep_exit, plan.keep_exit_site)
            body = self.backward_block(s.body) + self.backward_keep(plan.keep_iter,
                                                                    plan.keep_iter_site)
            out.append(ast.For(ast.Name("_", ast.Store()),
                               _call("range", self.read(plan.count_site)), body, []))
            return _at(out, line)
        raise UnsupportedError(f"statement {type(s).__name__}", function=self.fn.qualname,
                               filename=self.fn.filename, line=line)

    def backward_keep(self, names, site):
        if not names:
            return []
        if self.invert_mode:
            return [_expr_stmt(self.fail(site))]
        return self.pop_vars(site, names)

    def backward_assign(self, s, plan):
        out = []
        line = s.line
        lost = [v for v, _ in plan.recover] + list(plan.stash)
        if not lost:
            return out
        if plan.stash:
            olds = [pyname("\0" + v) for v in plan.stash]
            target = (ast.Name(olds[0], ast.Store()) if len(olds) == 1 else
                      ast.Tuple([ast.Name(o, ast.Store()) for o in olds], ast.Store()))
            out.append(ast.Assign([target], self.read(plan.stash_site)))
        approximate = self.approximate(s, plan)
        checked = {var for var, _ in plan.recover if var in plan.checks and self.checked(
            s, var, *plan.checks[var][:2], scaled=var in plan.scaled)} - set(approximate)
        if not plan.stash and len(plan.recover) == 1 and not plan.guards and not checked \
                and not approximate:
            var, e = plan.recover[0]  # the common case: `x = (x - d) / c`
            return [ast.Assign([_name(var, ast.Store)], self.expr(e, line))]
        for var, e in plan.recover:
            if var in approximate:
                out.append(_assign(pyname("\0" + var), self.read(approximate[var])))
                continue
            value = self.expr(e, line)
            if var in checked:
                _, _, failures, stash_site = plan.checks[var]
                out.append(_assign(pyname("\0" + var), ast.IfExp(
                    self.failed_check(failures), self.read(stash_site), value)))
                out.append(self.count_down(failures))
                continue
            if var in plan.guards:
                guards, site = plan.guards[var]
                value = ast.IfExp(self.all_nonzero(guards, line), value, self.read(site))
            out.append(_assign(pyname("\0" + var), value))
        for var in lost:
            out.append(ast.Assign([_name(var, ast.Store)], _name("\0" + var)))
        return out

    def backward_in_place_records(self, s, plan):
        """Read back what an in-place change recorded beside the old value: the changed
        object (when nothing else keeps it) and the variables whose last use it was."""
        out = []
        if plan.revive_site:
            out.append(ast.Assign([_name(_base_name(s.target), ast.Store)],
                                  self.read(plan.revive_site)))
        if plan.dying:
            out.append(ast.Assign([_tuple_of(plan.dying, ast.Store)], self.read(plan.dying_site)))
        return out

    def backward_aug(self, s, plan):
        line = s.line
        out = self.backward_in_place_records(s, plan)
        target_load = self.expr(s.target, line)
        value = self.expr(s.value, line)
        approximate = self.approximate(s, plan)
        if plan.inverse_op is None or approximate:
            out.append(ast.Assign([self.target(s.target, line)], self.call_helper(
                restore, target_load, self.read(plan.stash_site or approximate))))
            return out
        if plan.inverse_op == "/":
            undo = ast.Assign([self.target(s.target, line)],
                              self.call_helper(divide_in_place, target_load, value))
        else:
            undo = ast.AugAssign(self.target(s.target, line), ir.binop_ast(plan.inverse_op), value)
        if plan.check and self.checked(s, s.target.id, s.target.id, (), in_place=True,
                                       scaled=plan.scaled):
            failures, stash_site = plan.check
            fallback = ast.Assign([self.target(s.target, line)], self.call_helper(
                restore, self.expr(s.target, line), self.read(stash_site)))
            out += [ast.If(self.failed_check(failures), [fallback], [undo]),
                    self.count_down(failures)]
        elif plan.guard is not None:
            fallback = ast.Assign([self.target(s.target, line)], self.call_helper(
                restore, self.expr(s.target, line), self.read(plan.guard_site)))
            out.append(ast.If(self.call_helper(nonzero, self.expr(plan.guard, line)), [undo],
                              [fallback]))
        else:
            out.append(undo)
        return out

    def backward_for(self, s, plan):
        line = s.line
        tree = self.iteration(s.iter)
        out = self.backward_keep(plan.keep_exit, plan.keep_exit_site)
        k = ast.Name("_br_k", ast.Load())
        temps = None
        if plan.iterable == "element":
            element, count = self.read(plan.iterable_site), self.read(plan.count_site)
        else:
            leaves = self.leaves(tree)
            names = [self.fresh("it") for _ in leaves]
            temps = {id(leaf): ast.Name(n, ast.Load()) for leaf, n in zip(leaves, names)}
            kept = plan.iterable_site if plan.iterable == "entry" else self.approximate(s, plan)
            if kept:
                out.append(ast.Assign([ast.Tuple([ast.Name(n, ast.Store()) for n in names],
                                                 ast.Store())], self.read(kept)))
            else:
                for name, leaf in zip(names, leaves):
                    out.append(_assign(name, self.expr(leaf[1], line)))
            element = self.element(tree, temps, k)
            count = self.read(plan.count_site) if plan.count_site else self.length(tree, temps)
        before, each, after = self.element_hooks(s, plan, tree, temps, k)
        body = [ast.Assign([self.target(s.target, line)], element)]
        body += self.backward_block(s.body)
        body += self.backward_keep(plan.keep_iter, plan.keep_iter_site)
        out += before
        out.append(ast.For(ast.Name("_br_k", ast.Store()),
                           _call("range", ast.BinOp(count, ast.Sub(), ast.Constant(1)),
                                 ast.Constant(-1), ast.Constant(-1)), body + each, []))
        out += self.backward_keep(plan.keep_entry, plan.keep_entry_site)
        return _at(out + after, line)

    def element_hooks(self, s, plan, tree, temps, k):
        """Extra statements (before the loop, at the end of each iteration, after it) for
        the backward run of a `for` loop; the gradient sweep adds the loop variable's
        adjoint to its sequence here (`temps` is None when elements came from the tape)."""
        return [], [], []

    # ---- whole functions

    def build(self):
        an = self.an
        params = list(an.params)
        sites = an.sites
        fwd_body = [_assign(f"_br_s{s.index}", ast.Subscript(
            ast.Name("_br_T", ast.Load()), ast.Constant(s.index), ast.Load())) for s in sites]
        fwd_body += [_assign(f"_br_count{s.index}", ast.Constant(0)) for s in self.failures_sites()]
        if an.entry_keep:
            fwd_body.append(self.push(an.entry_site, _tuple_of(an.entry_keep)))
        fwd_body += self.forward_block(an.body)
        forward = ast.FunctionDef(
            name="forward", args=_args(["_br_T"] + params), body=fwd_body, decorator_list=[],
            returns=None, type_params=[])

        bwd_body = [] if self.invert_mode else self.backward_prologue()
        bwd_body += self.backward_block(an.body)
        if an.entry_keep:
            bwd_body.append(ast.Assign([_tuple_of(an.entry_keep, ast.Store)],
                                       self.read(an.entry_site)))
        bwd_body.append(ast.Return(ast.Tuple([_name(p) for p in params], ast.Load())))
        backward = ast.FunctionDef(
            name="backward", args=_args(["_br_T"] + [pyname(r) for r in an.results]
                                        + [pyname(h) for h in an.held]),
            body=bwd_body, decorator_list=[], returns=None, type_params=[])

        (fwd, bwd), module = self.compile([forward, backward])
        fwd.float_sites = frozenset(i for i, floats in self.all_floats.items()
                                    if floats and i not in self.pushed_in_blocks)
        return fwd, bwd, module

    def compile(self, functions):
        """Compile generated function definitions inside a factory whose parameters are
        the constants, so they run with the user's globals; returns (functions, module).
        Each function starts by reading the module attributes hoist_module_attribute
        replaced by locals and by checking the parameters it calls."""
        for function in functions:
            function.body[:0] = [
                _assign(pyname(local), ast.Attribute(_name(module), attr, ast.Load()))
                for (module, attr), local in self.hoisted.items()] + [
                _expr_stmt(self.call_helper(check, _name(param),
                                            ast.Constant((*self.where, line))))
                for check, params in ((checked_parameter_callable, self.called_parameters),
                                      (checked_parameter_receiver, self.receiver_parameters))
                for param, line in params.items()]
        factory = ast.FunctionDef(
            name="_br_factory", args=_args(list(self.consts)),
            body=functions + [ast.Return(ast.Tuple(
                [ast.Name(f.name, ast.Load()) for f in functions], ast.Load()))],
            decorator_list=[], returns=None, type_params=[])
        module = ast.Module([factory], [])
        _at([factory], self.fn.firstlineno)
        code = compile(module, self.fn.filename, "exec")
        factory_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
        make = types.FunctionType(factory_code, self.namespace)
        return make(*self.consts.values()), module


def _breaks(stmts) -> bool:
    """Whether `stmts` break out of the loop they are the body of."""
    return any(isinstance(s, ir.Break) or isinstance(s, ir.If) and (
        _breaks(s.body) or _breaks(s.orelse)) for s in stmts)


def _binding_counts(stmts, counts=None) -> dict:
    """How many statements bind each local variable (a loop's body counts as many)."""
    counts = {} if counts is None else counts
    for s in stmts:
        names = set()
        if isinstance(s, ir.Assign):
            names = ir.target_names(s.target)
        elif isinstance(s, ir.AugAssign) and isinstance(s.target, ir.Name):
            names = {s.target.id}
        elif isinstance(s, (ir.For, ir.While)):
            names = ir.target_names(s.target) if isinstance(s, ir.For) else set()
            inner = _binding_counts(s.body)
            for n in set(inner) | names:
                counts[n] = counts.get(n, 0) + 2  # bound again on every iteration
            continue
        elif isinstance(s, ir.If):
            _binding_counts(s.body, counts)
            _binding_counts(s.orelse, counts)
        for n in names:
            counts[n] = counts.get(n, 0) + 1
    return counts


def _updated_params(func):
    """Parameters a user function applies augmented assignments to."""
    from .lift import lift
    from .analysis import mutated
    if not user_function_effects(func)[1]:
        return []
    fn = lift(func)
    return sorted(mutated(fn.body) & set(fn.params + fn.kwonly))


def _args(names):
    return ast.arguments(posonlyargs=[], args=[ast.arg(n) for n in names], vararg=None,
                         kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])


def _at(stmts, line):
    """Give generated statements the source line they undo (tracebacks point there)."""
    for st in stmts:
        for node in ast.walk(st):
            if isinstance(node, (ast.stmt, ast.expr, ast.excepthandler, ast.arg, ast.keyword)) \
                    and not hasattr(node, "lineno"):
                node.lineno = node.end_lineno = line or 1
                node.col_offset = node.end_col_offset = 0
    return stmts


def generate(an: Analysis, pyfunc, invert_mode=False, floats=None, namespace=None):
    """Compile the analysis: returns (forward, backward, module_ast). `floats` (a
    scalars.FloatVars) specialises the forward run to one argument signature;
    `namespace` replaces f's globals."""
    return Generator(an, pyfunc, invert_mode, floats, namespace).build()
