"""Reverse-mode gradients by reverse computing.

The backward run of the reversible form (`codegen.Generator`) walks the function in
reverse and, statement by statement, restores the state before the statement: by an
inverse instruction, by recomputation, by a recorded branch bit or from the stash. The
gradient sweep generated here does the same walk and, right after undoing a statement,
applies that statement's adjoint update, computed from the inputs just restored:

    x = e(y, z)        undo: x gets its old value back (or is forgotten)
                       then: g = adj[x]; adj[x] = 0; adj[y] += dE/dy^T g; adj[z] += ...

Intermediate values inside one statement are recomputed from its restored inputs (one
statement's worth of work), never stored across statements, so the memory of a gradient
is the tape of the reversible form plus the adjoints of the live variables: flat in the
number of loop iterations when the loop is reversible.

What this module decides statically, per function and argument-type signature:

* *activity*: which variables can depend differentiably on the arguments (loop counters,
  lengths, comparison results and other integers get no adjoint code at all);
* *float adjoints*: variables that provably hold Python floats get adjoints that are
  plain floats, updated by inlined arithmetic (`adj_x = adj_x + g * math.cos(x)`), which
  keeps scalar loops cheap; every other adjoint starts as `ZERO` and is updated through
  the rules of `bytrev.rules`;
* *gradient buffers*: arrays read by index (`a[i]`) or updated in place (`a[i] += v`)
  keep their adjoint in one buffer owned by that variable, updated in place, so an
  indexing loop costs O(1) per element instead of an array per access.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import types
import typing

import numpy as np

from . import ir, rules
from .analysis import PURE_MODULES, AssignPlan, _base_name, _module_of, assigned
from .backend import is_array
from .codegen import Generator, _args, _assign, _at, _name, pyname
from .errors import UnsupportedError
from .rules import ZERO
from .scalars import REALS, SCALARS

# Callables whose results never carry a derivative: their arguments are not "used"
# differentiably, so e.g. `range(n)` does not make `n` need an adjoint.
_NONDIFF_CALLS = (range, len, int, bool, round, isinstance, type, np.shape, np.ndim, np.size)
_NONDIFF_ATTRS = {"shape", "ndim", "size", "dtype", "itemsize", "nbytes"}

# --------------------------------------------------------------------------- runtime helpers
# Called by the generated gradient sweep. `ZERO` is the cotangent of a value nothing
# depends on; `None` from a rule means the same.


def nonzero(c) -> bool:
    return c is not None and c is not ZERO


def acc(adj, c):
    """`adj + c` for an adjoint that is never changed in place (shared values are fine)."""
    if c is None or c is ZERO:
        return adj
    return c if adj is ZERO else rules.add(adj, c)


def _own(c):
    """A copy of cotangent `c` that no other adjoint refers to."""
    if is_array(c):
        return c.copy()
    if isinstance(c, (list, dict)):
        return type(c)(c)
    return c


def acc_owned(adj, c):
    """`adj += c` for a gradient buffer: the buffer belongs to one variable, so it is
    updated in place; the first contribution is copied so nothing else aliases it."""
    if c is None or c is ZERO:
        return adj
    if adj is ZERO:
        return _own(c)
    if is_array(adj) and (np.shape(c) == adj.shape or np.ndim(c) == 0):
        adj += c
        return adj
    return rules.add(adj, c)


def acc_in_place(adj, owned, c):
    """(`adj + c`, whether the sweep owns it) for an adjoint that only accumulates: the
    first contribution is kept as given (it may be shared), the second makes a new array,
    which later contributions are added into in place."""
    if c is None or c is ZERO:
        return adj, owned
    if adj is ZERO:
        return c, False
    if owned and is_array(adj) and adj.shape == np.shape(c) and \
            np.result_type(adj.dtype, getattr(c, "dtype", c)) == adj.dtype:
        adj += c
        return adj, True
    total = rules.add(adj, c)
    return total, is_array(total)


def _buffer(adj, value):
    """The gradient buffer of `value`: `adj` itself, or zeros of value's shape."""
    if adj is not ZERO:
        return adj
    if isinstance(value, tuple):
        return [ZERO] * len(value)  # a mutable stand-in; `gradient_of` makes it a tuple again
    return rules.zeros_like_value(value) if not isinstance(value, dict) else {}


def _item(buf, index):
    """buf[index], or ZERO for a key a dict buffer does not hold yet."""
    return buf.get(index, ZERO) if isinstance(buf, dict) else buf[index]


def acc_index(adj, value, index, g):
    """adj[index] += g (in place), creating the buffer on first use."""
    if g is None or g is ZERO:
        return adj
    buf = _buffer(adj, value)
    if isinstance(buf, (list, dict)):
        buf[index] = acc(_item(buf, index), g)
    else:
        rules.accumulate_index(buf, index, g)
    return buf


def _element_buffer(buf, value, outer):
    """The gradient buffer of `value[outer[0]][outer[1]]...` within `buf`, the buffer of
    `value`: a view into an array buffer, or the entry of a dict or list buffer, made on
    first use and copied, since an entry `acc` stored may be shared with another adjoint
    and the caller changes it in place."""
    for key in outer:
        value = value[key]
        if isinstance(buf, (dict, list)):
            entry = buf.get(key, ZERO) if isinstance(buf, dict) else buf[key]
            entry = list(entry) if isinstance(entry, tuple) else _own(_buffer(entry, value))
            buf[key] = entry
            buf = entry
        else:
            buf = buf[key]
    return buf


def take_index(adj, target, outer, index):
    """A copy of the adjoint of `target[outer...][index]`, and adj with it cleared: the
    adjoint of an element that `target[outer...][index] = v` overwrote (its old contents
    no longer reach the result). `outer` holds the indices of a nested target
    (`p["w"][0]`: ("w",)), none for `a[i]`."""
    if adj is ZERO:
        return adj, ZERO
    buf = _element_buffer(adj, target, outer)
    if isinstance(buf, dict):
        return adj, buf.pop(index, ZERO)
    if isinstance(buf, list):
        g, buf[index] = buf[index], ZERO
        return adj, g
    g = _own(buf[index])
    buf[index] = 0
    return adj, g


def aug_index_vjp(op, adj, target, outer, index, value):
    """Adjoint of `target[outer...][index] op= value` once undone (target holds its old
    contents): updates the buffer `adj` in place and returns (adj, cotangent of value)."""
    if adj is ZERO:
        return adj, ZERO
    buf = _element_buffer(adj, target, outer)
    g = _own(_item(buf, index))
    if g is ZERO:
        return adj, ZERO
    if op == "+":
        return adj, rules.unbroadcast(g, value)
    if op == "-":
        return adj, rules.unbroadcast(-g, value)
    for key in outer:
        target = target[key]
    old = target[index]
    if op == "*":
        buf[index] = g * value
        return adj, rules.unbroadcast(g * old, value)
    if op == "/":
        buf[index] = g / value
        return adj, rules.unbroadcast(-g * old / (value * value), value)
    raise AssertionError(op)


def part(c, key):
    """The cotangent of `value[key]` within the cotangent `c` of a tuple/list/dict."""
    if c is None or c is ZERO:
        return ZERO
    if isinstance(c, dict):
        return c.get(key, ZERO)
    return c[key]


def call_vjp(func, g, ans, args, kwargs, where, wrt=None):
    """Cotangents (of func's closure, of args, of kwargs) for a call decided at run time:
    a rule registered for `func`, a bound method of an array, or a Python function,
    which is differentiated through (recomputing its insides) with respect to the
    argument positions and keywords in `wrt` (None: all)."""
    rule = rules.vjp_rule(func)
    if rule is not None:
        return ZERO, rule(g, ans, *args, **kwargs), {}
    if _differentiated_through(func):
        return user_vjp(func, g, ans, args, kwargs, wrt)
    owner = getattr(func, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):
        fn, filename, line = where
        raise UnsupportedError(
            f"a call of the bound method {func.__name__} of a {type(owner).__name__} held in "
            "a variable", function=fn, filename=filename, line=line,
            hint="call the method on its object directly, e.g. x.sum()")
    raise _no_rule(func, where)


def method_vjp(obj, name, g, ans, args, kwargs, where):
    """Cotangents (of obj, of args) for `obj.name(*args, **kwargs)`; `obj` may be a module
    held in a variable (`xp = get_array_module(x)`, then `xp.sum(x)`)."""
    if isinstance(obj, types.ModuleType):
        rule = rules.vjp_rule(getattr(obj, name, None))
        if rule is None:
            raise _no_rule(getattr(obj, name, name), where)
        return ZERO, rule(g, ans, *args, **kwargs)
    rule = rules.method_rule(obj, name)
    if rule is None:
        raise _no_rule(getattr(obj, name, name), where, f"method .{name}() of {type(obj).__name__}")
    cts = rule(g, ans, obj, *args, **kwargs)
    return cts[0], cts[1:]


def attribute_vjp(obj, name, g, ans, where):
    rule = rules.attribute_rule(obj, name)
    if rule is None:
        raise _no_rule(name, where, f"attribute .{name} of {type(obj).__name__}")
    return rule(g, ans, obj)[0]


def _no_rule(func, where, what=None):
    fn, filename, line = where
    if what is None:
        module = getattr(func, "__module__", None)
        qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
        what = f"call to {module + '.' if module else ''}{qualname}"
    return UnsupportedError(
        f"{what} (no derivative rule)", function=fn, filename=filename, line=line,
        hint="register one with bytrev.defvjp(func, rule_for_arg0, ...), where "
             "rule(g, ans, *args, **kwargs) returns the cotangent of that argument")


def _differentiated_through(func) -> bool:
    """A user's Python function without a registered rule: bytrev differentiates its
    body. (NumPy's own Python functions, math and the like need rules instead.)"""
    return isinstance(func, types.FunctionType) and rules.vjp_rule(func) is None and \
        not _module_of(func).startswith(PURE_MODULES)


def user_vjp(func, g, ans, args, kwargs, wrt=None):
    """Differentiate through a call of a Python function: run its forward (recording its
    own tape) and its gradient sweep. Returns (closure cotangents, arg cotangents,
    kwarg cotangents)."""
    from .gradient import gradient_program  # the gradient API owns the per-function cache
    program = gradient_program(func)
    names = None if wrt is None else \
        {program.params[w] if isinstance(w, int) else w for w in wrt if not isinstance(w, int)
         or w < len(program.params)}
    _, pullback = program.vjp(args, kwargs, result=ans, wrt=names)
    grads, free = pullback(g)
    n = len(args)
    kw_cts = {p: c for p, c in zip(program.params[n:], grads[n:]) if p in kwargs}
    return (free if any(nonzero(c) for c in free) else ZERO), tuple(grads[:n]), kw_cts


# --------------------------------------------------------------------------- static facts


def _statements(stmts):
    for s in stmts:
        yield s
        for attr in ("body", "orelse"):
            yield from _statements(getattr(s, attr, []))


def _diff_names(e, cx):
    """Names whose values `e` may depend on differentiably."""
    if isinstance(e, ir.Name):
        return {e.id}
    if isinstance(e, (ir.Compare, ir.Const, ir.Global, ir.FreeVar, ir.Slice)):
        return set()
    if isinstance(e, ir.Attribute) and e.attr in _NONDIFF_ATTRS:
        return set()
    if isinstance(e, ir.Call) and cx.resolve(e.func) in _NONDIFF_CALLS:
        return set()
    if isinstance(e, ir.Subscript):
        return _diff_names(e.value, cx)
    if isinstance(e, ir.IfExp):
        return _diff_names(e.body, cx) | _diff_names(e.orelse, cx)
    if isinstance(e, ir.ListComp):
        return ir.names_read(e)
    out = set()
    for c in ir.children(e):
        out |= _diff_names(c, cx)
    return out


def _flows(s):
    """(variables a statement binds or changes, the expression they get) pairs."""
    if isinstance(s, ir.Assign):
        if isinstance(s.target, ir.Subscript):
            return [({_base_name(s.target)}, s.value)]
        return [(ir.target_names(s.target), s.value)]
    if isinstance(s, ir.AugAssign):
        return [({_base_name(s.target)}, s.value)]
    if isinstance(s, ir.Return):
        return [({"$result"}, s.value)]
    if isinstance(s, ir.For):
        return [(ir.target_names(s.target), s.iter)]
    return []


def active_variables(body, inputs, cx) -> set:
    """Variables that may depend differentiably on the variables `inputs` (a fixpoint:
    a loop can carry activity backwards through its body)."""
    active = set(inputs)
    flows = [(targets, _diff_names(e, cx)) for s in _statements(body) for targets, e in _flows(s)]
    changed = True
    while changed:
        changed = False
        for targets, reads in flows:
            if reads & active and not targets <= active:
                active |= targets
                changed = True
    return active


def _view_of(e, names, scalar) -> bool:
    """Whether the value of `e` may share memory with one of the variables `names`;
    `scalar(e)` says whether a sub-expression is known to be a number (which shares
    memory with nothing: `a[0]` of a 1-D array)."""
    if scalar(e):
        return False
    if isinstance(e, ir.Name):
        return e.id in names
    if isinstance(e, (ir.Subscript, ir.Attribute)):
        return _view_of(e.value, names, scalar)
    if isinstance(e, ir.Call) and isinstance(e.func, ir.Attribute) and \
            e.func.attr in _VIEW_METHODS:
        return _view_of(e.func.value, names, scalar)
    if isinstance(e, ir.Call) and getattr(e.func, "attr", None) in _VIEW_FUNCTIONS and e.args:
        return _view_of(e.args[0], names, scalar)
    if isinstance(e, (ir.Tuple, ir.List)):
        return any(_view_of(x, names, scalar) for x in e.elts)
    if isinstance(e, ir.IfExp):
        return _view_of(e.body, names, scalar) or _view_of(e.orelse, names, scalar)
    return False


_VIEW_METHODS = {"reshape", "ravel", "view", "transpose", "squeeze", "swapaxes", "diagonal"}
_VIEW_FUNCTIONS = {"reshape", "ravel", "transpose", "squeeze", "swapaxes", "asarray",
                   "expand_dims", "broadcast_to", "atleast_1d", "atleast_2d", "diagonal",
                   "moveaxis"}


def _number_test(types, s):
    """A test of whether an expression of statement `s` certainly gives a number (per
    `types`, a scalars.FloatVars)."""
    env = types.env_before.get(id(s), {})
    return lambda e: types.type(e, env) in SCALARS


def check_no_aliased_updates(fn, body, cx, active, types):
    """Adjoints are kept per variable, so an in-place change made through one variable
    must not be visible through another: refuse `b = a` (or a view of a) when a or b is
    an active variable changed in place. `x += e` on a number (per `types`, a
    scalars.FloatVars) rebinds rather than changes in place."""
    changed = set()
    for s in _statements(body):
        if isinstance(s, ir.AugAssign) or (isinstance(s, ir.Assign) and
                                           isinstance(s.target, ir.Subscript)):
            base = _base_name(s.target)
            if isinstance(s.target, ir.Name) and \
                    types.env_before.get(id(s), {}).get(base) in ("float", "int", "bool"):
                continue
            if base in active:
                changed.add(base)
    if not changed:
        return
    for s in _statements(body):
        if isinstance(s, ir.Assign) and not isinstance(s.target, ir.Subscript):
            scalar = _number_test(types, s)
            targets = ir.target_names(s.target)
            others = ir.names_read(s.value) - targets
            if (targets & changed and _view_of(s.value, others | targets, scalar)) or \
                    _view_of(s.value, changed - targets, scalar):
                raise UnsupportedError(
                    f"`{ir.unparse(s)}` in a differentiated function (it may make two "
                    "variables share memory, and one of them is changed in place)",
                    function=fn.qualname, filename=fn.filename, line=s.line,
                    hint="copy instead, e.g. b = a.copy()")
        if isinstance(s, ir.For) and ir.target_names(s.target) & changed:
            raise UnsupportedError(
                "an in-place change of a loop variable in a differentiated function (it "
                "may be a view of the sequence)", function=fn.qualname, filename=fn.filename,
                line=s.line, hint="index the sequence instead: seq[i] += ...")


# --------------------------------------------------------------------------- generator


class GradGenerator(Generator):
    """The backward run of `codegen.Generator`, with each statement's adjoint update
    after its undo. `inputs`: parameters (and closure cells) to differentiate."""

    def __init__(self, an, pyfunc, floats, inputs, param_types):
        super().__init__(an, pyfunc, invert_mode=False, floats=floats)
        fn = an.function
        self.body = an.body
        self._param_types = param_types
        self.free_inputs = [v for v in inputs if v in fn.freevars]
        fv = set(self.free_inputs)
        body = [_FreeAsName(fv).stmt(s) for s in self.body] if fv else self.body
        self.active = active_variables(body, (set(inputs) - fv) | {"$free:" + v for v in fv},
                                       self.cx)
        self.float_adj = self._float_adjoints()
        check_no_aliased_updates(fn, self.body, self.cx, self.active, floats)
        self.buffers = self._buffer_variables()
        # Parameters that are only read: their adjoints only accumulate, in place once the
        # sweep has made an array of its own for them (a loop's `W @ h` adds into one array).
        self.accumulators = (self.active & set(an.params)) - assigned(self.body) - \
            self.buffers - self.float_adj
        self.line = fn.firstlineno

    # ---- static facts

    def _float_adjoints(self):
        """Variables that hold a Python float wherever the function touches them."""
        if self.floats is None:
            return frozenset()
        fl = self.floats
        ok, bad = set(), set()
        for p, t in zip(self.an.params, self._param_types):
            (ok if t in REALS else bad).add(p)
        for s in _statements(self.body):
            before, after = fl.env_before.get(id(s), {}), fl.env_after.get(id(s), {})
            for attr in ("value", "test", "iter"):
                e = getattr(s, attr, None)
                if isinstance(e, _EXPR_TYPES):
                    for n in ir.names_read(e):
                        (ok if before.get(n) in REALS else bad).add(n)
            if isinstance(s, (ir.Assign, ir.AugAssign, ir.For)):
                for n in (ir.target_names(s.target) if not isinstance(s.target, ir.Subscript)
                          else {_base_name(s.target)}):
                    if isinstance(s, ir.For):
                        bad.add(n)
                    else:
                        (ok if after.get(n) in REALS else bad).add(n)
        return frozenset((ok - bad) & self.active)

    def _buffer_variables(self):
        out = set()
        for s in _statements(self.body):
            if isinstance(s, (ir.Assign, ir.AugAssign)) and isinstance(s.target, ir.Subscript):
                out.add(_base_name(s.target))
            for attr in ("value", "test", "iter"):
                e = getattr(s, attr, None)
                if isinstance(e, _EXPR_TYPES):
                    for sub in ir.walk(e):
                        if isinstance(sub, ir.Subscript) and isinstance(sub.value, ir.Name):
                            out.add(sub.value.id)
        return (out & self.active) - self.float_adj

    # ---- names

    def adj(self, var) -> str:
        if var.startswith("$free:"):
            return "_br_af_" + var[6:]
        return "_br_a_" + pyname(var).lstrip("_")

    def adj_load(self, var):
        return ast.Name(self.adj(var), ast.Load())

    def zero(self, var):
        return ast.Constant(0.0) if var in self.float_adj else self.helper_zero()

    def helper_zero(self):
        return ast.Name(self.const(ZERO), ast.Load())

    def temp(self, stem="pv"):
        """A fresh IR name; pyname gives `_br_<stem><n>` (stems differ from the `c`
        of constants and the stems of codegen.Generator)."""
        self.counter += 1
        return f"${stem}{self.counter}"

    # ---- statements

    def backward_stmt(self, s):
        plan = self.an.plans.get(id(s))
        self.line = s.line
        self.refuse_redrawing(s)
        env = self.floats.env_before.get(id(s), {}) if self.floats else {}
        if isinstance(s, (ir.Assign, ir.Return)) and isinstance(plan, AssignPlan):
            return _at(_fold_resets(self.adjoint_assign(s, plan, env)), s.line)
        undo = super().backward_stmt(s)
        self.line = s.line
        if isinstance(s, ir.Assign):
            return undo + _at(self.adjoint_store_item(s, env), s.line)
        if isinstance(s, ir.AugAssign):
            return undo + _at(_fold_resets(self.adjoint_aug(s, env)), s.line)
        return undo

    def refuse_redrawing(self, s):
        """The sweep evaluates again the operands that an active statement's partials
        need (`x * r()` needs r()): a call that gives another value each time there (a
        random draw) would give a wrong gradient, so it is refused with a way out."""
        if isinstance(s, ir.AugAssign):
            value = ir.BinOp(s.op, s.target, s.value)
        elif isinstance(s, (ir.Assign, ir.Return)):
            value = s.value
        else:
            return
        call = self.redrawn(value)
        if call is not None:
            raise self.cx.error(
                f"`{ir.unparse(call)}` in the differentiated `{ir.unparse(s)}` (the gradient "
                "sweep would call it again and get another value)", s.line,
                f"call it into a variable first: r = {ir.unparse(call)}, then use r")

    def redrawn(self, e):
        """In the active expression `e`, an impure call whose value its adjoint needs:
        one that is itself active, or an inactive operand of an active node that is not
        a sum or difference (whose partials are constants). None if there is none."""
        def draws(x):
            return isinstance(x, ir.Call) and self.cx.classify_call(x, self.line).kind == "impure"

        if not self.is_active(e):
            return None
        if draws(e):
            return e
        linear = isinstance(e, ir.UnaryOp) or isinstance(e, ir.BinOp) and e.op in ("+", "-")
        for child in ir.children(e):
            if self.is_active(child):
                found = self.redrawn(child)
            elif linear:
                continue
            else:
                found = next(filter(draws, ir.walk(child)), None)
            if found is not None:
                return found
        return None

    def adjoint_assign(self, s, plan, env):
        if isinstance(s, ir.Return):
            targets, value = ["$result"], s.value
        elif isinstance(s.target, ir.Name):
            targets, value = [s.target.id], s.value
        else:
            targets, value = [t.id for t in s.target.elts], s.value
        # A dead store (nothing reads the targets later) passes no gradient on, and the
        # backward run has neither the targets' values nor, maybe, those it reads.
        if not any(t in self.active for t in targets) or _dead_store(plan):
            return self.backward_assign(s, plan)
        elements = None
        if len(targets) == 1:
            elements = [value]
        elif isinstance(value, (ir.Tuple, ir.List)) and len(value.elts) == len(targets):
            elements = list(value.elts)
        # A sub-expression that the inverse recomputes (`v = v + dt*force(x)` is undone by
        # `v = v - dt*force(x)`) is evaluated once, before the undo, for both.
        out, values = [], {}
        if elements is not None and plan.recover:
            plan = self.share_with_undo(plan, elements, set(targets), env, out, values)
        undo = self.backward_assign(s, plan)
        # The value of a single target is the statement's result: keep it for rules that
        # use it (exp, tanh, ...) rather than recomputing it after the undo. A target that
        # nothing reads later (`u = u / v` as u's last value) has no value in the backward
        # run, but then its adjoint is ZERO and no rule runs: read it only otherwise.
        ans = None
        if elements is not None and len(targets) == 1 and id(value) not in values and \
                isinstance(value, (ir.Call, ir.BinOp)) and targets[0] not in self.float_adj:
            ans = self.temp("ans")
            read = ast.Compare(self.adj_load(targets[0]), [ast.IsNot()], [self.helper_zero()])
            out.append(_assign(pyname(ans), ast.IfExp(read, _name(targets[0]),
                                                      ast.Constant(None))))
        out += undo
        gs = []
        for t in targets:
            if t not in self.active:
                gs.append(None)
                continue
            g = self.temp("g")
            out.append(_assign(pyname(g), self.adj_load(t)))
            out.append(ast.Assign([ast.Name(self.adj(t), ast.Store())], self.zero(t)))
            gs.append(g)
        if elements is None:  # `a, b = e`: the cotangent of e is the tuple of theirs
            g = self.temp("g")
            out.append(_assign(pyname(g), ast.Tuple(
                [_name(x) if x else self.helper_zero() for x in gs], ast.Load())))
            body = self.vjp(value, g, env, maybe_zero=False, values=values)
            tests = [self.nonzero_test(x) for x in gs if x]
            out.append(ast.If(ast.BoolOp(ast.Or(), tests) if len(tests) > 1 else tests[0],
                              body, []))
            return out
        for g, e in zip(gs, elements):
            if g is None:
                continue
            code = self.vjp(e, g, env, maybe_zero=False, ans=ans, values=dict(values))
            if not code:
                continue
            if targets[gs.index(g)] in self.float_adj:
                out += code
            else:
                out.append(ast.If(self.nonzero_test(g), code, []))
        return out

    def share_with_undo(self, plan, elements, targets, env, out, values):
        """Evaluate into `out` the largest sub-expressions of `elements` that the undo
        recomputes (reading no target, so their value is the same before and after the
        statement); return the plan with the undo reading those values."""
        candidates = {}
        for e in elements:
            for node in ir.walk(e):
                if isinstance(node, (ir.BinOp, ir.Call, ir.UnaryOp, ir.Subscript)) and \
                        not (ir.names_read(node) & targets):
                    candidates.setdefault(node, node)
        shared = {}

        def find(x):
            if x in candidates and not any(isinstance(n, ir.Name) and n.id.startswith("\0")
                                           for n in ir.walk(x)):
                shared[x] = candidates[x]
                return
            for c in ir.children(x):
                find(c)
        for _, e in plan.recover:
            find(e)
        if not shared:
            return plan
        names = {}
        for node, element_node in shared.items():
            if self.is_active(element_node):
                names[node] = self.primal(element_node, env, out, values)
            else:
                t = self.temp()
                out.append(_assign(pyname(t), self.expr(element_node, self.line)))
                names[node] = ir.Name(t)
        recover = [(v, ir.map_expr(e, lambda x: names.get(x, x))) for v, e in plan.recover]
        return dataclasses.replace(plan, recover=recover)

    def nonzero_test(self, g):
        return ast.Compare(_name(g), [ast.IsNot()], [self.helper_zero()])

    def adjoint_store_item(self, s, env):
        """`a[i] = v`: the old a[i] no longer reaches the result; v's cotangent is the
        adjoint of a[i]."""
        base = _base_name(s.target)
        if base not in self.active:
            return []
        g = self.temp("g")
        out = [ast.Assign([ast.Tuple([ast.Name(self.adj(base), ast.Store()),
                                      ast.Name(pyname(g), ast.Store())], ast.Store())],
                          self.call_helper(take_index, self.adj_load(base), _name(base),
                                           *self.element_path(s)))]
        out += self.vjp(s.value, g, env, maybe_zero=True)
        return out

    def element_path(self, s):
        """(the outer indices as a tuple display, the last index) of the subscripted
        target of `s`: `p["w"][i]` changes the element i of the part "w" of p."""
        indices, target = [], s.target
        while isinstance(target, ir.Subscript):
            indices.insert(0, self.expr(target.index, s.line))
            target = target.value
        if not isinstance(target, ir.Name):
            raise self.cx.error(f"`{ir.unparse(s)}` (an in-place change through an attribute) "
                                "in a differentiated function", s.line,
                                "pass the array itself as an argument")
        return ast.Tuple(indices[:-1], ast.Load()), indices[-1]

    def adjoint_aug(self, s, env):
        base = _base_name(s.target)
        if base not in self.active:
            return []
        if isinstance(s.target, ir.Subscript):
            if s.op not in ("+", "-", "*", "/"):
                raise self.cx.error(f"`{ir.unparse(s)}` in a differentiated function", s.line,
                                    "write a[i] = a[i] op v")
            g = self.temp("g")
            out = [ast.Assign(
                [ast.Tuple([ast.Name(self.adj(base), ast.Store()), ast.Name(pyname(g), ast.Store())],
                           ast.Store())],
                self.call_helper(aug_index_vjp, ast.Constant(s.op), self.adj_load(base),
                                 _name(base), *self.element_path(s),
                                 self.expr(s.value, s.line)))]
            return out + self.vjp(s.value, g, env, maybe_zero=True)
        # x op= e means x = x op e for the adjoint (the undo restored x, in place or not).
        g = self.temp("g")
        out = [_assign(pyname(g), self.adj_load(base)),
               ast.Assign([ast.Name(self.adj(base), ast.Store())], self.zero(base))]
        code = self.vjp(ir.BinOp(s.op, s.target, s.value), g, env, maybe_zero=False)
        if base in self.float_adj:
            return out + code
        return out + [ast.If(self.nonzero_test(g), code, [])] if code else out

    # ---- loops: the loop variable's adjoint flows into the sequence it came from

    def element_hooks(self, s, plan, tree, temps, k):
        """At the end of each backward iteration (where the forward run read the
        element), add the loop variables' adjoints into a buffer per sequence; after
        the loop, pass each buffer on to the sequence's expression."""
        flows = self.element_flows(s, tree)
        if not flows:
            return [], [], []
        if temps is None:
            raise self.cx.error("differentiating a loop over a sequence the loop body "
                                "changes", s.line, "loop over range(len(seq)) and index it")
        before, each, after = [], [], []
        for var, leaf in flows:
            buf = self.temp("lb")
            before.append(_assign(pyname(buf), self.helper_zero()))
            each.append(_assign(pyname(buf), self.call_helper(
                acc_index, _name(buf), temps[id(leaf)], k, self.adj_load(var))))
            each.append(ast.Assign([ast.Name(self.adj(var), ast.Store())], self.zero(var)))
            after += self.vjp(leaf[1], buf, {}, maybe_zero=True)
        return before, each, after

    def element_flows(self, s, tree):
        """(loop variable, sequence leaf) pairs whose adjoints must flow."""
        target = s.target
        pairs = []
        if tree[0] == "seq":
            if isinstance(target, ir.Name):
                pairs.append((target.id, tree))
            elif _diff_names(tree[1], self.cx) & self.active:
                raise self.cx.error("unpacking the elements of a differentiated sequence in a "
                                    "for loop", s.line, "index the sequence instead")
        elif tree[0] == "enumerate" and isinstance(target, ir.Tuple) and len(target.elts) == 2:
            sub = target.elts[1]
            pairs += self.element_flows(ir.For(sub, None, [], s.line), tree[1])
        elif tree[0] == "zip" and isinstance(target, ir.Tuple) and \
                len(target.elts) == len(tree[1]):
            for t, sub in zip(target.elts, tree[1]):
                pairs += self.element_flows(ir.For(t, None, [], s.line), sub)
        elif any(_diff_names(leaf[1], self.cx) & self.active
                 for leaf in self.leaves(tree) if leaf[0] == "seq"):
            raise self.cx.error("this form of for loop over a differentiated sequence", s.line,
                                "loop over range(len(seq)) and index it")
        return [(v, leaf) for v, leaf in pairs
                if v in self.active and _diff_names(leaf[1], self.cx) & self.active]

    # ---- expressions: recompute the values, then push the cotangent down

    def vjp(self, e, g, env, maybe_zero, ans=None, values=None):
        """Statements adding the contributions of cotangent `g` (an IR name) of the
        expression `e` (evaluated in the restored state) to the adjoints it reads. With
        `maybe_zero`, g may be ZERO or None at run time."""
        if not self.is_active(e):
            return []
        if isinstance(e, (ir.Name, ir.FreeVar)):
            out = []
            self.give(e, _name(g), env, out, {}, maybe_zero=True)
            return out
        out, values = [], dict(values or {})
        self.primal(e, env, out, values, ans)
        self.back(e, g, env, out, values)
        if maybe_zero:
            return [ast.If(self.call_helper(nonzero, _name(g)), out, [])]
        return out

    def is_active(self, e):
        return bool(_diff_names(e, self.cx) & self.active) or (
            bool(self.free_inputs) and any(isinstance(x, ir.FreeVar) and x.id in self.free_inputs
                                           for x in ir.walk(e)))

    def primal(self, e, env, out, values, ans=None, shape_only=False):
        """Evaluate the active node `e`'s sub-expressions into temporaries, so the
        adjoint code reads each value once; `values[id(node)]` is an IR expression for a
        node's value. Only the test of a conditional expression (and the left operand of
        `and`/`or`) is evaluated here: an arm is evaluated when its adjoint runs."""
        if id(e) in values:
            return values[id(e)]
        if isinstance(e, (ir.Const, ir.Name, ir.Global, ir.FreeVar)):
            values[id(e)] = e
            return e
        if isinstance(e, ir.IfExp):
            kids = [e.test]
        elif isinstance(e, ir.BoolOp):
            kids = [e.left]
        elif isinstance(e, ir.Call) and isinstance(e.func, ir.Attribute) and \
                self.cx.resolve(e.func) is None:
            kids = [e.func.value, *e.args, *(v for _, v in e.kwargs)]
        elif isinstance(e, ir.Call) and self.cx.resolve(e.func) is not None:
            kids = [*e.args, *(v for _, v in e.kwargs)]  # (the callee is a constant)
        else:
            kids = list(ir.children(e))
        new = {}
        for c in kids:
            if self.is_active(c):
                # (a child's value is skipped only when e's value is not computed from it)
                new[id(c)] = self.primal(c, env, out, values, shape_only=ans is not None
                                         and self.shape_only(e, c, env))
            elif not isinstance(c, (ir.Const, ir.Name, ir.Global, ir.FreeVar, ir.Slice)):
                t = self.temp()
                out.append(_assign(pyname(t), self.expr(c, self.line)))
                new[id(c)] = values[id(c)] = ir.Name(t)
            else:
                values[id(c)] = c
        rebuilt = _replace_children(e, new)
        if ans is None:
            ans = self.temp()
            value = self.expr(rebuilt, self.line)
            if shape_only:  # the Abstract when the operands allow it, else the value
                value = ast.BoolOp(ast.Or(), [self.abstract(rebuilt), value])
            out.append(_assign(pyname(ans), value))
        values[id(e)] = ir.Name(ans)
        return values[id(e)]

    def shape_only(self, parent, e, env):
        """Whether the rules need only the shape and dtype of the array `e` (a child of
        `parent`): `e` is an operand of `+`/`-` or the argument of np.sum/np.mean, and its
        own rule does not read its value (`*`, `+`, `-`, `x ** k`, unary minus, einsum)."""
        if self.floats is not None and self.floats.type(e, env) in SCALARS:
            return False
        consumer = (isinstance(parent, ir.BinOp) and parent.op in ("+", "-")) or (
            isinstance(parent, ir.Call) and parent.args and parent.args[0] is e
            and self.cx.resolve(parent.func) in (np.sum, np.mean))
        if not consumer:
            return False
        if isinstance(e, ir.BinOp):
            return e.op in ("+", "-", "*") or (
                e.op == "**" and isinstance(e.right, ir.Const) and type(e.right.value) is int)
        if isinstance(e, ir.UnaryOp):
            return e.op == "-"
        return (isinstance(e, ir.Call) and self.cx.resolve(e.func) is np.einsum and
                not e.kwargs and e.args and isinstance(e.args[0], ir.Const))

    def abstract(self, e):
        """Code computing the rules.Abstract of `e` (a node `shape_only` accepts); at run time
        it is None when an operand is not an array or a number."""
        if isinstance(e, ir.Call):  # np.einsum
            return self.call_helper(rules.abstract_einsum,
                                    *(self.expr(a, self.line) for a in e.args))
        operands = [e.operand] if isinstance(e, ir.UnaryOp) else [e.left, e.right]
        return self.call_helper(rules.abstract_elementwise,
                                *(self.expr(a, self.line) for a in operands))

    def is_float(self, e, env):
        """Whether `e` has Python float arithmetic (a float or a NumPy float64)."""
        return self.floats is not None and self.floats.type(e, env) in REALS

    def give(self, e, c_ast, env, out, values, maybe_zero, inline=False):
        """Pass cotangent `c_ast` (Python ast; ZERO or None at run time when
        `maybe_zero`) to the sub-expression `e`."""
        if not self.is_active(e):
            return
        if isinstance(e, ir.Name):
            a = self.adj(e.id)
            if inline and e.id in self.float_adj:
                value = ast.BinOp(self.adj_load(e.id), ast.Add(), c_ast)
            elif e.id in self.buffers:
                value = self.call_helper(acc_owned, self.adj_load(e.id), c_ast)
            elif e.id in self.accumulators:
                owned = self.adj(e.id) + "_owned"
                out.append(ast.Assign(
                    [ast.Tuple([ast.Name(a, ast.Store()), ast.Name(owned, ast.Store())],
                               ast.Store())],
                    self.call_helper(acc_in_place, self.adj_load(e.id),
                                     ast.Name(owned, ast.Load()), c_ast)))
                return
            else:
                value = self.call_helper(acc, self.adj_load(e.id), c_ast)
            out.append(ast.Assign([ast.Name(a, ast.Store())], value))
            return
        if isinstance(e, ir.FreeVar):
            if e.id in self.free_inputs:
                a = self.adj("$free:" + e.id)
                out.append(ast.Assign([ast.Name(a, ast.Store())],
                                      self.call_helper(acc, ast.Name(a, ast.Load()), c_ast)))
            return
        if isinstance(c_ast, ast.Name):
            g = _ir_name_of(c_ast.id)  # already a name: no copy
        else:
            g = self.temp("ct")
            out.append(_assign(pyname(g), c_ast))
        inner = []
        if id(e) not in values:  # an arm of a conditional: evaluated only now
            self.primal(e, env, inner, values)
        self.back(e, g, env, inner, values)
        if maybe_zero and not inline:
            out.append(ast.If(self.call_helper(nonzero, _name(g)), inner, []))
        else:
            out += inner

    def val(self, e, values):
        return self.expr(values.get(id(e), e), self.line)

    def back(self, e, g, env, out, values):
        """Cotangent `g` (an IR name, never ZERO here) of the node `e` → contributions
        to its children."""
        if isinstance(e, (ir.Name, ir.FreeVar)):
            self.give(e, _name(g), env, out, values, maybe_zero=False)
            return
        if not self.is_active(e):
            return
        gl = _name(g)
        if isinstance(e, ir.BinOp):
            self.back_binop(e, g, env, out, values)
        elif isinstance(e, ir.UnaryOp):
            if e.op in ("-", "+"):
                c = ast.UnaryOp(ast.USub(), gl) if e.op == "-" else gl
                self.give(e.operand, c, env, out, values, False, self.is_float(e.operand, env))
        elif isinstance(e, ir.Call):
            self.back_call(e, g, env, out, values)
        elif isinstance(e, ir.Attribute):
            c = self.call_helper(attribute_vjp, self.val(e.value, values), ast.Constant(e.attr),
                                 gl, self.val(e, values), self.where_ast())
            self.give(e.value, c, env, out, values, True)
        elif isinstance(e, ir.Subscript):
            self.back_subscript(e, g, env, out, values)
        elif isinstance(e, (ir.Tuple, ir.List)):
            for i, x in enumerate(e.elts):
                self.give(x, self.call_helper(part, gl, ast.Constant(i)), env, out, values, True)
        elif isinstance(e, ir.Dict):
            for k, x in zip(e.keys, e.values):
                self.give(x, self.call_helper(part, gl, self.val(k, values)), env, out, values,
                          True)
        elif isinstance(e, (ir.IfExp, ir.BoolOp)):
            if isinstance(e, ir.IfExp):
                test, taken, other = e.test, e.body, e.orelse
            else:  # `l and r` is r when l is true, else l; `l or r` is l when l is true
                test = e.left
                taken, other = (e.right, e.left) if e.op == "and" else (e.left, e.right)
            arms = []
            for x in (taken, other):
                arm = []
                self.give(x, gl, env, arm, values, False)
                arms.append(arm or [ast.Pass()])
            out.append(ast.If(self.val(test, values), arms[0], arms[1]))
        elif isinstance(e, ir.MakeFunction):
            # The cotangent of a function value is the tuple of its closure cells'.
            for i, n in enumerate(e.closure):
                self.give(ir.Name(n), self.call_helper(part, gl, ast.Constant(i)), env, out,
                          values, True)
        elif isinstance(e, ir.ListComp):
            self.back_listcomp(e, g, env, out)
        else:
            raise self.cx.error(f"differentiating {type(e).__name__}", self.line)

    def back_binop(self, e, g, env, out, values):
        gl = _name(g)
        left, right = values.get(id(e.left), e.left), values.get(id(e.right), e.right)
        L, R = self.expr(left, self.line), self.expr(right, self.line)
        if self.floats is not None and e.op in ("+", "-", "*", "/", "**") and \
                self.floats.type(e.left, env) in SCALARS and \
                self.floats.type(e.right, env) in SCALARS and self.is_float(e, env):
            ans = self.val(e, values)
            parts = _float_partials(e.op, gl, L, R, ans, self.const(np.log))
            for x, c in zip((e.left, e.right), parts):
                if c is not None:
                    self.give(x, c, env, out, values, False, inline=True)
            return
        one_sided = self.one_sided_partial(e, gl, L, R)
        if one_sided is not None:
            active, c = one_sided
            self.give(active, c, env, out, values, False)
            return
        needs_ans = e.op in ("/", "**")
        cts = self.temp("cs")
        out.append(_assign(pyname(cts), self.call_helper(
            rules.binop_vjp, ast.Constant(e.op), gl,
            self.val(e, values) if needs_ans else ast.Constant(None), L, R)))
        for i, x in enumerate((e.left, e.right)):
            self.give(x, ast.Subscript(_name(cts), ast.Constant(i), ast.Load()), env, out,
                      values, True)

    def one_sided_partial(self, e, gl, L, R):
        """(operand, cotangent ast) when only one operand of `e` is active and the op is
        simple: only that cotangent is computed (not the constant's: `0.1 * x`), and a
        number constant on the other side needs no un-broadcasting."""
        left, right = self.is_active(e.left), self.is_active(e.right)
        if left == right or e.op not in ("+", "-", "*", "/", "**") or \
                (e.op in ("/", "**") and right):
            return None
        active, other, A, O = (e.left, e.right, L, R) if left else (e.right, e.left, R, L)
        number = isinstance(other, ir.Const) and type(other.value) in (int, float)
        if e.op in ("+", "-"):
            c = gl if number else self.call_helper(rules.unbroadcast, gl, A)
            # negated after the broadcast axes are summed away: fewer elements to negate
            return active, ast.UnaryOp(ast.USub(), c) if e.op == "-" and right else c
        if e.op == "*":
            c = ast.BinOp(gl, ast.Mult(), O)
        elif e.op == "/":
            c = ast.BinOp(gl, ast.Div(), O)
        else:  # x ** k: g * k * x ** (k - 1), with k - 1 folded for a constant k
            k1 = ast.Constant(other.value - 1) if number else \
                ast.BinOp(O, ast.Sub(), ast.Constant(1))
            power = A if isinstance(k1, ast.Constant) and k1.value == 1 else \
                ast.BinOp(A, ast.Pow(), k1)
            c = ast.BinOp(ast.BinOp(gl, ast.Mult(), O), ast.Mult(), power)
        if number:
            return active, c  # a number does not broadcast the active operand
        return active, self.call_helper(rules.unbroadcast, c, A)

    def back_call(self, e, g, env, out, values):
        gl = _name(g)
        obj = self.cx.resolve(e.func)
        args = [self.val(a, values) for a in e.args]
        kwargs = [ast.keyword(k, self.val(v, values)) for k, v in e.kwargs]
        ans = self.val(e, values)
        if obj is not None and not _differentiated_through(obj):
            templates = rules.elementwise_template(obj, len(e.args))
            if templates and not e.kwargs and all(
                    self.floats is not None and self.floats.type(a, env) in SCALARS
                    for a in e.args) and self.is_float(e, env):
                for x, template, a in zip(e.args, templates, args):
                    if template is not None:
                        c = self.inline_template(template, gl, args, ans)
                        self.give(x, c, env, out, values, False, inline=True)
                return
            rule = rules.vjp_rule(obj)
            if rule is None:
                if any(self.is_active(a) for a in e.args) or \
                        any(self.is_active(v) for _, v in e.kwargs):
                    raise _no_rule(obj, (*self.where, self.line))
                return
            cts = self.temp("cs")
            out.append(_assign(pyname(cts), ast.Call(
                ast.Name(self.const(rule), ast.Load()), [gl, ans, *args], kwargs)))
            for i, x in enumerate(e.args):
                self.give(x, ast.Subscript(_name(cts), ast.Constant(i), ast.Load()), env, out,
                          values, True)
            return
        if isinstance(e.func, ir.Attribute) and obj is None:
            # A method call: the receiver's type decides the rule at run time.
            recv = e.func.value
            cts = self.temp("cs")
            out.append(_assign(pyname(cts), ast.Call(
                self.helper(method_vjp), [self.val(recv, values), ast.Constant(e.func.attr), gl,
                                          ans, ast.Tuple(args, ast.Load()),
                                          ast.Dict([ast.Constant(k.arg) for k in kwargs],
                                                   [k.value for k in kwargs]),
                                          self.where_ast()], [])))
            self.give(recv, ast.Subscript(_name(cts), ast.Constant(0), ast.Load()), env, out,
                      values, True)
            for i, x in enumerate(e.args):
                self.give(x, ast.Subscript(ast.Subscript(_name(cts), ast.Constant(1), ast.Load()),
                                           ast.Constant(i), ast.Load()), env, out, values, True)
            return
        # A Python function (known now, or a local holding a callable): decided at run time.
        func = self.val(e.func, values)
        wrt = tuple(i for i, a in enumerate(e.args) if self.is_active(a)) + \
            tuple(k for k, v in e.kwargs if self.is_active(v))
        cts = self.temp("cs")
        out.append(_assign(pyname(cts), ast.Call(
            self.helper(call_vjp),
            [func, gl, ans, ast.Tuple(args, ast.Load()),
             ast.Dict([ast.Constant(k.arg) for k in kwargs], [k.value for k in kwargs]),
             self.where_ast(), ast.Constant(wrt)], [])))
        self.give(e.func, ast.Subscript(_name(cts), ast.Constant(0), ast.Load()), env, out,
                  values, True)
        for i, x in enumerate(e.args):
            self.give(x, ast.Subscript(ast.Subscript(_name(cts), ast.Constant(1), ast.Load()),
                                       ast.Constant(i), ast.Load()), env, out, values, True)
        for k, x in e.kwargs:
            self.give(x, self.call_helper(part, ast.Subscript(_name(cts), ast.Constant(2),
                                                              ast.Load()), ast.Constant(k)),
                      env, out, values, True)

    def back_listcomp(self, e, g, env, out):
        """`[elt for t in seq if cond ...]`: run the clauses again, element k of the
        cotangent list goes to `elt` evaluated with that element's loop variables, and
        each loop variable's adjoint goes to its sequence element."""
        renames = {}
        for clause in e.loops:
            if not isinstance(clause.target, ir.Name):
                raise self.cx.error("unpacking in a differentiated list comprehension",
                                    self.line, "write it as a for loop")
            renames[clause.target.id] = self.temp("lc")

        def local(x):
            return ir.map_expr(x, lambda n: ir.Name(renames[n.id]) if isinstance(n, ir.Name)
                               and n.id in renames else n)
        self.active |= set(renames.values())
        count = self.temp("n")
        out.append(_assign(pyname(count), ast.Constant(0)))
        element = self.temp("ge")
        body = [_assign(pyname(element), self.call_helper(part, _name(g), _name(count))),
                ast.AugAssign(_name(count, ast.Store), ast.Add(), ast.Constant(1))]
        inner = self.vjp(local(e.elt), element, {}, maybe_zero=True)
        flows = []  # after each element: loop variables' adjoints into their sequences
        loops = []
        for clause in e.loops:
            seq, buf = self.temp("sq"), self.temp("lb")
            var = renames[clause.target.id]
            loops.append((seq, buf, var, clause))
        for seq, buf, var, clause in reversed(loops):
            flows += [_assign(pyname(buf), self.call_helper(
                          acc_index, _name(buf), _name(seq), _name(var + "k"), self.adj_load(var))),
                      ast.Assign([ast.Name(self.adj(var), ast.Store())], self.helper_zero())]
        stmts = body + inner + flows
        for seq, buf, var, clause in reversed(loops):
            for cond in reversed(clause.conds):
                stmts = [ast.If(self.expr(local(cond), self.line), stmts, [])]
            stmts = [ast.Assign([ast.Name(self.adj(var), ast.Store())], self.helper_zero())] + stmts
            stmts = [_assign(pyname(seq), self.expr(local(clause.iter), self.line)),
                     _assign(pyname(buf), self.helper_zero()),
                     ast.For(ast.Tuple([_name(var + "k", ast.Store), _name(var, ast.Store)],
                                       ast.Store()),
                             self.call_helper(enumerate, _name(seq)), stmts, []),
                     *self.vjp(local(clause.iter), buf, {}, maybe_zero=True)]
        out += stmts

    def back_subscript(self, e, g, env, out, values):
        gl = _name(g)
        index = self.val(e.index, values)
        if isinstance(e.value, ir.Name) and e.value.id in self.buffers and \
                self.floats.type(e, env) == "f64":
            # An element of a 1-D float64 array: `adj_a[i] += g`, the buffer made once.
            a = self.adj(e.value.id)
            out.append(ast.If(ast.Compare(ast.Name(a, ast.Load()), [ast.Is()],
                                          [self.helper_zero()]),
                              [ast.Assign([ast.Name(a, ast.Store())], self.call_helper(
                                  _buffer, ast.Name(a, ast.Load()), _name(e.value.id)))], []))
            out.append(ast.AugAssign(ast.Subscript(ast.Name(a, ast.Load()), index, ast.Store()),
                                     ast.Add(), gl))
            return
        if isinstance(e.value, ir.Name) and e.value.id in self.buffers:
            a = self.adj(e.value.id)
            out.append(ast.Assign([ast.Name(a, ast.Store())], self.call_helper(
                acc_index, ast.Name(a, ast.Load()), _name(e.value.id), index, gl)))
            return
        c = self.call_helper(rules.getitem_vjp, gl, self.val(e.value, values), index)
        self.give(e.value, c, env, out, values, True)

    def inline_template(self, template, g_ast, args, ans):
        tree = ast.parse(template, mode="eval").body
        names = {"g": g_ast, "ans": ans, "x": args[0] if args else None,
                 "y": args[1] if len(args) > 1 else None,
                 "np": ast.Name(self.const(np), ast.Load()),
                 "math": ast.Name(self.const(__import__("math")), ast.Load())}

        class Sub(ast.NodeTransformer):
            def visit_Name(self, node):
                return names.get(node.id, node)
        return Sub().visit(tree)

    def where_ast(self):
        return ast.Constant((*self.where, self.line))

    # ---- the whole sweep

    def build_gradient(self):
        """Compile `gradient(T, seed, result, *held)` → (params, adjoints of params,
        adjoints of the differentiated closure cells)."""
        an = self.an
        body = self.backward_prologue()
        for v in sorted(self.active | {"$free:" + f for f in self.free_inputs}):
            body.append(ast.Assign([ast.Name(self.adj(v), ast.Store())], self.zero(v)))
        for v in sorted(self.accumulators):
            body.append(_assign(self.adj(v) + "_owned", ast.Constant(False)))
        body.append(ast.Assign([ast.Name(self.adj("$result"), ast.Store())],
                               ast.Name("_br_seed", ast.Load())))
        body += self.backward_block(an.body)
        if an.entry_keep:
            body.append(ast.Assign([_tuple_of_names(an.entry_keep)], self.read(an.entry_site)))
        params = list(an.params)
        body.append(ast.Return(ast.Tuple([
            ast.Tuple([_name(p) for p in params], ast.Load()),
            ast.Tuple([self.adj_load(p) if p in self.active else self.helper_zero()
                       for p in params], ast.Load()),
            ast.Tuple([ast.Name(self.adj("$free:" + f), ast.Load()) for f in self.free_inputs],
                      ast.Load())], ast.Load())))
        args = ["_br_T", "_br_seed"] + [pyname(r) for r in an.results] + [pyname(h) for h in an.held]
        sweep = ast.FunctionDef(name="gradient", args=_args(args), body=body, decorator_list=[],
                                returns=None, type_params=[])
        sweep.body = _prune(sweep.body)
        (gradient,), module = self.compile([sweep])
        return gradient, module


def _dead_store(plan) -> bool:
    """Whether the analysis found an assignment's targets unread afterwards (its plan
    says so only in words: it has nothing to undo, as a fresh value has)."""
    return not (plan.recover or plan.stash) and plan.how.startswith("dead store")


def _ir_name_of(pyid):
    """The IR name whose pyname is `pyid` (temporaries: `_br_x` ↔ `$x`)."""
    return "$" + pyid[4:] if pyid.startswith("_br_") else pyid


_TEMP_PREFIXES = ("_br_pv", "_br_ct", "_br_ans", "_br_cs")


def _prune(stmts):
    """Drop assignments to adjoint temporaries that nothing reads (the adjoint code
    evaluates every sub-expression of a statement, the inlined float partials need only
    some), until none is left."""
    while True:
        loads = {_name_read(n) for st in stmts for n in ast.walk(st)}
        removed = False

        def keep(st):
            nonlocal removed
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and \
                    isinstance(st.targets[0], ast.Name) and st.targets[0].id not in loads and \
                    (st.targets[0].id.startswith(_TEMP_PREFIXES) or _plain_read(st.value)):
                removed = True
                return False
            return True

        def visit(block):
            out = [st for st in block if keep(st)]
            for st in out:
                for attr in ("body", "orelse"):
                    inner = getattr(st, attr, None)
                    if isinstance(inner, list) and inner:
                        setattr(st, attr, visit(inner) or [ast.Pass()])
            return out

        stmts = visit(stmts)
        if not removed:
            return stmts


def _name_read(node):
    """The variable an ast node reads, if any: a Name loaded, or the target of `s += 2.0`
    (a Store, but the undo of `s -= 2.0` needs the value restored before it)."""
    if isinstance(node, ast.Name):
        return node.id if isinstance(node.ctx, ast.Load) else None
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _plain_read(value) -> bool:
    """A value whose evaluation has no effect and cannot fail in the sweep: `seq[k]`
    restoring a loop variable the sweep never reads, for example."""
    if isinstance(value, (ast.Name, ast.Constant)):
        return True
    return isinstance(value, ast.Subscript) and _plain_read(value.value) and \
        _plain_read(value.slice)


def _fold_resets(stmts):
    """`a = 0.0; ...; a = a + c` → `...; a = c` for float adjoints (no read of `a`
    between): the common shape of a statement's adjoint, one assignment shorter."""
    out = list(stmts)
    i = 0
    while i < len(out):
        st = out[i]
        if isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Name) and \
                isinstance(st.value, ast.Constant) and st.value.value == 0.0 and \
                type(st.value.value) is float:
            name = st.targets[0].id
            for j in range(i + 1, len(out)):
                uses = [n for n in ast.walk(out[j]) if isinstance(n, ast.Name) and n.id == name]
                if not uses:
                    continue
                nxt = out[j]
                if isinstance(nxt, ast.Assign) and isinstance(nxt.targets[0], ast.Name) and \
                        nxt.targets[0].id == name and isinstance(nxt.value, ast.BinOp) and \
                        isinstance(nxt.value.op, ast.Add) and \
                        isinstance(nxt.value.left, ast.Name) and nxt.value.left.id == name and \
                        len(uses) == 2:
                    out[j] = ast.Assign([nxt.targets[0]], nxt.value.right)
                    del out[i]
                    i -= 1
                break
        i += 1
    return out


def _tuple_of_names(names):
    if len(names) == 1:
        return _name(names[0], ast.Store)
    return ast.Tuple([_name(n, ast.Store) for n in names], ast.Store())


_EXPR_TYPES = typing.get_args(ir.Expr)  # the expression node classes


def _float_partials(op, g, L, R, ans, log_name):
    """Inline partials (as ast) of `L op R` on Python numbers."""
    def b(l, o, r):
        return ast.BinOp(l, o, r)
    if op == "+":
        return g, g
    if op == "-":
        return g, ast.UnaryOp(ast.USub(), g)
    if op == "*":
        return b(g, ast.Mult(), R), b(g, ast.Mult(), L)
    if op == "/":
        return b(g, ast.Div(), R), ast.UnaryOp(ast.USub(), b(b(g, ast.Mult(), ans), ast.Div(), R))
    # x ** y: d/dx = y * x ** (y - 1); d/dy = log(x) * ans (only where x > 0)
    dx = b(g, ast.Mult(), b(R, ast.Mult(), b(L, ast.Pow(), b(R, ast.Sub(), ast.Constant(1)))))
    dy = ast.IfExp(ast.Compare(L, [ast.Gt()], [ast.Constant(0)]),
                   b(b(g, ast.Mult(), ans), ast.Mult(),
                     ast.Call(ast.Name(log_name, ast.Load()), [L], [])), ast.Constant(0.0))
    return dx, dy


class _FreeAsName:
    """Rewrites reads of the given free variables as names `$free:<id>` (for activity)."""

    def __init__(self, names):
        self.names = names

    def expr(self, e):
        return ir.map_expr(e, lambda x: ir.Name("$free:" + x.id)
                           if isinstance(x, ir.FreeVar) and x.id in self.names else x)

    def stmt(self, s):
        s = copy.copy(s)
        for attr in ("value", "test", "iter"):
            e = getattr(s, attr, None)
            if isinstance(e, _EXPR_TYPES):
                setattr(s, attr, self.expr(e))
        for attr in ("body", "orelse"):
            if hasattr(s, attr):
                setattr(s, attr, [self.stmt(x) for x in getattr(s, attr)])
        return s


def _replace_children(e, kids):
    """`e` with each direct child replaced by kids[id(child)] (an IR expression)."""
    def k(c):
        return kids.get(id(c), c)
    if isinstance(e, (ir.BinOp, ir.Compare, ir.BoolOp)):
        return type(e)(e.op, k(e.left), k(e.right))
    if isinstance(e, ir.UnaryOp):
        return ir.UnaryOp(e.op, k(e.operand))
    if isinstance(e, ir.IfExp):
        return ir.IfExp(k(e.test), e.body, e.orelse)  # only one arm is evaluated
    if isinstance(e, ir.Call):
        func = e.func
        if isinstance(func, ir.Attribute):
            func = ir.Attribute(k(func.value), func.attr)
        else:
            func = k(func)
        return ir.Call(func, tuple(k(a) for a in e.args), tuple((n, k(v)) for n, v in e.kwargs))
    if isinstance(e, ir.Attribute):
        return ir.Attribute(k(e.value), e.attr)
    if isinstance(e, ir.Subscript):
        return ir.Subscript(k(e.value), k(e.index))
    if isinstance(e, (ir.Tuple, ir.List)):
        return type(e)(tuple(k(x) for x in e.elts))
    if isinstance(e, ir.Dict):
        return ir.Dict(tuple(k(x) for x in e.keys), tuple(k(x) for x in e.values))
    return e
