"""Fuzzing bytrev's promise about the constructs it cannot handle.

    python fuzz/unsupported.py [START] [COUNT]

Each seed takes reversal.py's program for the same seed (a function `f(x, a, y, j)` that
bytrev supports) and inserts one construct that bytrev refuses, chosen at random from
`CONSTRUCTS`: every construct of tests/test_unsupported.py (try/except, try/finally,
with, yield, async, class definitions, global and nonlocal writes, del, imports,
attribute assignment, side-effecting builtins such as print/open/input, calls with
`out=`, methods that change their object, a helper that stores into its array argument)
and the others bytrev's lifter refuses (raise, assert, f-strings, sets, dict
comprehensions, starred assignment, `*args` calls). The construct goes at a random
statement position of the program, at any depth open there, itself inside up to two new
if/else/for/while statements (one kind is a branch never taken); the bodies it has (a
try's, a with's, ...) are random statement blocks from reversal.py. A construct that is
an expression (a call, an f-string, a set, ...) goes into a random context: a statement
of its own, an argument, an if or while test, a return value, a conditional expression,
a list comprehension, ... (see `CONTEXTS`).

Oracles, on an input like reversal.py's:

* `reversible(f)` raises UnsupportedError when it is built or, at the latest, at its
  first `forward` call; `inverse(f)` and `grad(f)(...)` raise it too;
* each error names f (its qualname), its file and the construct's line, the line CPython
  gives the construct. bytrev lifts all of f's code, so a construct in a branch never
  taken is refused too. For an async function the `def` line is accepted as well, for
  the helper that stores into its argument the store inside the helper;
* nothing of f's body has run: the array argument is unchanged, nothing was printed,
  the global and the attributes the constructs write are as they were.

Any other exception, no error, or another line is a failure. Two kinds of program are
skipped, as CPython's compiler leaves nothing of the construct to refuse: those with the
construct after an unconditional return/break/continue (its line is not in f's line
table: "dead code, skipped"), and those with a try whose body cannot raise (`try:
break`), which compiles to its body alone ("try whose body cannot raise, skipped").

Outcomes: "refused when built: <construct>" (or "at the first forward call"), the same
with ", naming a statement holding it", and the two skips. Prints each failure with its
numbered program and the count of each outcome; exits 1 on any failure.
"""
from __future__ import annotations

import contextlib
import dataclasses
import dis
import io
import math
import os
import random
import sys
import traceback
import types
from dataclasses import dataclass

import numpy as np

import bytrev
import reversal
from common import Failed, campaign, indent, load
from reversal import block, expression


class Null:
    """A context manager, plain and async, that does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False


async def pause():
    """Something for a coroutine to await."""
    return 0.0


async def ticks():
    """Something for `async for` to iterate over."""
    yield 1.0


def store_first(arr, v):
    arr[0] = v


# bytrev may name this store instead of the call in f that leads to it.
STORE_LINE = store_first.__code__.co_firstlineno + 1


# --------------------------------------------------------------------------- constructs


@dataclass
class Where:
    """The place a construct goes: how deeply nested, and whether inside a loop (where
    the random blocks in its bodies may break and continue)."""
    depth: int
    in_loop: bool


@dataclass
class Construct:
    """A construct as inserted: its source lines, unindented (the bodies of compound
    statements indented relative to them), and which of them bytrev must name."""
    name: str
    lines: list
    at: int = 0                # index in `lines` of the construct's line
    definition: str = "def"    # "async def" for a coroutine
    closure: bool = False      # f must be a closure over `total` (nonlocal writes)
    in_helper: bool = False    # bytrev may name the store inside store_first instead
    try_statement: bool = False  # its handlers are unreachable if its body cannot raise


def _body(r, where):
    return indent(block(r, where.depth + 1, where.in_loop))


def _var(r):
    return r.choice(reversal.VARS)


def try_except(r, where):
    handler = r.choice(["except ZeroDivisionError:",
                        "except (ValueError, ZeroDivisionError) as e:", "except:"])
    lines = ["try:", *_body(r, where), handler, *_body(r, where)]
    if r.random() < 0.3:
        lines += ["else:", *_body(r, where)]
    if r.random() < 0.3:
        lines += ["finally:", *_body(r, where)]
    return Construct("try/except", lines, try_statement=True)


def try_finally(r, where):
    return Construct("try/finally", ["try:", *_body(r, where), "finally:", *_body(r, where)],
                     try_statement=True)


def with_statement(r, where):
    head = r.choice(["with Null():", "with Null() as ctx:", "with Null(), Null():",
                     "with open(os.devnull) as fh:"])
    return Construct("with", [head, *_body(r, where)])


def generator(r, where):
    v = _var(r)
    return Construct("yield", [r.choice([f"yield {expression(r)}", f"{v} = yield {v}",
                                         "yield from a"])])


def coroutine(r, where):
    v = _var(r)
    lines = r.choice([["await pause()"], [f"{v} = {v} + await pause()"],
                      ["async for t in ticks():", *_body(r, Where(where.depth, True))],
                      ["async with Null():", *_body(r, where)]])
    return Construct("async", lines, definition="async def")


def class_definition(r, where):
    return Construct("class definition", r.choice([
        ["class Local:", "    pass"],
        ["class Local:", "    scale = 2.0", "    def twice(self, u):",
         "        return u * self.scale"]]))


def global_write(r, where):
    v = _var(r)
    write = r.choice([[f"G = {expression(r)}"], [f"G += {v}"], [f"G, {v} = {v}, G"],
                      ["for G in a:", *_body(r, Where(where.depth, True))]])
    return Construct("global write", ["global G", *write], at=1)


def nonlocal_write(r, where):
    v = _var(r)
    write = r.choice([[f"total = {expression(r)}"], [f"total += {v}"],
                      [f"total, {v} = {v}, total"],
                      ["for total in a:", *_body(r, Where(where.depth, True))]])
    return Construct("nonlocal write", ["nonlocal total", *write], at=1, closure=True)


def del_statement(r, where):
    return Construct("del", [r.choice(["del t", "del z, t", "del x", "del a[0]", "del a[1:]",
                                       f"del a[{r.choice(['j', 'i % 3', '-1'])}]"])])


def import_statement(r, where):
    return Construct("import", r.choice([
        ["import os"], ["import os.path"], ["import math as m"], ["from math import sqrt"],
        ["from math import sqrt as root", f"{_var(r)} = root(x * x)"]]))


def attribute_assignment(r, where):
    v = _var(r)
    return Construct("attribute assignment", [r.choice([
        f"NS.value = {expression(r)}", f"NS.value += {v}", f"NS.value, {v} = {v}, NS.value"])])


# Where a construct that is an expression goes: its own statement, the value of an
# assignment, an argument (also on a line of its own), an if or while test (also after a
# short-circuit `and`), a for loop's sequence, a return value, an arm of a conditional
# expression, a list comprehension's element or condition. "{body}" marks a compound
# statement, "{loop body}" a loop. The line named is the expression's.
CONTEXTS = [
    ["{e}"], ["{v} = {e}"], ["{v} = helper({v}, {e})"], ["{v} = helper({v},", "    {e})"],
    ["if {e}:", "{body}"], ["if {v} > 0 and {e}:", "{body}"], ["while {e}:", "{loop body}"],
    ["for t in {e}:", "{loop body}"], ["return {e}"], ["{v} = ({e} if {w} > 0 else {v})"],
    ["{v} = ({v} if {w} > 0 else {e})"], ["b = [{e} for e in a]"],
    ["b = [e for e in a if {e}]"],
]


def _placed(r, where, name, e, before=(), **flags):
    """The construct that is expression `e` in a random context, after the statements
    `before` that it needs."""
    v, w = r.sample(reversal.VARS, 2)
    lines = list(before)
    for text in r.choice(CONTEXTS):
        if text == "{body}":
            lines += _body(r, where)
        elif text == "{loop body}":
            lines += _body(r, Where(where.depth, True))
        else:
            if "{e}" in text:
                at = len(lines)
            lines.append(text.format(e=e, v=v, w=w))
    return Construct(name, lines, at, **flags)


def side_effect_call(r, where):
    e = r.choice([
        f"print({expression(r)})", 'print(x, y, sep=", ")', "open(os.devnull)", "input()",
        'exec("pass")', 'eval("1.5")', f'setattr(NS, "value", {_var(r)})',
        'delattr(NS, "extra")', "next(iter(a))", "vars()", "locals()", "globals()",
        '__import__("math")', 'compile("1.5", "<s>", "eval")'])
    return _placed(r, where, "side-effecting builtin", e)


def out_argument(r, where):
    e, before = r.choice([(f"np.add(a, {expression(r)}, out=a)", []),
                          ("np.multiply(a, 2.0, out=a)", []), ("np.sin(a, out=a)", []),
                          ("np.add(a, a, out=w)", ["w = np.zeros(3)"])])
    return _placed(r, where, "call with out=", e, before)


def mutating_method(r, where):
    v = _var(r)
    e, before = r.choice([
        ("a.sort()", []), (f"a.fill({v})", []), (f"a.put(0, {v})", []),
        (r.choice(["vals.append(z)", "vals.sort()", "vals.reverse()", "vals.insert(0, t)",
                   "vals.extend(a)", "vals.pop()"]), ["vals = [x, y]"]),
        ("d.update(w=y)", ['d = {"w": x}'])])
    return _placed(r, where, "method that changes its object", e, before)


def mutating_helper(r, where):
    return _placed(r, where, "helper storing into its argument",
                   f"store_first(a, {expression(r)})", in_helper=True)


def raise_statement(r, where):
    return Construct("raise", [r.choice(['raise ValueError("refused")', "raise",
                                         'raise ValueError("refused") from None'])])


def assert_statement(r, where):
    v = _var(r)
    return Construct("assert", [r.choice([f"assert {expression(r)} > -1e300, 'large'",
                                          f"assert {v} == {v}"])])


def f_string(r, where):
    v = _var(r)
    return _placed(r, where, "f-string", r.choice([f'f"{{{v}}}"', f'f"{{{v}:.3f}}"',
                                                   f'f"{{{v}!r}} and {{j}}"']))


def set_display(r, where):
    return _placed(r, where, "set", r.choice(["{x, y}", "{e for e in a}", "len({x, y, z})"]))


def dict_comprehension(r, where):
    return _placed(r, where, "dict comprehension", "{k: e for k, e in enumerate(a)}")


def starred_assignment(r, where):
    return Construct("starred assignment", [r.choice(["p, *q = a", "*q, p = [x, y, z]"])])


def star_call(r, where):
    return _placed(r, where, "*args call", r.choice(["helper(*[x, y])", "max(*a)",
                                                     'helper(**{"u": x, "c": y})']))


CONSTRUCTS = [
    try_except, try_finally, with_statement, generator, coroutine, class_definition,
    global_write, nonlocal_write, del_statement, import_statement, attribute_assignment,
    side_effect_call, out_argument, mutating_method, mutating_helper,
    raise_statement, assert_statement, f_string, set_display, dict_comprehension,
    starred_assignment, star_call,
]


def _nested(r, make, where, levels):
    """The construct `make` builds, inside `levels` new compound statements, each with
    random statements before and after it or not."""
    if levels == 0:
        return make(r, where)
    kind = r.choice(["if", "else", "never taken", "for", "while"])
    inner = Where(where.depth + 1, where.in_loop or kind in ("for", "while"))
    c = _nested(r, make, inner, levels - 1)
    before = block(r, inner.depth, inner.in_loop) if r.random() < 0.4 else []
    after = block(r, inner.depth, inner.in_loop) if r.random() < 0.4 else []
    condition = f"if {expression(r)} > {r.choice(['0', '1', 'x', 'a[0]'])}:"
    if kind == "if":
        head = [condition]
    elif kind == "else":
        head = [condition, *indent(block(r, inner.depth, where.in_loop)), "else:"]
    elif kind == "never taken":
        head = ["if x > 1e300:"]
    elif kind == "for":
        head = [r.choice(["for i in range(j):", "for t in a:", "for i, t in enumerate(a):"])]
    else:  # a while loop with its own counter: reversal's k0, k1 may count an enclosing one
        n = f"n{where.depth}"
        head = [f"{n} = 0", f"while {n} < 2:", f"    {n} += 1"]
    return dataclasses.replace(c, lines=head + indent(before + c.lines + after),
                               at=len(head) + len(before) + c.at)


# --------------------------------------------------------------------------- programs


def _indentation(line):
    return len(line) - len(line.lstrip())


def _gaps(body):
    """Every place in `body` (f's lines, indented) where a statement can go, as (index of
    the line it goes before, indentation): at any depth the preceding line leaves open,
    but not between an if's body and its `else:`."""
    gaps = []
    for k, line in enumerate(body):
        before = body[k - 1] if k else "def f(x, a, y, j):"
        if before.endswith(":"):
            levels = [_indentation(before) + 4]
        else:
            lowest = _indentation(line) + (4 if line.strip() == "else:" else 0)
            levels = range(lowest, _indentation(before) + 1, 4)
        gaps += [(k, level) for level in levels]
    return gaps


def _in_loop(body, k, level):
    """Whether a statement indented `level` before body[k] is inside a loop."""
    for line in reversed(body[:k]):
        if _indentation(line) < level and line.endswith(":"):
            if line.lstrip().startswith(("for ", "while ")):
                return True
            level = _indentation(line)
    return False


@dataclass
class Program:
    """A generated program with one construct bytrev refuses."""
    src: str
    filename: str
    construct: str
    line: int             # the construct's line
    places: frozenset     # the (function, filename, line)s naming the construct
    try_statement: bool


# reversal.py's programs start by setting z, t and i, which the statements around the
# construct read: it goes after these lines.
PREAMBLE = 3


def program(seed: int) -> Program:
    """reversal.py's program for `seed` with one construct bytrev refuses inserted."""
    r = random.Random(f"unsupported {seed}")
    body = reversal.program(seed).splitlines()[1:]
    k, level = r.choice([(k, level) for k, level in _gaps(body) if k >= PREAMBLE])
    where = Where(level // 4 - 1, _in_loop(body, k, level))
    c = _nested(r, r.choice(CONSTRUCTS), where, r.choice([0, 0, 1, 2]))
    body[k:k] = [" " * level + line for line in c.lines]
    lines = [f"{c.definition} f(x, a, y, j):", *body]
    function, def_line = "f", 1
    if c.closure:
        lines = ["def outer():", "    total = 0.0", *indent(lines), "    return f", "f = outer()"]
        function, def_line = "outer.<locals>.f", 3
    filename = f"<unsupported {seed}>"
    line = def_line + 1 + k + c.at
    places = {(function, filename, line)}
    if c.definition == "async def":
        places.add((function, filename, def_line))
    if c.in_helper:
        places.add((store_first.__qualname__, store_first.__code__.co_filename, STORE_LINE))
    return Program("\n".join(lines) + "\n", filename, c.name, line, frozenset(places),
                   c.try_statement)


# --------------------------------------------------------------------------- oracles


def _raised(call):
    """The exception `call()` raises, or None."""
    try:
        call()
    except Exception as exc:
        return exc
    return None


def _verdict(exc, p: Program):
    """What an oracle's exception says: "construct" when it is an UnsupportedError naming
    p's construct, else a `Failed` saying what it is."""
    if exc is None:
        return Failed("raised nothing")
    if not isinstance(exc, bytrev.UnsupportedError):
        return Failed("raised " + "".join(traceback.format_exception(exc)))
    place = (exc.function, exc.filename, exc.line)
    if place in p.places:
        return "construct"
    return Failed(f"raised UnsupportedError naming {exc.function} at {exc.filename}:{exc.line}, "
                  f"not line {p.line}: {exc}")


@contextlib.contextmanager
def _sealed():
    """While f's body could run by mistake: keep what it prints, give input() an end of
    file instead of waiting for the terminal."""
    stdin, printed = sys.stdin, io.StringIO()
    sys.stdin = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield printed
    finally:
        sys.stdin = stdin


# Instructions after which control does not go on to the next one.
_NO_FALLTHROUGH = frozenset({"RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE",
                             "JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT"})


def _catches_exceptions(code) -> bool:
    """Whether an exception can reach an except or finally clause of `code` (or a with
    statement's exit): whether an instruction reachable from the start is covered by an
    exception-table entry whose handler starts with PUSH_EXC_INFO. A try whose body
    cannot raise (`try: break`, `try: return 1.5`) compiles to its body, the finally
    clause copied before each way out, and its handlers stay in the code unreachable."""
    instructions = list(dis.get_instructions(code))
    index = {ins.offset: k for k, ins in enumerate(instructions)}
    handlers = [entry for entry in dis.Bytecode(code).exception_entries
                if instructions[index[entry.target]].opname == "PUSH_EXC_INFO"]
    reached, todo = set(), [0]
    while todo:
        k = todo.pop()
        if k in reached or k == len(instructions):
            continue
        reached.add(k)
        ins = instructions[k]
        if any(entry.start <= ins.offset < entry.end for entry in handlers):
            return True
        if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            todo.append(index[ins.argval])
        if ins.opname not in _NO_FALLTHROUGH:
            todo.append(k + 1)
    return False


def check(p: Program):
    """The outcome of one program: "refused when built: <construct>" (or "at the first
    forward call", and either ", naming a statement holding it"), "dead code, skipped",
    "try whose body cannot raise, skipped", or a `Failed` saying what went wrong."""
    ns = types.SimpleNamespace(value=0.0, extra=1.0)
    namespace = {"math": math, "np": np, "os": os, "helper": reversal.helper,
                 "helper2": reversal.helper2, "Null": Null, "pause": pause, "ticks": ticks,
                 "store_first": store_first, "NS": ns, "G": 0.0}
    f = load(p.src, p.filename, namespace)
    if p.line not in {line for _, _, line in f.__code__.co_lines()}:
        return "dead code, skipped"
    if p.try_statement and not _catches_exceptions(f.__code__):
        return "try whose body cannot raise, skipped"
    x, a, y, j = reversal.INPUTS[0]
    a = np.array(a)
    args, a_before = (x, a, y, j), a.copy()
    with _sealed() as printed:
        try:
            forward = bytrev.reversible(f).forward
        except Exception as exc:
            when, refusal = "when built", exc
        else:
            when, refusal = "at the first forward call", _raised(lambda: forward(*args))
        verdicts = {"reversible(f)": _verdict(refusal, p),
                    "inverse(f)": _verdict(_raised(lambda: bytrev.inverse(f)), p),
                    "grad(f)(x, a, y, j)": _verdict(_raised(lambda: bytrev.grad(f)(*args)), p)}
    problems = [f"{oracle} {verdict}" for oracle, verdict in verdicts.items()
                if isinstance(verdict, Failed)]
    effects = [printed.getvalue() and f"printed {printed.getvalue()!r}",
               not np.array_equal(a, a_before) and f"a became {a!r}",
               namespace["G"] != 0.0 and f"G became {namespace['G']!r}",
               vars(ns) != {"value": 0.0, "extra": 1.0} and f"NS became {ns!r}"]
    problems += [f"f's body ran: {effect}" for effect in effects if effect]
    if problems:
        return Failed("\n".join(problems))
    return f"refused {when}: {p.construct}"


def outcomes(seed: int) -> list:
    """The seed's program checked (one outcome)."""
    p = program(seed)
    outcome = check(p)
    if isinstance(outcome, Failed):
        numbered = "\n".join(f"{n:3}  {line}" for n, line in enumerate(p.src.splitlines(), 1))
        outcome = Failed(f"seed {seed}, {p.construct} at line {p.line}: {outcome}\n{numbered}")
    return [outcome]


if __name__ == "__main__":
    raise SystemExit(campaign(outcomes, "unsupported constructs"))
