"""Reversibility analysis: decide, for every statement, how the backward run undoes it.

Input: a lifted `ir.Function`. Output: an `Analysis` holding the function body in a
normal form (every `return` in tail position, no `continue`) and, for each statement, a
plan saying how it is undone and what it costs on the tape.

The central idea is *need sets*. The backward run walks the program in reverse and, at
each program point p, holds the values of exactly the variables the forward run still
needs at p (its live variables), plus whatever the caller gives back. Undoing a
statement means producing the need set before it from the need set after it:

* `x = e` where every variable `e` reads is still needed afterwards and `x` is not read:
  nothing is lost; undo = forget `x` (a fresh value, recomputed when needed).
* exactly one value is lost (a variable whose last use is here, or `x`'s own old value
  when `e` reads `x`) and `e` is invertible in it (`+ - * /`, negation, copies, tuple
  displays...): undo = compute it back from the new `x` (`x = x*c + d` → `x = (x-d)/c`).
  Multiplicative inverses carry a runtime guard: when the factor is zero the old value is
  stashed instead.
* otherwise: stash the lost values on the tape (the only case that costs memory).

Branches cost no bit when their condition can be re-evaluated in the backward run (it is
pure, reads only variables available after the `if`, and neither arm changes them);
otherwise one bit. Loops record a trip count only when it cannot be recomputed (`while`
loops, loops with `break`). A compound statement that leaves a needed variable
unrestored on some path (e.g. an arm that overwrites it) stashes it on that path.
"""
from __future__ import annotations

import builtins
import collections
import contextlib
import copy
import math
import threading
import types
from dataclasses import dataclass, field

import numpy as np

from . import ir, rules
from .errors import NotInvertibleError, UnsupportedError
from .lift import SIDE_EFFECT_BUILTINS, SIDE_EFFECT_HINT, lift, lift_code

_INVERTING: set = set()  # user functions whose inverse is being built (recursion guard)

# --------------------------------------------------------------------------- plans


@dataclass
class Site:
    """One place that writes the tape. `kind` is 'bit', 'count' or 'stash'."""
    index: int
    kind: str
    line: int
    text: str  # why it is needed, for people
    # Written only when a run-time check fails (a zero factor, a value whose type or shape
    # the inverse would not give back), or, for a branch's bit on restored values
    # (IfPlan.approximate), where the argument types do not show integers.
    conditional: bool = False
    # A bit site written into a bitmap, one byte per iteration of the enclosing `for` loop,
    # that is appended once the loop ends (see Analyzer.bitmap_branches).
    bitmap: bool = False
    # A count site of a run-time check (AssignPlan.checks): the executions, numbered from
    # 1, at which the check failed, then the number of executions; empty when none failed.
    failures: bool = False


@dataclass
class AssignPlan:
    """Undo of a parallel assignment `targets = elements` (a single `x = e` has one of
    each; `return e` assigns the result variables).

    `recover` lists `(var, expr)` in order: the old value of `var` is `expr`, evaluated in
    the backward run where names refer to values after the statement and `("$old", v)`
    leaves (ir.Name('\\0v')) to already recovered old values. `guarded` maps a recovered
    var to the guard expressions that must be nonzero for its inverse to hold, and to the
    site that stashes it when one is zero. `stash` are variables stashed outright.

    `checks` maps each recovered var to (the target it is recovered from, the element's
    indices when the target is a tuple display, a failures site, a stash site): an
    inverse gives back a value of the target's type and shape, so `b = a * y` undone by
    `y = b / a` would turn a number y into an array when a is one. Unless the argument
    types prove that the old value and the target's new one are of one type (two Python
    floats), the forward run checks that they are (and that the guards hold); where not,
    it notes which execution failed and stashes the old value. The tape stays empty
    while every check passes."""
    stash: list = field(default_factory=list)
    stash_site: Site | None = None
    recover: list = field(default_factory=list)
    guards: dict = field(default_factory=dict)  # var -> (list[Expr] guards, Site)
    # var -> (target, indices of the element in the target's tuple, failures Site, stash Site)
    checks: dict = field(default_factory=dict)
    # Recovered vars whose new value is a product or quotient of the old one (`x = x * c`,
    # `x = c / x`): a float product that underflows to zero or a subnormal, or overflows,
    # has lost the old value, so for floats the check runs whatever the types, and also
    # fails there (codegen.scaled_back). Arrays are not checked (README: Known limits).
    scaled: set = field(default_factory=set)
    # Recovered vars whose inverse selects by a value restored by an inverse: var ->
    # (those values' variables, the site stashing the old value; see _Approximate).
    approximate: dict = field(default_factory=dict)
    how: str = ""


@dataclass
class AugPlan:
    """Undo of `target op= value`: in place by the inverse operator, or from a stash."""
    inverse_op: str | None  # e.g. '-' for '+='; None when stashed
    guard: ir.Expr | None = None  # must be nonzero for the inverse (stash site when not)
    guard_site: Site | None = None
    # (failures Site, stash Site) for a variable target: `x += a` rebinds a number x to an
    # array when a is one; checked as AssignPlan.checks.
    check: tuple | None = None
    scaled: bool = False  # `x *= c`, `x /= c`: see AssignPlan.scaled
    approximate: tuple | None = None  # as AssignPlan.approximate, for the target
    stash_site: Site | None = None  # stashes a copy of the old target value
    dying: list = field(default_factory=list)  # variables read by value that die here
    dying_site: Site | None = None
    revive_site: Site | None = None  # keeps the changed object when nothing else does
    # Variables the value reads that may be elements of the target (`t = a[0]`, a row of
    # a 2-D a): the forward run checks that they do not overlap what it changes.
    check_value: list = field(default_factory=list)
    check_index: list = field(default_factory=list)  # the same for the index's reads
    how: str = ""


@dataclass
class StoreItemPlan:
    """Undo of `a[i] = v`: the old `a[i]` (and variables dying here) come from the tape."""
    stash_site: Site
    dying: list = field(default_factory=list)
    dying_site: Site | None = None
    revive_site: Site | None = None  # keeps the changed object when nothing else does
    check_index: list = field(default_factory=list)  # see AugPlan
    how: str = ""


@dataclass
class IfPlan:
    bit_site: Site | None  # None: the condition is re-evaluated in the backward run
    # Set when the bit is there only because the condition reads these variables, which
    # the backward run restores by inverses, approximately for floats (see _Approximate):
    # where the types show them to be integers, the condition is re-evaluated after all.
    approximate: list = field(default_factory=list)
    keep_body: list = field(default_factory=list)  # stashed on entry to the `if` arm
    keep_orelse: list = field(default_factory=list)
    keep_body_site: Site | None = None
    keep_orelse_site: Site | None = None
    how: str = ""


@dataclass
class LoopPlan:
    """Plan for `For` and `While`.

    For a `for` loop `iterable` says how the backward run gets the sequence back:
    'recompute' (re-evaluate the iterable expression), 'entry' (keep what it evaluated
    to) or 'element' (keep each element); `count_site` is set when the trip count is
    recorded; `approximate` (as AugPlan's) where a recomputed iterable selects by a value
    restored by an inverse (`range(int(x))`): for floats it is kept as in 'entry'. `keep_iter` variables are stashed at the top of every
    iteration, `keep_exit` once after the loop, `keep_entry` once before it."""
    count_site: Site | None = None
    iterable: str = "recompute"
    iterable_site: Site | None = None
    keep_iter: list = field(default_factory=list)
    keep_iter_site: Site | None = None
    keep_exit: list = field(default_factory=list)
    keep_exit_site: Site | None = None
    keep_entry: list = field(default_factory=list)
    keep_entry_site: Site | None = None
    bitmaps: list = field(default_factory=list)  # `if`s whose bits go to a bitmap
    approximate: tuple | None = None
    how: str = ""


@dataclass
class Analysis:
    function: ir.Function
    body: list  # normal-form body the plans refer to
    plans: dict  # id(stmt) -> plan
    sites: list  # list[Site]
    results: tuple  # names of the result variables ("$result" or "$r0".."$rk-1")
    held: tuple  # parameters the backward run gets back from the tape / caller
    params: tuple
    needed_at_entry: set
    entry_keep: list
    entry_site: Site | None
    context: "Context"

    def plan(self, stmt):
        return self.plans[id(stmt)]

    def reasons(self):
        """(line, text) for every tape site: why the function is not invertible."""
        return [(s.line, s.text) for s in self.sites]


# --------------------------------------------------------------------------- normal form


def _may_exit(stmts) -> bool:
    """Whether `stmts` can leave by break/continue (of the current loop) or return."""
    for s in stmts:
        if isinstance(s, (ir.Break, ir.Continue, ir.Return)):
            return True
        if isinstance(s, ir.If) and (_may_exit(s.body) or _may_exit(s.orelse)):
            return True
        if isinstance(s, (ir.For, ir.While)) and _contains_return(s.body):
            return True
    return False


def _contains_return(stmts) -> bool:
    for s in stmts:
        if isinstance(s, ir.Return):
            return True
        if isinstance(s, ir.If) and (_contains_return(s.body) or _contains_return(s.orelse)):
            return True
        if isinstance(s, (ir.For, ir.While)) and _contains_return(s.body):
            return True
    return False


class _Normalizer:
    """Rewrites a body so that `return` and `break` only end a statement list and
    `continue` disappears: code after an `if` that may leave is moved into its arms.
    A `return` inside a loop becomes `$retN = True; break` plus, after each enclosing
    loop, `if $retN: break` / `if $retN: return e` (the state is unchanged between the
    `break` and the re-evaluation of `e`, so `e` means the same)."""

    def __init__(self):
        self.flags = []
        self.renamed = 0

    def function_body(self, body):
        body = self._lift_returns(body, depth=0)
        inits = [ir.Assign(ir.Name(f), ir.Const(False), line) for f, line in self.flags]
        return inits + self._tails(body)

    def _lift_returns(self, stmts, depth):
        out = []
        for s in stmts:
            if isinstance(s, ir.Return) and depth > 0:
                flag = f"$ret{len(self.flags)}"
                self.flags.append((flag, s.line))
                self._pending[-1].append((flag, s))
                out += [ir.Assign(ir.Name(flag), ir.Const(True), s.line), ir.Break(s.line)]
            elif isinstance(s, ir.If):
                out.append(ir.If(s.test, self._lift_returns(s.body, depth),
                                 self._lift_returns(s.orelse, depth), s.line))
            elif isinstance(s, (ir.For, ir.While)):
                if not hasattr(self, "_pending"):
                    self._pending = []
                self._pending.append([])
                body = self._lift_returns(s.body, depth + 1)
                loop = (ir.For(s.target, s.iter, body, s.line) if isinstance(s, ir.For)
                        else ir.While(s.test, body, s.line))
                out.append(loop)
                for flag, ret in self._pending.pop():
                    if depth > 0:  # still inside a loop: leave that one too
                        self._pending[-1].append((flag, ret))
                        out.append(ir.If(ir.Name(flag), [ir.Break(ret.line)], [], ret.line))
                    else:
                        out.append(ir.If(ir.Name(flag), [ir.Return(ret.value, ret.line)], [],
                                         ret.line))
            else:
                out.append(s)
        return out

    def _fixed_target(self, loop):
        """The backward run sets a `for` target from the sequence before undoing each
        iteration, so the body must not rebind it: `for t in s: t = ...` becomes
        `for $tgtN in s: t = $tgtN; t = ...`."""
        rebound = ir.target_names(loop.target) & assigned(loop.body)
        renames = {}

        def rename(t):
            if isinstance(t, ir.Name) and t.id in rebound:
                self.renamed += 1
                renames[t.id] = f"$tgt{self.renamed}_{t.id}"
                return ir.Name(renames[t.id])
            if isinstance(t, ir.Tuple):
                return ir.Tuple(tuple(rename(e) for e in t.elts))
            return t

        target = rename(loop.target)
        copies = [ir.Assign(ir.Name(v), ir.Name(tmp), loop.line) for v, tmp in renames.items()]
        return target, copies

    def _tails(self, stmts):
        out = []
        for i, s in enumerate(stmts):
            if isinstance(s, ir.Continue):
                return out  # at the end of an iteration, `continue` does nothing
            if isinstance(s, (ir.Break, ir.Return)):
                out.append(s)
                return out
            if isinstance(s, ir.If) and (_may_exit(s.body) or _may_exit(s.orelse)):
                rest = stmts[i + 1:]
                out.append(ir.If(s.test, self._tails(s.body + copy.deepcopy(rest)),
                                 self._tails(s.orelse + copy.deepcopy(rest)), s.line))
                return out
            if isinstance(s, ir.If):
                s = ir.If(s.test, self._tails(s.body), self._tails(s.orelse), s.line)
            elif isinstance(s, ir.For):
                target, copies = self._fixed_target(s)
                s = ir.For(target, s.iter, copies + self._tails(s.body), s.line)
            elif isinstance(s, ir.While):
                s = ir.While(s.test, self._tails(s.body), s.line)
            out.append(s)
        return out


def normal_form(fn: ir.Function) -> list:
    return _Normalizer().function_body(copy.deepcopy(fn.body))


# --------------------------------------------------------------------------- effects


def _nested_definitions(stmts) -> dict:
    """The locals bound by a nested `def` or `lambda` and by nothing else, once: name ->
    its MakeFunction."""
    made, bindings = {}, {}

    def visit(stmts):
        for s in stmts:
            names = set()
            if isinstance(s, ir.Assign):
                names = ir.target_names(s.target)
                if isinstance(s.target, ir.Name) and isinstance(s.value, ir.MakeFunction):
                    made[s.target.id] = s.value
            elif isinstance(s, ir.AugAssign) and isinstance(s.target, ir.Name):
                names = {s.target.id}
            elif isinstance(s, ir.For):
                names = ir.target_names(s.target)
            for n in names:
                bindings[n] = bindings.get(n, 0) + 1
            for attr in ("body", "orelse"):
                visit(getattr(s, attr, []))

    visit(stmts)
    return {n: mf for n, mf in made.items() if bindings[n] == 1}


def assigned(stmts) -> set:
    """Local variables (re)bound anywhere in `stmts`."""
    out = set()
    for s in stmts:
        if isinstance(s, ir.Assign):
            out |= ir.target_names(s.target)
        elif isinstance(s, ir.AugAssign) and isinstance(s.target, ir.Name):
            out.add(s.target.id)
        elif isinstance(s, ir.If):
            out |= assigned(s.body) | assigned(s.orelse)
        elif isinstance(s, ir.For):
            out |= ir.target_names(s.target) | assigned(s.body)
        elif isinstance(s, ir.While):
            out |= assigned(s.body)
    return out


def _base_name(e):
    while isinstance(e, (ir.Subscript, ir.Attribute)):
        e = e.value
    return e.id if isinstance(e, ir.Name) else None


def mutated(stmts) -> set:
    """Local variables whose objects `stmts` may change in place (`a[i] = v`,
    `a[i] += v`, `a += v` on an array)."""
    out = set()
    for s in stmts:
        if isinstance(s, (ir.Assign, ir.AugAssign)):
            targets = s.target.elts if isinstance(s.target, ir.Tuple) else (s.target,)
            for t in targets:
                if isinstance(t, ir.Subscript) or isinstance(s, ir.AugAssign):
                    name = _base_name(t)
                    if name:
                        out.add(name)
        elif isinstance(s, ir.If):
            out |= mutated(s.body) | mutated(s.orelse)
        elif isinstance(s, (ir.For, ir.While)):
            out |= mutated(s.body)
    return out


def _loop_has_break(stmts) -> bool:
    for s in stmts:
        if isinstance(s, ir.Break):
            return True
        if isinstance(s, ir.If) and (_loop_has_break(s.body) or _loop_has_break(s.orelse)):
            return True
    return False


# --------------------------------------------------------------------------- calls

PURE_BUILTINS = {
    "abs", "all", "any", "bool", "complex", "divmod", "enumerate", "float", "int", "isinstance",
    "len", "list", "max", "min", "pow", "range", "reversed", "round", "sorted", "sum", "tuple",
    "zip", "dict", "str", "hash", "type", "slice", "map", "filter", "issubclass", "callable",
    "chr", "ord", "bin", "hex", "oct", "format", "repr", "id", "frozenset", "set", "getattr",
    "hasattr",
}
PURE_MODULES = ("numpy", "math", "cmath", "scipy", "operator", "bytrev", "cupy", "cupyx")
IMPURE_MODULES = ("numpy.random", "cupy.random", "random", "time", "os", "sys", "secrets",
                  "uuid")
# Functions (NumPy's, mostly) that write into an argument.
MUTATING_FUNCTIONS = {"shuffle", "copyto", "put", "place", "putmask", "fill_diagonal",
                      "put_along_axis", "setitem", "iadd", "isub", "imul", "itruediv"}
MUTATING_METHODS = {
    "append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault", "popitem",
    "sort", "reverse", "fill", "put", "itemset", "resize", "partition", "setfield",
    "setflags", "add", "discard", "__setitem__", "__delitem__", "__iadd__", "__isub__",
    "__imul__", "__itruediv__",
}


def _module_of(obj) -> str:
    mod = getattr(obj, "__module__", None)
    if mod is None and isinstance(obj, types.ModuleType):
        mod = obj.__name__
    if mod is None:
        mod = getattr(type(obj), "__module__", "") or ""
    return mod


class Refused(Exception):
    """A callable bytrev cannot run: (construct, hint) for an UnsupportedError."""

    def __init__(self, construct, hint):
        super().__init__(construct)
        self.construct, self.hint = construct, hint


def is_random_generator(obj) -> bool:
    """An object whose methods draw random numbers (numpy's Generator and RandomState,
    `random.Random`, CuPy's generators)."""
    return obj is not None and not isinstance(obj, types.ModuleType) \
        and type(obj).__module__.startswith(IMPURE_MODULES)


def callable_kind(obj) -> str:
    """How bytrev treats calls of `obj`: "user" (a Python function it lifts), "impure"
    (a random draw, the clock: never re-run), or "pure"; raises Refused for a side-effect
    builtin or a function that changes its argument in place."""
    name = getattr(obj, "__name__", "")
    if name in SIDE_EFFECT_BUILTINS and getattr(builtins, name, None) is obj:
        # also `print` under another name: the lifter refuses it by name only
        raise Refused(f"call to {name} (a side effect)", SIDE_EFFECT_HINT)
    if isinstance(obj, types.FunctionType) and not _module_of(obj).startswith(PURE_MODULES) \
            and rules.vjp_rule(obj) is None:  # with a rule it is a primitive: not lifted
        return "user"
    owner = getattr(obj, "__self__", None)  # a bound method's object (not a module)
    if name in MUTATING_FUNCTIONS or (name in MUTATING_METHODS and owner is not None
                                      and not isinstance(owner, types.ModuleType)):
        raise Refused(f"a call to {name} (it changes its argument in place)",
                      "build a new value instead, or call it outside the function")
    mod = _module_of(obj)
    if mod.startswith(IMPURE_MODULES) or mod == "numpy.random.mtrand":
        return "impure"
    return "pure"


class CallInfo:
    """What bytrev knows about a callable expression: 'pure', 'impure' or 'user'."""

    def __init__(self, kind, obj=None):
        self.kind = kind
        self.obj = obj


# --------------------------------------------------------------------------- dependencies
#
# A compiled form decides from what f's names held when it was compiled: `helper` was a
# pure function with an inverse, `np.sin` a primitive. A notebook that runs `def helper`
# again rebinds the name; the compiled form must then be compiled again, or its backward
# run would undo the old helper. Every name Context.resolve reads is noted in the log of
# each compile in progress, with the object it held; `unchanged(log)` tells whether they
# all hold the same objects still.

class _Logs(threading.local):
    stack: list  # the dependency logs of this thread's compiles in progress, innermost last

    def __init__(self):
        self.stack = []


_LOGS = _Logs()


@contextlib.contextmanager
def recording_dependencies():
    """Collect the names resolved inside the block (a dict: key -> (source, object)); a
    compile nested in another is one of its dependencies, so its log joins the outer."""
    log = {}
    _LOGS.stack.append(log)
    try:
        yield log
    finally:
        _LOGS.stack.pop()
        note_dependencies(log)


def note_dependencies(log):
    """Count a cached compiled form's dependencies in the compile in progress."""
    if _LOGS.stack:
        _LOGS.stack[-1].update(log)


def _note(source, obj):
    if _LOGS.stack:
        _LOGS.stack[-1][(source[0], id(source[1]), source[2:])] = (source, obj)
    return obj


def _current(source):
    kind, where = source[0], source[1]
    if kind == "global":
        name = source[2]
        return where[name] if name in where else getattr(builtins, name, None)
    if kind == "cell":
        try:
            return where.cell_contents
        except ValueError:
            return None
    return getattr(where, source[2], None)  # "attr" of a module


def unchanged(log) -> bool:
    """Whether every name in the log holds what it held: the same object for callables
    and modules (what compiling decided from), a value of the same type otherwise."""
    for source, obj in log.values():
        now = _current(source)
        if now is not obj and (callable(obj) or isinstance(obj, types.ModuleType)
                               or type(now) is not type(obj)):
            return False
    return True


def cached_per_function(build, size=1024):
    """`build(f)`, cached per function and built again where a name it resolved now
    holds something else (unchanged); the built object keeps its log as `dependencies`."""
    cache = collections.OrderedDict()

    def get(f):
        hit = cache.get(f)
        if hit is not None and unchanged(hit.dependencies):
            cache.move_to_end(f)
            note_dependencies(hit.dependencies)
            return hit
        with recording_dependencies() as log:
            hit = build(f)
        hit.dependencies = log
        cache[f] = hit
        if len(cache) > size:
            cache.popitem(last=False)
        return hit

    get.cache_clear = cache.clear
    return get


class Context:
    """Static facts about the function being analysed: how to resolve globals and
    closure cells, and where to report errors."""

    def __init__(self, fn: ir.Function, pyfunc=None, globals_=None):
        self.fn = fn
        self.globals = getattr(pyfunc, "__globals__", {}) if globals_ is None else globals_
        closure = getattr(pyfunc, "__closure__", None) or ()
        self.cells = dict(zip(fn.freevars, closure))
        self.nested = _nested_definitions(fn.body)
        self._drawn = None  # drawn_locals, computed when first asked

    def error(self, construct, line, hint=""):
        return UnsupportedError(construct, function=self.fn.qualname, filename=self.fn.filename,
                                line=line, hint=hint)

    def resolve(self, e):
        """The object a callee expression denotes, when it is fixed by globals,
        closure cells or constants; `None` otherwise."""
        if isinstance(e, ir.Const):
            return e.value
        if isinstance(e, ir.Global):
            source = ("global", self.globals, e.id)
            return _note(source, _current(source))
        if isinstance(e, ir.FreeVar):
            cell = self.cells.get(e.id)
            return None if cell is None else _note(("cell", cell), _current(("cell", cell)))
        if isinstance(e, ir.Attribute):
            base = self.resolve(e.value)
            if isinstance(base, types.ModuleType):
                return _note(("attr", base, e.attr), getattr(base, e.attr, None))
        return None

    def classify_call(self, call: ir.Call, line: int) -> CallInfo:
        line = call.line or line  # the call's own line, where the lifter knew it
        for name, _ in call.kwargs:
            if name == "out":
                raise self.error("a call with out= (it writes into an existing array)", line,
                                 "assign the result instead: y = f(x)")
        if isinstance(call.func, ir.Attribute) and self.resolve(call.func) is None:
            method = call.func.attr
            if method in MUTATING_METHODS:
                raise self.error(f"method call .{method}() (it changes its object in place)",
                                 line, "build a new value instead, or call it outside the function")
            # A random generator's methods draw (`rng.normal()`): one held by a global or
            # a cell is seen here, one made in f by a call that draws is assumed one (a
            # parameter's argument is checked when the run starts, codegen).
            receiver = call.func.value
            if is_random_generator(self.resolve(receiver)) or isinstance(receiver, ir.Name) \
                    and receiver.id.lstrip("\0") in self.drawn_locals():
                return CallInfo("impure")
            return CallInfo("pure")
        if isinstance(call.func, ir.Name) and call.func.id.lstrip("\0") in self.nested:
            return self.classify_nested(call.func.id.lstrip("\0"), line)  # ("\0": old value)
        obj = self.resolve(call.func)
        if obj is None:
            # A local holding a callable: assumed pure; a parameter's argument is checked
            # when the run starts (codegen.checked_parameter_callable).
            return CallInfo("pure")
        try:
            return CallInfo(callable_kind(obj), obj)
        except Refused as refused:
            raise self.error(refused.construct, line, refused.hint) from None

    def drawn_locals(self) -> set:
        """Locals f binds to what an impure call returns (`rng = np.random.default_rng()`)."""
        if self._drawn is None:
            self._drawn = set()
            for st, e in _all_exprs(self.fn.body):
                if isinstance(st, ir.Assign) and st.value is e and isinstance(e, ir.Call) \
                        and isinstance(st.target, ir.Name) \
                        and self.classify_call(e, st.line).kind == "impure":
                    self._drawn.add(st.target.id)
        return self._drawn

    def classify_nested(self, name, line) -> CallInfo:
        """A call of a function defined in f (`def g(u): ...`, bound once): judged from
        its code, with f's globals; calls through the variables it captures are assumed
        pure, as for locals. One bytrev cannot lift runs as it is, taken as pure."""
        try:
            fn = lift_code(self.nested[name].code, self.globals)
        except UnsupportedError:
            return CallInfo("pure")
        stores, _, pure = _effects(fn, Context(fn, globals_=self.globals))
        if stores:
            raise self.error(f"call to {name}, which changes its arguments in place", line,
                             "bytrev does not yet undo mutations made inside called "
                             "functions; inline the update into this function")
        return CallInfo("pure" if pure else "impure")

    def is_pure(self, e, line) -> bool:
        """Whether re-evaluating `e` in the backward run gives the same value."""
        for sub in ir.walk(e):
            if isinstance(sub, ir.Call):
                info = self.classify_call(sub, line)
                if info.kind == "impure":
                    return False
                if info.kind == "user" and not user_function_is_pure(info.obj):
                    return False
            if isinstance(sub, ir.ListComp):
                for loop in sub.loops:
                    if not all(self.is_pure(c, line) for c in loop.conds) or not self.is_pure(
                            loop.iter, line):
                        return False
                if not self.is_pure(sub.elt, line):
                    return False
        return True


_EFFECTS: dict = {}  # (code, ids of globals and cells) -> (verdict, dependency log, scope)


def user_function_effects(func):
    """`(stores, updates, pure)` for a user function: whether it stores into items of
    its parameters (`a[i] = v`: a definite in-place change), whether it applies
    augmented assignments to them (`x += v`: in place only when x is an array), and
    whether it calls only pure callables. Recursion is assumed effect-free while it is
    being checked."""
    # One code runs with other globals and cells in another function object (closures of
    # one factory): the verdict is per code, globals and cells, which the entry keeps
    # alive so that their ids stay theirs.
    scope = (func.__globals__, func.__closure__ or ())
    key = (func.__code__, id(scope[0]), tuple(map(id, scope[1])))
    if key in _EFFECTS and unchanged(_EFFECTS[key][1]):
        note_dependencies(_EFFECTS[key][1])
        return _EFFECTS[key][0]
    _EFFECTS[key] = ((False, False, True), {}, scope)
    try:
        fn = lift(func)
    except BaseException:
        del _EFFECTS[key]  # not a verdict: the next caller must meet the same error
        raise
    with recording_dependencies() as log:
        verdict = _effects(fn, Context(fn, func))
    _EFFECTS[key] = (verdict, log, scope)
    return verdict


def _effects(fn: ir.Function, cx: Context):
    """(stores, updates, pure) of a lifted function (see user_function_effects)."""
    params = set(fn.params + fn.kwonly)
    stores = bool(_item_stores(fn.body) & params)
    updates = bool(mutated(fn.body) & params)
    pure = all(cx.is_pure(e, getattr(stmt, "line", 0)) for stmt, e in _all_exprs(fn.body))
    return stores, updates, pure


def user_function_is_pure(func) -> bool:
    stores, updates, pure = user_function_effects(func)
    return pure and not stores and not updates


def _item_stores(stmts) -> set:
    out = set()
    for s in stmts:
        if isinstance(s, (ir.Assign, ir.AugAssign)) and isinstance(s.target, ir.Subscript):
            out.add(_base_name(s.target))
        for attr in ("body", "orelse"):
            out |= _item_stores(getattr(s, attr, []))
    return out


def _calls(e):
    """Every call `e` makes, also those in a list comprehension's element, conditions and
    inner iterables (which `ir.walk` leaves out: they run in the comprehension's scope)."""
    for sub in ir.walk(e):
        if isinstance(sub, ir.Call):
            yield sub
        elif isinstance(sub, ir.ListComp):
            for part in (*(loop.iter for loop in sub.loops[1:]),
                         *(cond for loop in sub.loops for cond in loop.conds), sub.elt):
                yield from _calls(part)


def _all_exprs(stmts):
    for s in stmts:
        for attr in ("value", "test", "iter"):
            e = getattr(s, attr, None)
            if e is not None and not isinstance(e, list):
                yield s, e
        if isinstance(s, (ir.Assign, ir.AugAssign)) and not isinstance(s.target, ir.Name):
            yield s, s.target
        for attr in ("body", "orelse"):
            yield from _all_exprs(getattr(s, attr, []))


# --------------------------------------------------------------------------- inversion

INVERSE_OP = {"+": "-", "-": "+", "*": "/", "/": "*", "^": "^"}


def old(name: str) -> ir.Name:
    """Marks a leaf as 'the old value of `name`' in a recovery expression."""
    return ir.Name("\0" + name)


def occurrences(e, name) -> int:
    return sum(1 for sub in ir.walk(e) if isinstance(sub, ir.Name) and sub.id == name)


def invert(e, name, acc, guards, user_inverse=lambda call: None):
    """Given that expression `e` evaluated to `acc`, an expression for the value of the
    variable `name` (which occurs exactly once in `e`), or None when no inverse step
    exists. Appends to `guards` the expressions that must be nonzero. `user_inverse(call)`
    gives the inverse of a called user function whose first argument holds `name`."""
    def go(sub, sub_acc):
        return invert(sub, name, sub_acc, guards, user_inverse)

    if isinstance(e, ir.Name):
        return acc if e.id == name else None
    if isinstance(e, ir.UnaryOp) and e.op in ("-", "+", "~"):
        return go(e.operand, ir.UnaryOp(e.op, acc) if e.op != "+" else acc)
    if isinstance(e, (ir.Tuple, ir.List)):
        for i, elt in enumerate(e.elts):
            if occurrences(elt, name):
                return go(elt, ir.Subscript(acc, ir.Const(i)))
        return None
    if isinstance(e, ir.Call):
        if not e.args or occurrences(e.args[0], name) != 1 or occurrences(e.func, name):
            return None
        g_inverse = user_inverse(e)
        if g_inverse is None:
            return None
        return go(e.args[0], ir.Call(ir.Const(g_inverse), (acc, *e.args[1:])))
    if isinstance(e, ir.BinOp) and e.op in ("+", "-", "*", "/", "^"):
        in_left = occurrences(e.left, name) > 0
        this, other = (e.left, e.right) if in_left else (e.right, e.left)
        if e.op == "+":
            return go(this, ir.BinOp("-", acc, other))
        if e.op == "^":
            return go(this, ir.BinOp("^", acc, other))
        if e.op == "-":
            return go(this, ir.BinOp("+", acc, other) if in_left else ir.BinOp("-", other, acc))
        if e.op == "*":
            guards.append(other)
            if isinstance(other, ir.Const) and type(other.value) is float:
                return go(this, ir.BinOp("/", acc, other))
            return go(this, ir.Call(ir.Const(exact_divide), (acc, other)))
        if e.op == "/":
            guards.append(other)  # d / other: d = acc * other; other / d: d = other / acc
            return go(this, ir.BinOp("*", acc, other) if in_left else ir.BinOp("/", other, acc))
    return None


# Functions whose value jumps where the argument crosses a threshold.
_STEPS = (int, round, bool, math.floor, math.ceil, math.trunc, np.floor, np.ceil, np.rint,
          np.round, np.trunc, np.sign, np.fix)


def _selecting_reads(e, resolve) -> set:
    """The variables `e` reads through a selection, where one ulp can change the value
    by a step: a comparison, a condition, `and`/`or`/`not`, `%` and `//`, int(),
    round(), floor(), ... (names of old values keep their "\0" mark)."""
    out = set()
    for sub in ir.walk(e):
        if isinstance(sub, (ir.Compare, ir.BoolOp)) or isinstance(sub, ir.UnaryOp) and \
                sub.op == "not" or isinstance(sub, ir.BinOp) and sub.op in ("%", "//"):
            out |= ir.names_read(sub)
        elif isinstance(sub, ir.IfExp):
            out |= ir.names_read(sub.test)
        elif isinstance(sub, ir.Call) and any(resolve(sub.func) is f for f in _STEPS):
            out |= ir.names_read(sub)
    return out


def _scales(e, var) -> bool:
    """Whether `e` is (up to sign) a product or quotient with a factor that reads `var`."""
    while isinstance(e, ir.UnaryOp) and e.op in ("-", "+"):
        e = e.operand
    return isinstance(e, ir.BinOp) and e.op in ("*", "/") and var in ir.names_read(e)


def _display_path(e, var):
    """(the indices leading through tuple and list displays in `e` to the element that
    reads `var`, that element): `(x * 2, y)` gives ((0,), x * 2) for x."""
    path = []
    while isinstance(e, (ir.Tuple, ir.List)):
        i = next(i for i, x in enumerate(e.elts) if occurrences(x, var))
        path.append(i)
        e = e.elts[i]
    return tuple(path), e


def exact_divide(y, c):
    """Undo `x * c`: floor division when both are integers (Python, NumPy scalars or
    integer arrays), so integer programs come back exactly; true division otherwise."""
    return y // c if _integral(y) and _integral(c) else y / c


def _integral(v) -> bool:
    if isinstance(v, (int, np.integer)):
        return True
    dtype = getattr(v, "dtype", None)
    return dtype is not None and dtype.kind in "iub"


def _known_nonzero(e) -> bool:
    if isinstance(e, ir.Const):
        try:
            return bool(e.value != 0) and not (isinstance(e.value, float) and math.isnan(e.value))
        except Exception:
            return False
    if isinstance(e, ir.UnaryOp) and e.op in ("-", "+"):
        return _known_nonzero(e.operand)
    return False


def _substitute_old(e, names):
    """Replace leaves that read variables in `names` by their recovered old values
    (None when a comprehension reads one: it cannot be rewritten)."""
    if any(isinstance(sub, ir.ListComp) and ir.names_read(sub) & names for sub in ir.walk(e)):
        return None
    return ir.map_expr(e, lambda x: old(x.id) if isinstance(x, ir.Name) and x.id in names else x)


# --------------------------------------------------------------------------- aliasing

# Calls whose result may share memory with their (first) argument.
VIEW_METHODS = {"reshape", "ravel", "view", "transpose", "squeeze", "swapaxes", "diagonal",
                "conj", "conjugate", "astype", "__array__", "item"}
VIEW_FUNCTIONS = {"reshape", "ravel", "transpose", "squeeze", "swapaxes", "asarray",
                  "asanyarray", "ascontiguousarray", "asfortranarray", "require",
                  "expand_dims", "broadcast_to", "atleast_1d", "atleast_2d", "atleast_3d",
                  "diagonal", "moveaxis", "rollaxis", "flip", "fliplr", "flipud", "rot90",
                  "real", "imag", "broadcast_arrays", "split", "array_split", "hsplit",
                  "vsplit", "dsplit", "matrix_transpose", "permute_dims", "conj",
                  "conjugate"}


def _whole_slice(index) -> bool:
    """Whether an index may select more than one element (a slice, an array, a tuple
    with one): then `a[index]` is a view, not an element."""
    if isinstance(index, ir.Const):
        return not isinstance(index.value, (int, np.integer))
    if isinstance(index, ir.Tuple):
        return any(_whole_slice(i) for i in index.elts)
    return isinstance(index, ir.Slice) or not isinstance(index, (ir.Name, ir.BinOp,
                                                                  ir.UnaryOp, ir.Call))


class _Aliases:
    """Which in-place updates read a value that may share memory with what they change.

    A forward pass over the normal-form body tracks, per local variable, the abstract
    objects it may refer to or share memory with: a parameter's object, an object made
    by a statement, or an element of one (`t = a[i]`, `for t in a`: a number for a 1-D
    array, a view of a row otherwise). Copies and views (`b = a`, `a[1:]`, `a.T`,
    `a.reshape(...)`, and calls of user functions, which may return an argument) pass
    objects on; arithmetic and library calls make new ones.

    `verdicts` maps id(AugAssign) to ('stash', names) when the update reads a possible
    alias of its target (undoing `a += b` by `a -= b` would read the changed b), or to
    ('check', names) when those names may only be elements of it (checked at run time),
    and id(statement) to ('index', names) when the target's index reads the array it
    changes (which the backward run could no longer find)."""

    def __init__(self, cx, params):
        self.cx = cx
        self.verdicts = {}
        self.state = {p: frozenset({("param", p)}) for p in params}

    def objects(self, e, state, sid):
        """Abstract objects the value of `e` may be or share memory with."""
        if isinstance(e, ir.Name):
            return state.get(e.id, frozenset())
        if isinstance(e, ir.Subscript):
            inner = self.objects(e.value, state, sid)
            if _whole_slice(e.index):
                return inner
            return _elements(inner)
        if isinstance(e, ir.Attribute):
            return self.objects(e.value, state, sid)
        if isinstance(e, (ir.Tuple, ir.List)):
            out = frozenset({("new", sid)})
            for x in e.elts:
                out |= self.objects(x, state, sid)
            return out
        if isinstance(e, ir.Dict):
            out = frozenset({("new", sid)})
            for x in e.values:
                out |= self.objects(x, state, sid)
            return out
        if isinstance(e, ir.IfExp):
            return self.objects(e.body, state, sid) | self.objects(e.orelse, state, sid)
        if isinstance(e, ir.BoolOp):
            out = frozenset()
            for x in e.values:
                out |= self.objects(x, state, sid)
            return out
        if isinstance(e, ir.Call):
            func = e.func
            if isinstance(func, ir.Attribute) and self.cx.resolve(func) is None:
                if func.attr in VIEW_METHODS:
                    return self.objects(func.value, state, sid) | {("new", sid)}
                return frozenset({("new", sid)})
            obj = self.cx.resolve(func)
            if obj is not None and _module_of(obj).startswith(PURE_MODULES + IMPURE_MODULES) \
                    and getattr(obj, "__name__", "") not in VIEW_FUNCTIONS \
                    or obj in (len, abs, float, int, bool, sum, range, enumerate, zip,
                               sorted, reversed, list, tuple, round, isinstance, divmod):
                if obj in (list, tuple, sorted, reversed, enumerate, zip):  # of the elements
                    out = frozenset({("new", sid)})
                    for a in e.args:
                        out |= _elements(self.objects(a, state, sid))
                    return out
                return frozenset({("new", sid)})
            out = frozenset({("new", sid)})  # a view function, a user function, unknown
            for a in (*e.args, *(v for _, v in e.kwargs)):
                out |= self.objects(a, state, sid)
            return out
        return frozenset({("new", sid)})

    @staticmethod
    def overlap(xs, ys):
        """'alias' when two object sets share an object, 'element' when they may only
        through elements (t = a[0]: a number, or a row of a 2-D a), else None."""
        if xs & ys:
            return "alias"
        strip = lambda s: {o[1] if o[0] == "elem" else o for o in s}
        return "element" if strip(xs) & strip(ys) else None

    def run(self, body):
        self.block(body, self.state)
        return self.verdicts

    def block(self, stmts, state):
        for s in stmts:
            state = self.stmt(s, state)
        return state

    def join(self, *states):
        out = {}
        for st in states:
            for k, v in st.items():
                out[k] = out.get(k, frozenset()) | v
        return out

    def stmt(self, s, state):
        sid = id(s)
        if isinstance(s, (ir.Assign, ir.AugAssign)) and isinstance(s.target, ir.Subscript) \
                or isinstance(s, ir.AugAssign):
            self.check_update(s, state)
            base = _base_name(s.target)
            if base is not None and (isinstance(s.target, ir.Subscript)
                                     or isinstance(s, ir.AugAssign)):
                state = dict(state)  # a list may now hold the value (an array copies it)
                state[base] = state.get(base, frozenset()) | _elements(
                    self.objects(s.value, state, sid))
            return state
        if isinstance(s, (ir.Assign, ir.Return)):
            if isinstance(s, ir.Return):
                return state
            state = dict(state)
            t, v = s.target, s.value
            if isinstance(t, ir.Name):
                state[t.id] = self.objects(v, state, sid)
            elif isinstance(t, ir.Tuple):
                if isinstance(v, (ir.Tuple, ir.List)) and len(v.elts) == len(t.elts):
                    values = [self.objects(x, state, sid) for x in v.elts]
                else:
                    whole = self.objects(v, state, sid)
                    values = [whole | _elements(whole)] * len(t.elts)
                for name, objs in zip(t.elts, values):
                    for n in ir.target_names(name):
                        state[n] = objs
            return state
        if isinstance(s, ir.If):
            return self.join(self.block(s.body, dict(state)), self.block(s.orelse, dict(state)))
        if isinstance(s, (ir.For, ir.While)):
            header = dict(state)
            seen = []
            for _ in range(20):
                st = dict(header)
                if isinstance(s, ir.For):
                    seq = self.objects(s.iter, st, sid)
                    elems = seq | _elements(seq)
                    for n in ir.target_names(s.target):
                        st[n] = elems
                    if isinstance(s.iter, ir.Call) and self.cx.resolve(s.iter.func) is enumerate \
                            and isinstance(s.target, ir.Tuple) \
                            and isinstance(s.target.elts[0], ir.Name):
                        st[s.target.elts[0].id] = set()  # enumerate's counter: a fresh int
                end = self.block_all(s.body, st, seen)
                new = self.join(header, end, *seen)
                if new == header:
                    break
                header = new
            else:
                raise self.cx.error("a loop whose aliasing bytrev cannot follow", s.line)
            return header
        return state

    def block_all(self, stmts, state, seen):
        """Like block, collecting every intermediate state (a `break` can leave the loop
        from any of them)."""
        for s in stmts:
            state = self.stmt(s, state)
            seen.append(state)
        return state

    def check_update(self, s, state):
        base = _base_name(s.target)
        if base is None:
            return
        mine = state.get(base, frozenset())
        verdict = {}
        if isinstance(s.target, ir.Subscript):
            index_reads = _index_names(s.target)
            kinds = {n: self.overlap(state.get(n, frozenset()), mine) if n != base else "alias"
                     for n in sorted(index_reads)}
            alias = [n for n, k in kinds.items() if k == "alias"]
            if alias:
                verdict["index"] = alias
            element = [n for n, k in kinds.items() if k == "element"]
            if element:
                verdict["check_index"] = element
        if isinstance(s, ir.AugAssign):
            reads = _content_names(s.value) - {base}
            kinds = {n: self.overlap(state.get(n, frozenset()), mine) for n in sorted(reads)}
            alias = [n for n, k in kinds.items() if k == "alias"]
            element = [n for n, k in kinds.items() if k == "element"]
            if alias:
                verdict["stash"] = alias
            elif element:
                verdict["check_value"] = element
        if verdict:
            self.verdicts[id(s)] = verdict


def _elements(objects):
    return frozenset(("elem", o[1] if o[0] == "elem" else o) for o in objects)


_SHAPE_ATTRS = {"shape", "ndim", "size", "dtype"}


def _content_names(e) -> set:
    """Variables whose contents `e` reads: `len(a)`, `a.shape` and the like only read
    what an in-place change cannot change."""
    def strip(x):
        if isinstance(x, ir.Attribute) and x.attr in _SHAPE_ATTRS and isinstance(x.value, ir.Name):
            return ir.Const(None)
        if isinstance(x, ir.Call) and len(x.args) == 1 and isinstance(x.args[0], ir.Name) and (
                isinstance(x.func, ir.Global) and x.func.id == "len" or
                isinstance(x.func, ir.Attribute) and x.func.attr in ("shape", "ndim", "size")):
            return ir.Const(None)
        return x
    return ir.names_read(ir.map_expr(e, strip))


def _index_names(target) -> set:
    """Variables whose contents the index expressions of a subscript target read."""
    out = set()
    e = target
    while isinstance(e, (ir.Subscript, ir.Attribute)):
        if isinstance(e, ir.Subscript):
            out |= _content_names(e.index)
        e = e.value
    return out


# --------------------------------------------------------------------------- the analysis


class Analyzer:
    """Computes need sets backwards through the normal-form body and records a plan per
    statement. Loops iterate to a fixpoint; the plans of the last pass stand."""

    def __init__(self, fn: ir.Function, cx: Context):
        self.fn = fn
        self.cx = cx
        self.plans = {}
        self.sites = {}  # key -> Site, stable across fixpoint passes

    def site(self, key, kind, line, text):
        s = self.sites.get(key)
        if s is None:
            s = Site(len(self.sites), kind, line, text)
            self.sites[key] = s
        else:
            s.kind, s.line, s.text, s.bitmap = kind, line, text, False
        return s

    # Each visitor takes the need set after the statement and returns the one before.
    def block(self, stmts, after, loop_need):
        need = set(after)
        for s in reversed(stmts):
            need = self.stmt(s, need, loop_need)
        return need

    def stmt(self, s, after, loop_need):
        if isinstance(s, ir.Assign):
            if isinstance(s.target, ir.Subscript):
                return self.store_item(s, after)
            return self.assign(s, after, s.target, s.value)
        if isinstance(s, ir.Return):
            return self.assign(s, after, self.result_target, self.result_value(s.value))
        if isinstance(s, ir.AugAssign):
            return self.aug_assign(s, after)
        if isinstance(s, ir.ExprStmt):
            self.plans[id(s)] = None  # pure (see refuse): nothing to undo
            return set(after)
        if isinstance(s, ir.If):
            return self.if_(s, after, loop_need)
        if isinstance(s, ir.For):
            return self.for_(s, after)
        if isinstance(s, ir.While):
            return self.while_(s, after)
        if isinstance(s, ir.Break):
            self.plans[id(s)] = None
            return set(loop_need)
        raise self.cx.error(f"statement {type(s).__name__}", s.line)

    def refuse(self, body):
        """Refuse the statements bytrev cannot undo whatever is needed around them. The
        error names the first of them in the source: the walk that plans statements goes
        backwards, and the normal form may move or copy a statement (a `continue`'s
        rest goes into the other arm)."""
        refusals = []

        def visit(stmts):
            for s in stmts:
                try:
                    self.refuse_statement(s)
                except UnsupportedError as e:
                    refusals.append(e)
                for attr in ("body", "orelse"):
                    visit(getattr(s, attr, []))

        visit(body)
        if refusals:
            raise min(refusals, key=lambda e: e.line or 0)

    def refuse_statement(self, s):
        self.check_calls(s)
        if isinstance(s, ir.ExprStmt) and not self.cx.is_pure(s.value, s.line):
            raise self.cx.error(f"the statement `{ir.unparse(s.value)}` (a call made for its "
                                "side effect)", s.line,
                                "bytrev cannot undo side effects; move it outside the function")
        if isinstance(s, (ir.Assign, ir.AugAssign)) and isinstance(s.target, ir.Subscript) \
                and not self.cx.is_pure(s.target, s.line):
            # The backward run evaluates the index again to put the old item back.
            raise self.cx.error(
                f"`{ir.unparse(s)}` (its index calls something that gives another value "
                "when called again)", s.line,
                "compute the index into a variable first, e.g. i = np.random.randint(n); "
                "a[i] = v")
        index_reads = self.aliases.get(id(s), {}).get("index")
        if index_reads:
            # `a[int(a[0])] += v`: the backward run would look for the changed item with
            # the changed contents.
            raise self.cx.error(
                f"`{ir.unparse(s)}` (its index reads {', '.join(index_reads)}, which the "
                "statement may change)", s.line,
                "compute the index into a variable first, e.g. i = int(a[0]); a[i] += v")

    def check_calls(self, s):
        """Reject calls bytrev cannot undo (mutating methods, out=) early, with a line."""
        for attr in ("value", "test", "iter"):
            e = getattr(s, attr, None)
            if e is None or isinstance(e, list):
                continue
            for call in _calls(e):
                info = self.cx.classify_call(call, s.line)
                if info.kind == "user" and user_function_effects(info.obj)[0]:
                    name = getattr(info.obj, "__qualname__", "?")
                    raise self.cx.error(
                        f"call to {name}, which changes its arguments in place",
                        call.line or s.line,
                        "bytrev does not yet undo mutations made inside called functions; "
                        "inline the update into this function")

    # ---- assignments

    def result_value(self, value):
        """In inverse mode with k results, `return a, b` assigns each result variable."""
        if len(self.result_target.elts) > 1:
            return value  # a Tuple display of k elements (checked by the API)
        return ir.Tuple((value,))

    def assign(self, s, after, target, value):
        if isinstance(target, ir.Name):
            targets, elements = [target.id], [value]
        elif isinstance(target, ir.Tuple) and all(isinstance(t, ir.Name) for t in target.elts):
            targets = [t.id for t in target.elts]
            if isinstance(value, (ir.Tuple, ir.List)) and len(value.elts) == len(targets):
                elements = list(value.elts)
            else:
                elements = None  # unpacking an arbitrary value: nothing to invert through
        else:
            raise self.cx.error("assignment to a nested or subscripted tuple pattern", s.line,
                                "assign the parts one by one")
        tset = set(targets)
        reads = ir.names_read(value)
        if not (tset & after) and not (reads & tset) and isinstance(s, ir.Assign):
            # A dead store: the value is never used, nothing to restore.
            self.plans[id(s)] = AssignPlan(how="dead store: nothing to undo")
            return set(after)
        lost = sorted((reads - after) | (reads & tset))
        plan = AssignPlan()
        recovered = set()
        # Recover lost values by inverting an element. First using only values already
        # recovered; then also values that will come from the stash (popped first), which
        # are then pinned to the stash.
        pinned = set()
        for allow_stashed in (False, True):
            progress = True
            while progress and elements is not None:
                progress = False
                for var in lost:
                    if var in recovered or var in pinned:
                        continue
                    allowed = recovered | (set(lost) - recovered - {var} if allow_stashed
                                           else set())
                    found = self.recover(s, var, targets, elements, tset, lost, after, allowed)
                    if found is None:
                        continue
                    expr, guards, olds, source, element = found
                    plan.recover.append((var, expr))
                    stash_site = None
                    if guards:
                        stash_site = self.site((id(s), "guard", var), "stash", s.line,
                                               f"`{ir.unparse(s)}`: old {self.show(var)} is "
                                               f"kept when a factor is zero at run time")
                        stash_site.conditional = True
                        plan.guards[var] = (guards, stash_site)
                    path, inner = _display_path(element, var)
                    if _scales(inner, var):
                        plan.scaled.add(var)
                    if inner != ir.Name(var):  # (a copy gives back the very object)
                        plan.checks[var] = (source, path, *self.kind_check(
                            s, var, source, stash_site, var in plan.scaled))
                    recovered.add(var)
                    pinned |= olds - recovered
                    progress = True
        plan.stash = [v for v in lost if v not in recovered]
        if plan.stash:
            what = ", ".join(self.show(v) for v in plan.stash)
            over = [self.show(v) for v in plan.stash if v in tset]
            last = [self.show(v) for v in plan.stash if v not in tset]
            effect = " and ".join(
                ([f"overwrites {', '.join(over)}"] if over else [])
                + ([f"is the last use of {', '.join(last)}"] if last else []))
            plan.stash_site = self.site((id(s), "stash"), "stash", s.line,
                                        f"`{ir.unparse(s)}` {effect} and has no inverse")
            plan.how = f"stash {what}"
        elif plan.recover:
            plan.how = "inverse: " + "; ".join(
                f"{self.show(v)} = {_show_expr(e)}" for v, e in plan.recover)
        else:
            plan.how = "fresh value: nothing to undo"
        self.plans[id(s)] = plan
        return (after - tset) | reads

    def recover(self, s, var, targets, elements, tset, lost, after, allowed):
        """Invert one element of an assignment for the old value of `var`: returns
        (expression, guards, old values it reads) or None."""
        for tname, elt in zip(targets, elements):
            if occurrences(elt, var) != 1 or tname not in after:
                continue  # (a target nobody needs later is not kept: no value to invert)
            # In `elt`, targets and lost variables stand for their old values.
            marked = _substitute_old(elt, (tset | set(lost)) - {var})
            if marked is None:
                continue
            guards = []
            expr = invert(marked, var, ir.Name(tname), guards, self.user_inverse)
            if expr is None or not all(self.cx.is_pure(e, s.line) for e in [expr, *guards]):
                continue  # (the backward run evaluates them again: a random draw differs)
            olds = {n.id[1:] for g in [expr, *guards] for n in ir.walk(g)
                    if isinstance(n, ir.Name) and n.id.startswith("\0")}
            if olds <= allowed:
                return expr, [g for g in guards if not _known_nonzero(g)], olds, tname, elt
        return None

    def kind_check(self, s, var, source, stash_site=None, scaled=False):
        """The (failures site, stash site) of the run-time check that `var`'s old value
        and the new value of `source` it is recovered from are of one type and shape (and,
        `scaled`, that the product or quotient kept it: see AssignPlan.scaled)."""
        what = (f"`{ir.unparse(s)}`: old {self.show(var)} differs in type or shape from "
                f"{self.show(source)}" + (" or the product under- or overflows" if scaled
                                          else ""))
        failures = self.site((id(s), "kind", var), "count", s.line,
                             what + ": which executions")
        failures.conditional = failures.failures = True
        if stash_site is None:
            stash_site = self.site((id(s), "kind stash", var), "stash", s.line,
                                   what + ": its old value")
            stash_site.conditional = True
        return failures, stash_site

    def aug_assign(self, s, after):
        reads_value = ir.names_read(s.value)
        target = s.target
        base = _base_name(target)
        target_reads = ir.names_read(target) if isinstance(target, ir.Subscript) else {target.id}
        dying = sorted((reads_value | (target_reads - {base} if isinstance(target, ir.Subscript)
                                       else set())) - after - {base})
        plan = AugPlan(inverse_op=None, dying=dying)
        if dying:
            plan.dying_site = self.site((id(s), "dying"), "stash", s.line,
                                        f"`{ir.unparse(s)}` is the last use of "
                                        + ", ".join(self.show(v) for v in dying))
        verdict = self.aliases.get(id(s), {})
        plan.check_value = verdict.get("check_value", [])
        plan.check_index = verdict.get("check_index", [])
        shared = verdict.get("stash", [])
        # The inverse evaluates the value again: a random draw would differ (an index that
        # draws was refused by refuse_statement).
        invertible = s.op in INVERSE_OP and base not in reads_value and not shared \
            and self.cx.is_pure(s.value, s.line)
        if invertible:
            plan.inverse_op = INVERSE_OP[s.op]
            if s.op in ("*", "/") and not _known_nonzero(s.value):
                plan.guard = s.value
                plan.guard_site = self.site((id(s), "guard"), "stash", s.line,
                                            f"`{ir.unparse(s)}`: the old value is kept when "
                                            "the factor is zero at run time")
                plan.guard_site.conditional = True
            if isinstance(target, ir.Name):
                plan.scaled = s.op in ("*", "/")
                plan.check = self.kind_check(s, base, base, plan.guard_site, plan.scaled)
            plan.how = f"inverse: {ir.unparse(target)} {plan.inverse_op}= {ir.unparse(s.value)}"
        else:
            plan.stash_site = self.site((id(s), "stash"), "stash", s.line,
                                        f"`{ir.unparse(s)}` has no inverse (the update reads "
                                        "what it overwrites)" if base in reads_value else
                                        f"`{ir.unparse(s)}` has no inverse (it reads "
                                        f"{', '.join(shared)}, which may share memory with "
                                        f"{base})" if shared else
                                        f"`{ir.unparse(s)}` has no inverse (it calls something "
                                        "that gives another value when called again)"
                                        if s.op in INVERSE_OP else
                                        f"`{ir.unparse(s)}` has no inverse")
            plan.how = f"stash old {ir.unparse(target)}"
        plan.revive_site = self.revive(s, base, after)
        self.plans[id(s)] = plan
        return after | reads_value | target_reads

    def store_item(self, s, after):
        reads = ir.names_read(s.value) | ir.names_read(s.target)
        base = _base_name(s.target)
        dying = sorted(reads - after - {base})
        site = self.site((id(s), "stash"), "stash", s.line,
                         f"`{ir.unparse(s)}` overwrites {ir.unparse(s.target)}")
        verdict = self.aliases.get(id(s), {})
        plan = StoreItemPlan(stash_site=site, dying=dying,
                             how=f"stash old {ir.unparse(s.target)}",
                             check_index=verdict.get("check_index", []))
        if dying:
            plan.dying_site = self.site((id(s), "dying"), "stash", s.line,
                                        f"`{ir.unparse(s)}` is the last use of "
                                        + ", ".join(self.show(v) for v in dying))
        plan.revive_site = self.revive(s, base, after)
        self.plans[id(s)] = plan
        return after | reads

    def user_inverse(self, call):
        """For a call `g(x, ...)`, the inverse registered with `definverse(g, ...)`, or
        else `inverse(g)` where g is a pure user function that needs no tape and returns
        one value, so `x = inverse(g)(y, ...)`; None otherwise."""
        if call.kwargs:
            return None
        registered = rules.inverse_of(self.cx.resolve(call.func))
        if registered is not None:
            return registered
        info = self.cx.classify_call(call, 0)
        if info.kind != "user" or not user_function_is_pure(info.obj) or \
                info.obj in _INVERTING:
            return None
        from .api import inverse
        _INVERTING.add(info.obj)
        try:
            g = inverse(info.obj)
        except (NotInvertibleError, UnsupportedError):
            return None
        finally:
            _INVERTING.discard(info.obj)
        if g.k != 1 or len(call.args) != 1 + len(g.rest):
            return None
        return g.apply

    def revive(self, s, base, after):
        """An in-place change to a variable that nothing reads afterwards (`b[0] = 1`
        where `b` aliases something else) is undone on the object, so the backward run
        needs the object: keep a reference to it."""
        if base is None or base in after:
            return None
        return self.site((id(s), "revive"), "stash", s.line,
                         f"`{ir.unparse(s)}` changes {base} in place and {base} is not used "
                         "afterwards, so a reference to it is kept")

    # ---- control flow

    def if_(self, s, after, loop_need):
        need_body = self.block(s.body, after, loop_need)
        need_orelse = self.block(s.orelse, after, loop_need)
        test_reads = ir.names_read(s.test)
        changed = assigned(s.body) | assigned(s.orelse) | mutated(s.body) | mutated(s.orelse)
        recomputable = (test_reads <= after and not (test_reads & changed)
                        and self.cx.is_pure(s.test, s.line))
        before = need_body | need_orelse | test_reads
        plan = IfPlan(bit_site=None)
        if not recomputable:
            why = (f"changes {', '.join(sorted(self.show(v) for v in test_reads & changed))} "
                   "inside it") if test_reads & changed else (
                "reads a value that is not kept" if not test_reads <= after
                else "calls something impure")
            plan.bit_site = self.site((id(s), "bit"), "bit", s.line,
                                      f"the branch on `{ir.unparse(s.test)}` cannot be "
                                      f"recomputed because it {why}")
            plan.how = "1 bit per execution"
        else:
            plan.how = "condition recomputed: no bit"
        plan.keep_body = sorted(before - need_body)
        plan.keep_orelse = sorted(before - need_orelse)
        for arm in ("body", "orelse"):
            keep = getattr(plan, "keep_" + arm)
            if keep:
                setattr(plan, f"keep_{arm}_site", self.site(
                    (id(s), arm), "stash", s.line,
                    f"the {'if' if arm == 'body' else 'else'} arm of `if {ir.unparse(s.test)}` "
                    f"loses {', '.join(self.show(v) for v in keep)}"))
        self.plans[id(s)] = plan
        return before

    def _loop(self, s, after, extra, targets, body_stmts):
        """Fixpoint of the header need set H = after ∪ extra ∪ (need(body, H) - targets).

        The backward run sets a `for` loop's target from the sequence at the start of
        each reversed iteration, so inside the body it is available like any kept value
        (unless the body rebinds it)."""
        header = set(after) | extra
        available = targets - assigned(body_stmts)
        while True:
            need_body = self.block(body_stmts, header | available, header | available)
            new = header | (need_body - targets)
            if new == header:
                return header, need_body
            header = new

    def for_(self, s, after):
        targets = ir.target_names(s.target)
        iter_reads = ir.names_read(s.iter)
        changed = assigned(s.body) | mutated(s.body)
        if iter_reads & mutated(s.body):
            mode = "element"  # the body changes the sequence: keep each element as read
        elif iter_reads & (assigned(s.body) | targets) or not self.cx.is_pure(s.iter, s.line):
            mode = "entry"  # keep the sequence the loop started from (a reference)
        else:
            mode = "recompute"
        header, need_body = self._loop(s, after, iter_reads if mode == "recompute" else set(),
                                       targets, s.body)
        plan = LoopPlan(iterable=mode)
        if mode != "recompute":
            plan.iterable_site = self.site(
                (id(s), "iterable"), "stash", s.line,
                f"the loop changes what `{ir.unparse(s.iter)}` reads, so each element is "
                "kept as it is read" if mode == "element" else
                f"the loop rebinds what `{ir.unparse(s.iter)}` reads, so the sequence is kept")
        if _loop_has_break(s.body) or mode == "element":
            plan.count_site = self.site((id(s), "count"), "count", s.line,
                                        "the loop can `break`, so its trip count is recorded"
                                        if mode != "element" else "the trip count is recorded")
        plan.keep_iter = sorted((header - targets) - need_body)
        plan.keep_exit = sorted(header - after - targets)
        before = (header - targets) | iter_reads | (targets & header)
        # The loop reads its iterable once, on entry: what it read and the loop does not
        # carry through (H) is kept then, like targets whose earlier value is needed.
        plan.keep_entry = sorted((targets & header) | (iter_reads - header))
        self._loop_sites(s, plan)
        plan.bitmaps = self.bitmap_branches(s, plan)
        plan.how = ("trip count recorded" if plan.count_site else "trip count recomputed")
        self.plans[id(s)] = plan
        return before

    def bitmap_branches(self, s, plan):
        """The branches of a `for i in range(...)` loop (step 1, no `break`, `i` not
        rebound) that run once in every iteration and record a bit: the forward run sets
        byte `i - start` of a bitmap in the taken arm only, instead of appending a bit in
        both arms, and appends the bitmap when the loop ends. The tape is the same."""
        unit_range = (isinstance(s.iter, ir.Call) and self.cx.resolve(s.iter.func) is range
                      and not s.iter.kwargs and len(s.iter.args) in (1, 2))
        if (not unit_range or plan.count_site or plan.iterable == "element"
                or not isinstance(s.target, ir.Name) or s.target.id in assigned(s.body)):
            return []
        out = []
        for st in s.body:
            if isinstance(st, ir.If) and self.plans[id(st)].bit_site:
                self.plans[id(st)].bit_site.bitmap = True
                out.append(st)
        return out

    def while_(self, s, after):
        test_reads = ir.names_read(s.test)
        header, need_body = self._loop(s, after, test_reads, set(), s.body)
        plan = LoopPlan(iterable="none")
        plan.count_site = self.site((id(s), "count"), "count", s.line,
                                    f"the trip count of `while {ir.unparse(s.test)}` "
                                    "cannot be recomputed")
        plan.keep_iter = sorted(header - need_body)
        plan.keep_exit = sorted(header - after)
        self._loop_sites(s, plan)
        plan.how = "trip count recorded"
        self.plans[id(s)] = plan
        return header

    def _loop_sites(self, s, plan):
        head = f"`{'for' if isinstance(s, ir.For) else 'while'}` loop"
        for part, text in (("iter", "overwrites {} every iteration"),
                           ("exit", "is the last use of {}"),
                           ("entry", "overwrites the earlier value of {}")):
            keep = getattr(plan, "keep_" + part)
            if keep:
                setattr(plan, f"keep_{part}_site", self.site(
                    (id(s), part), "stash", s.line,
                    f"the {head} " + text.format(", ".join(self.show(v) for v in keep))))

    def show(self, var):
        return "the result" if var.startswith("$r") else (
            f"a temporary" if var.startswith("$") else var)


def _show_expr(e):
    """Printable form of a recovery expression: x*c is undone as x / c."""
    def plain(x):
        if isinstance(x, ir.Call) and isinstance(x.func, ir.Const) and x.func.value is exact_divide:
            return ir.BinOp("/", *x.args)
        return x
    return ir.unparse(ir.map_expr(current_values(e), plain))


def current_values(e):
    """`e` with old-value leaves read as plain variables: what a guard means in the
    forward run, where the old values are the current ones."""
    return ir.map_expr(e, lambda x: ir.Name(x.id[1:]) if isinstance(x, ir.Name)
                       and x.id.startswith("\0") else x)


def analyze(fn: ir.Function, pyfunc=None, results: int | None = None,
            held: tuple | None = None) -> Analysis:
    """Analyse `fn`.

    `results=None` (the reversible form): the backward run receives the whole return value
    as one result. `results=k` (the inverse): the function returns a k-tuple display whose
    elements the inverse receives separately. `held` are parameters whose original values
    the backward run gets back (from the tape, or as the inverse's extra arguments)."""
    cx = Context(fn, pyfunc)
    body = normal_form(fn)
    an = Analyzer(fn, cx)
    an.aliases = _Aliases(cx, fn.params + fn.kwonly).run(body)
    an.refuse(body)
    if results is None:
        names = ("$result",)
        an.result_target = ir.Tuple((ir.Name("$result"),))
    else:
        names = tuple(f"$r{i}" for i in range(results))
        an.result_target = ir.Tuple(tuple(ir.Name(n) for n in names))
    held = tuple(held or ())
    end = set(names) | set(held)
    need = an.block(body, end, set())
    _Approximate(an).block(body, set())
    # Parameters whose values the body never reads (or overwrites before reading) cannot
    # be recovered by running it backwards: keep them.
    entry_keep = [p for p in fn.params + fn.kwonly if p not in need and p not in held]
    entry_site = None
    if entry_keep:
        entry_site = an.site("entry", "stash", fn.firstlineno,
                             f"{fn.name} never reads the value of "
                             + ", ".join(entry_keep) + " (or overwrites it first)")
    sites = sorted(an.sites.values(), key=lambda s: s.index)
    # Only sites reached by the final plans count (fixpoint passes may leave stale ones).
    used = _used_sites(an.plans, body) | ({entry_site.index} if entry_site else set())
    sites = [s for s in sites if s.index in used]
    for i, s in enumerate(sites):
        s.index = i
    return Analysis(function=fn, body=body, plans=an.plans, sites=sites, results=names,
                    held=held, params=fn.params + fn.kwonly, needed_at_entry=need,
                    entry_keep=entry_keep, entry_site=entry_site, context=cx)


def plan_sites(plan):
    """The sites a plan writes, including those inside its `guards` and `checks`."""
    def sites(v):
        if isinstance(v, Site):
            yield v
        elif isinstance(v, (tuple, list)):
            for x in v:
                yield from sites(x)
        elif isinstance(v, dict):
            for x in v.values():
                yield from sites(x)
    return list(sites(list(vars(plan).values())))


class _Approximate:
    """Which variables the backward run restores by an inverse, hence only approximately
    for floats: `x = x * 0.7 + 0.1` undone by `x = (x - 0.1) / 0.7` may be one ulp off.
    A branch whose condition reads such a value cannot be trusted to take the same arm
    backwards (`x > t` with x one ulp above t): it records its bit after all.

    A backward walk over the planned body, as the backward run goes: each statement maps
    the set of approximate variables after it to the set before it."""

    def __init__(self, an: Analyzer):
        self.an = an

    def block(self, stmts, after):
        for s in reversed(stmts):
            after = self.stmt(s, after)
        return after

    def selection_site(self, s, var, shaky):
        """An inverse that selects by a restored value (`z = z + (1 if x > 0 else 0)`
        undone by `z - (1 if x > 0 else 0)` with x restored one ulp off) may select
        otherwise backwards: the old value is stashed instead, unless the types show
        integers (see codegen.Generator.selects_approximately)."""
        what = f"`for ... in {ir.unparse(s.iter)}`" if isinstance(s, ir.For) else \
            f"`{ir.unparse(s)}`: its inverse"
        site = self.an.site((id(s), "approximate", var), "stash", s.line,
                            f"{what} selects by "
                            f"{', '.join(self.an.show(v) for v in shaky)}, which the backward "
                            "run restores by an inverse (approximately, for floats)")
        site.conditional = True
        return site

    def stmt(self, s, after):
        plan = self.an.plans.get(id(s))
        if isinstance(plan, AssignPlan):
            before = set(after) - (assigned([s]) if isinstance(s, ir.Assign) else set()) \
                - set(plan.stash)
            for var, e in plan.recover:
                shaky = sorted(v[1:] if v.startswith("\0") else v
                               for v in _selecting_reads(e, self.an.cx.resolve)
                               if v.startswith("\0") or v in after)
                if shaky:
                    plan.approximate[var] = (shaky, self.selection_site(s, var, shaky))
                exact = shaky or isinstance(e, ir.Name) and not e.id.startswith("\0") \
                    and e.id not in after  # a copy of an exact value
                (before.discard if exact else before.add)(var)
            return before
        if isinstance(plan, AugPlan):
            base = _base_name(s.target)
            if plan.inverse_op is not None:
                shaky = sorted(_selecting_reads(s.value, self.an.cx.resolve) & after)
                if not shaky:
                    return set(after) | {base}
                plan.approximate = (shaky, self.selection_site(s, base, shaky))
            return set(after) - {base} if isinstance(s.target, ir.Name) else set(after)
        if isinstance(s, ir.If):
            before = self.block(s.body, after) | self.block(s.orelse, after)
            shaky = sorted(ir.names_read(s.test) & before)
            if plan.bit_site is None and shaky:
                plan.approximate = shaky
                plan.bit_site = self.an.site(
                    (id(s), "approximate"), "bit", s.line,
                    f"the branch on `{ir.unparse(s.test)}` reads "
                    f"{', '.join(self.an.show(v) for v in shaky)}, which the backward run "
                    "restores by an inverse (approximately, for floats)")
                plan.bit_site.conditional = True  # the inverse re-evaluates it
                plan.how = "1 bit per execution unless integers"
            return before
        if isinstance(s, ir.For) and plan.iterable == "recompute":
            shaky = sorted(_selecting_reads(s.iter, self.an.cx.resolve) & after)
            if shaky:
                plan.approximate = (shaky, self.selection_site(s, "$iter", shaky))
                plan.how = "iterable kept unless integers"
        if isinstance(s, (ir.For, ir.While)):
            targets = ir.target_names(s.target) if isinstance(s, ir.For) else set()
            header = set(after)
            while True:  # the sets only grow: a fixpoint
                new = header | (self.block(s.body, header) - targets)
                if new == header:
                    return header
                header = new
        return set(after)


def _used_sites(plans, body):
    used = set()

    def visit(stmts):
        for s in stmts:
            p = plans.get(id(s))
            if p is not None:
                used.update(site.index for site in plan_sites(p))
            for attr in ("body", "orelse"):
                visit(getattr(s, attr, []))

    visit(body)
    return used
