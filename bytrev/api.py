"""The public API: `reversible`, `inverse`, `show`.

    lift (bytecode → IR) → analysis (how each statement is undone) → codegen (forward and
    backward Python functions) → here: binding arguments, tapes, caching.
"""
from __future__ import annotations

import inspect
from array import array
import linecache
import sys

import numpy as np

from . import ir
from .analysis import analyze, assigned, cached_per_function, mutated, unchanged
from .backend import is_array
from .codegen import generate
from .errors import BytrevError, NotInvertibleError, ReversalError, UnsupportedError
from . import rules
from .rules import inverse_of
from . import lift as _lift_module
from . import forward as forward_mode
from . import scalars
from .tape import Tape



def _check_function(f):
    if not inspect.isfunction(f):
        raise UnsupportedError(f"a {type(f).__name__} object", function=repr(f),
                               hint="bytrev runs plain Python functions (def or lambda)")
    if getattr(f, "__bytrev_derivative__", False) is True:
        raise UnsupportedError(
            "running a derivative made by bytrev backwards", function=f.__qualname__,
            hint="grad, jacobian, jvp and jacfwd of it work (by forward mode), and so do "
                 "bytrev.hessian and bytrev.hvp; vjp and reversible/inverse do not")


class Reversible:
    """The reversible form of `f`: `forward` runs `f` and records a tape, `backward`
    runs it in reverse and returns `f`'s arguments.

    Parameters that `f` never rebinds are kept by reference on the tape; every other
    argument is recovered by running the reversible form backwards. Arrays that `f`
    changes in place are restored in place. `backward` may change the `result` it is
    given (it is consumed, exactly as the forward run consumed the arguments)."""

    def __init__(self, f):
        _check_function(f)
        self.function = f
        self.ir = _lift_module.lift(f)
        params = self.ir.params + self.ir.kwonly
        rebound = assigned(self.ir.body)
        held = tuple(p for p in params if p not in rebound)
        self.analysis = analyze(self.ir, f, results=None, held=held)
        self.module = generate(self.analysis, f)[2]  # (also refuses what codegen cannot do)
        self._signature = inspect.signature(f)
        self._held_index = [params.index(h) for h in held]
        self._sites = self.analysis.sites
        self._in_place_params = mutated(self.ir.body) & set(params)
        self._changes_in_place = bool(mutated(self.ir.body))
        self._specialised = {}  # argument types -> forward run (see _forward_for)

    dependencies: dict = {}  # what compiling read (cached_per_function sets it)

    def _fresh(self):
        """This form, or the one compiled now where a name it was compiled from holds
        something else (a helper defined again)."""
        return self if unchanged(self.dependencies) else reversible(self.function)

    def _bind(self, args, kwargs):
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments[p] for p in self.analysis.params)

    def forward(self, *args, **kwargs):
        """Run `f(*args, **kwargs)`; return `(result, tape)`."""
        fresh = self._fresh()
        if fresh is not self:
            return fresh.forward(*args, **kwargs)
        values = self._bind(args, kwargs)
        result, containers, run = self.record(values)
        return result, Tape(self, self._sites, containers, values, run.float_sites,
                            run.backward)

    def record(self, values):
        """Run the forward sweep on bound argument values; return (result, one
        container per tape site as the sweep filled it, the forward run used: its
        `float_sites` are the sites holding only floats, its `backward` reads its tape).
        The gradient consumes the containers at once; `forward` packs them into a Tape."""
        if self._changes_in_place:
            _refuse_aliased_arrays(self.ir, values)
        forward = self._forward_for(values)
        containers = [array("d") if s.kind == "stash" and s.index not in forward.float_sites
                      else [] for s in self._sites]
        result = forward(containers, *values)
        return result, containers, forward

    def _forward_for(self, values):
        """The forward run specialised to the arguments' types (scalars.FloatVars): where
        a stashed value is provably a Python float it goes to the tape without a type
        check, and an inverse that the types prove to give back the old value's type
        needs no run-time check (codegen.Generator.checked). The gradient sweep makes the
        same decisions from the same types."""
        duals = forward_mode.carries_duals(values)
        types = tuple(scalars.type_name(v) for v in values)
        key = (tuple(map(type, values)), types, duals)
        forward = self._specialised.get(key)
        if forward is None:
            if len(self._specialised) >= 32:
                self._specialised.clear()
            floats = scalars.FloatVars(self.analysis.body, self.analysis.params, types,
                                       self.analysis.context)
            # Forward over reverse: f's globals for dual numbers.
            namespace = forward_mode.namespace_of(self.function.__globals__) if duals else None
            forward, backward, _ = generate(self.analysis, self.function, floats=floats,
                                            namespace=namespace)
            forward.backward = backward
            self._specialised[key] = forward
        return forward

    def backward(self, result, tape):
        """Run the reversible form backwards from `result`; return the arguments of the
        forward call as a tuple, one value per parameter in signature order."""
        if tape.recorder is not self and getattr(tape.recorder, "function", None) is self.function:
            return tape.recorder.backward(result, tape)  # recorded by the form compiled anew
        containers = tape.containers_for_backward(self)
        held = [tape.args[i] for i in self._held_index]
        restored = list(_run_backward(self.ir, tape.backward_run, containers, result, *held))
        for i, (original, value) in enumerate(zip(tape.args, restored)):
            if type(original) is float and type(value) is not float:
                restored[i] = float(value)  # a NumPy float64 of the same value (same_kind)
            # A changed array comes back into the object the caller passed.
            if is_array(original) and value is not original and \
                    is_array(value) and value.shape == original.shape:
                original[...] = value
                restored[i] = original
        return tuple(restored)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)[0]

    def show(self) -> str:
        return _format(self.analysis, "reversible form")


def _run_backward(fn, backward, *args):
    try:
        return backward(*args)
    except BytrevError:
        raise
    except Exception as e:
        line = _user_line(e, fn.filename)
        raise ReversalError(
            f"{fn.qualname} ({fn.filename}:{line}): running it backwards failed: "
            f"{type(e).__name__}: {e}") from e


def _user_line(exc, filename):
    """The source line the backward run was undoing when `exc` was raised."""
    tb, line = exc.__traceback__, "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _refuse_aliased_arrays(fn, values):
    """bytrev undoes `a[i] += b[j]` by `a[i] -= b[j]`, which is wrong when a and b are
    the same memory: refuse array arguments that overlap when f changes arrays in place."""
    arrays = [(p, v) for p, v in zip(fn.params + fn.kwonly, values) if is_array(v)]
    for i, (p, a) in enumerate(arrays):
        for q, b in arrays[i + 1:]:
            if np.may_share_memory(a, b):
                raise UnsupportedError(
                    f"arguments {p} and {q} that share memory", function=fn.qualname,
                    filename=fn.filename, line=fn.firstlineno,
                    hint=f"{fn.name} changes arrays in place; pass a copy, e.g. {q}.copy()")


def reversible(f) -> Reversible:
    """The reversible form of `f` (cached per function; compiled again where a name it
    was compiled from, such as a helper function defined again, holds something else)."""
    return _reversible(f)


_reversible = cached_per_function(Reversible)


def _result_count(fn: ir.Function) -> int:
    """k: how many values `f` returns as a tuple display, the same at every return."""
    sizes = set()

    def visit(stmts):
        for s in stmts:
            if isinstance(s, ir.Return):
                sizes.add(len(s.value.elts) if isinstance(s.value, ir.Tuple) else 1)
            for attr in ("body", "orelse"):
                visit(getattr(s, attr, []))

    visit(fn.body)
    return sizes.pop() if len(sizes) == 1 else 1


class Inverse:
    """`inverse(f)`: when `f` returns k values, they are the new values of its first k
    parameters; the inverse takes those k values followed by the remaining parameters and
    returns the first k parameters (one value when k = 1)."""

    def __init__(self, f):
        _check_function(f)
        self.function = f
        fn = _lift_module.lift(f)
        self.ir = fn
        params = fn.params + fn.kwonly
        self.k = k = _result_count(fn)
        if k > len(params):
            raise NotInvertibleError(fn.qualname, fn.filename, [(
                fn.firstlineno, f"{fn.name} returns {k} values but has {len(params)} parameters")])
        rebound = assigned(fn.body)
        self.rest = params[k:]
        held = tuple(p for p in self.rest if p not in rebound)
        self.analysis = analyze(fn, f, results=k, held=held)
        needs_tape = [(s.line, s.text) for s in self.analysis.sites if not s.conditional]
        if needs_tape:
            raise NotInvertibleError(fn.qualname, fn.filename, needs_tape)
        self._held_index = [self.rest.index(h) for h in held]
        _, self._backward, self.module = generate(self.analysis, f, invert_mode=True)
        self.__name__ = f"inverse_of_{f.__name__}"
        self.__doc__ = f"Inverse of {fn.qualname}: takes {k} result(s) then {list(self.rest)}."

    dependencies: dict = {}  # what compiling read (cached_per_function sets it)

    def __call__(self, *values):
        if not unchanged(self.dependencies):  # a name it was compiled from was rebound
            return inverse(self.function)(*values)
        return self.apply(*values)

    def apply(self, *values):
        """The inverse as compiled, whatever the names it was compiled from hold now: the
        one a compiled form calls (its tapes were recorded with what they held then)."""
        expected = self.k + len(self.rest)
        if len(values) != expected:
            raise TypeError(f"{self.__name__} takes {expected} arguments ({self.k} result(s) "
                            f"then {', '.join(self.rest) or 'nothing'}), got {len(values)}")
        outs, rest = values[:self.k], values[self.k:]
        held = [rest[i] for i in self._held_index]
        params = _run_backward(self.ir, self._backward, [], *outs, *held)
        return params[0] if self.k == 1 else tuple(params[:self.k])

    def show(self) -> str:
        return _format(self.analysis, "inverse")


def inverse(f) -> Inverse:
    """The inverse of `f`, with no hand-written inverse; raises NotInvertibleError when
    `f` destroys information (use `reversible(f)`, which records it on a tape). The
    inverse registered with `bytrev.definverse(f, ...)` where there is one. Cached as
    `reversible` is."""
    registered = inverse_of(f)
    return registered if registered is not None else _inverse(f)


_inverse = cached_per_function(Inverse)
rules._ON_REGISTER += [_reversible.cache_clear, _inverse.cache_clear]


# --------------------------------------------------------------------------- show


def _cost(plan) -> str:
    parts = []
    for name, value in vars(plan).items():
        if name == "guards":
            parts += ["stash if a factor is 0"] * len(value)
            continue
        if name in ("checks", "check"):  # costs nothing while they pass: see _format
            continue
        if name == "approximate" and value and not hasattr(plan, "bit_site"):
            # an inverse selecting by restored values (AssignPlan.approximate)
            parts += ["stash (floats)"] * (len(value) if isinstance(value, dict) else 1)
            continue
        site = value
        if not hasattr(site, "kind"):
            continue
        if site.kind == "bit":
            parts.append("1 bit (floats)" if getattr(plan, "approximate", None) else "1 bit")
        elif site.conditional:
            parts.append("stash if the factor is 0")
        elif site.kind == "count":
            parts.append("1 count")
        elif name.startswith("keep_iter"):
            parts.append("stash per iteration")
        else:
            parts.append("stash")
    return ", ".join(parts) or "-"


def _format(an, title) -> str:
    fn = an.function
    rows = []

    def source(line):
        return linecache.getline(fn.filename, line).rstrip() if line else ""

    def visit(stmts, depth):
        for s in stmts:
            plan = an.plans.get(id(s))
            pad = "    " * depth
            if isinstance(s, ir.If):
                head = f"if {ir.unparse(s.test)}:"
            elif isinstance(s, ir.For):
                head = f"for {ir.unparse(s.target)} in {ir.unparse(s.iter)}:"
            elif isinstance(s, ir.While):
                head = f"while {ir.unparse(s.test)}:"
            else:
                head = ir.unparse(s)
            how = getattr(plan, "how", "") if plan is not None else (
                "nothing to undo" if not isinstance(s, ir.Break) else "")
            rows.append((s.line, pad + head, how, _cost(plan) if plan is not None else "-"))
            if isinstance(s, ir.If):
                visit(s.body, depth + 1)
                if s.orelse:
                    rows.append((s.line, pad + "else:", "", ""))
                    visit(s.orelse, depth + 1)
            elif isinstance(s, (ir.For, ir.While)):
                visit(s.body, depth + 1)

    visit(an.body, 1)
    width = max([len(r[1]) for r in rows] + [20])
    out = [f"{title} of {fn.qualname} ({fn.filename}:{fn.firstlineno})",
           f"{'line':>5}  {'reversible form':<{width}}  {'undone by':<40}  tape / execution"]
    shown = set()
    for line, text, how, cost in rows:
        src = source(line).strip() if line not in shown else ""
        shown.add(line)
        out.append(f"{line:>5}  {text:<{width}}  {how[:40]:<40}  {cost}")
        if src and src != text.strip():
            out.append(f"{'':>5}  {'  # ' + src:<{width}}")
    if an.entry_keep:
        out.append(f"{fn.firstlineno:>5}  entry: stash {', '.join(an.entry_keep)}")
    out.append(f"tape sites: {len([s for s in an.sites if not s.conditional])}"
               f" (+{len([s for s in an.sites if s.conditional])} guarded)")
    if any(s.failures for s in an.sites) and title != "inverse":
        scaled = any(getattr(p, "scaled", False) for p in an.plans.values())
        out.append("inverses check that they give back the old value's type and shape where "
                   "the argument types do not settle it"
                   + (", and that a float product or quotient neither underflowed nor "
                      "overflowed" if scaled else "")
                   + "; the old value is stashed where not")
    return "\n".join(out)


def show(f, file=None) -> str:
    """Print the reversible form of `f` next to its source lines, each statement marked
    with how the backward run undoes it and what it costs on the tape; return the text."""
    text = reversible(f).show()
    print(text, file=file or sys.stdout)
    return text
