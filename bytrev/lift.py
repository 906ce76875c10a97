"""Lift a function's CPython bytecode into bytrev's structured IR (`bytrev.ir`).

How it works, top to bottom:

1. `bytecodes.normalise` turns 3.11/3.12/3.13 bytecode into one canonical instruction
   list; nothing below this line knows about interpreter versions.
2. `_Lifter.__init__` cuts that list into basic blocks (blocks that only jump on are
   threaded through), refuses the first opcode of an unsupported construct (`try`,
   `with`, `del`, ...) in the blocks that can run, computes dominators and finds the
   loops: every target of a back edge and every FOR_ITER is a loop header, except the
   *guard* of a rotated while loop (see "While loops" below). A loop's body is its
   natural loop plus the blocks laid out inside it (3.12+ copy small exit blocks there);
   its exit is FOR_ITER's target, or the one place a while loop's test leaves to.
3. `_Lifter.walk` interprets the blocks of one region (the function, a loop body) in
   order with an abstract stack whose entries are IR expressions (or markers for things
   like a for loop's iterator). Instructions build expressions; stores, calls whose value
   is dropped and returns emit statements; one handler per canonical opcode (`op_*`).
   A conditional jump becomes an `If` whose arms are walked up to their join: the
   immediate post-dominator of the branch inside the region (break/continue/return edges
   lead to the region's end) or, when an arm may leave early, the first block both arms
   still reach. Chains of condition-only blocks are first merged into one `and`/`or`
   (or conditional) test. When both arms are pure expressions the values they leave
   become `IfExp`/`BoolOp`; otherwise they go through temporaries.
4. `_simplify` tidies the statement tree: `if c: <ends in return/break> else: rest`
   becomes `if c: ...` followed by `rest`, exit blocks 3.12+ copied into both arms are
   shared again, and the rotated loop shape `if t: while True: body; if not t: break`
   becomes `while t: body`.

Correctness rules kept by the walker:
* a stack value is evaluated where the statement consuming it runs, so before any
  statement is emitted every pending value that could change meaning or order (anything
  but constants, names, globals, free variables, and slices/tuples of those) is assigned
  to a temporary `$n`, bottom of the stack first; pending names are spilled when the
  statement rebinds them. A COPY of such a value, and a SWAP that would reorder two of
  them, spill first too. A value pending across a branch is spilled before the branch's
  test when an arm would evaluate it (`_NeedSpill`). The iterator of a running for loop
  is never spilled.
* every construct that cannot be expressed raises `UnsupportedError` naming the function,
  file, line and construct; internal failures are wrapped the same way, and a work
  budget bounds pathological inputs.

While loops. CPython 3.11+ rotate `while t: body` into
    G: if not t: goto E;  h: body;  if t: goto h;  E:
and a `continue` jumps back to the top test G. G is then a back-edge target but not a
loop header: it is recognised as h's *guard* and a jump to it from inside h's body is
lifted as `_ContinueTest(t, exit)` ("if t: continue, else leave the loop"), which becomes
a plain `continue` once the loop is rewritten to `while t:`.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from types import CodeType

from . import bytecodes as _bc
from . import ir
from .bytecodes import Ins
from .errors import UnsupportedError

__all__ = ["lift", "lift_code", "SIDE_EFFECT_BUILTINS"]

# Builtins whose calls have effects outside the function (or read its frame).
SIDE_EFFECT_BUILTINS = frozenset({
    "print", "open", "input", "exec", "eval", "compile", "setattr", "delattr", "globals",
    "locals", "vars", "exit", "quit", "breakpoint", "__import__", "next", "iter"})

SIDE_EFFECT_HINT = "move the side effect outside the function bytrev runs"

# Code flags that make a function something other than a plain function.
CO_VARARGS, CO_VARKEYWORDS = 0x04, 0x08
CO_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR = 0x20, 0x80, 0x100, 0x200

# Opcodes that mean a construct bytrev does not support, with the construct's name.
UNSUPPORTED_OPS = {
    "TRY_STATEMENT": ("try statement", "rewrite the function without try/except/finally"),
    "BEFORE_WITH": ("with statement", "move the with block outside the function"),
    "BEFORE_ASYNC_WITH": ("async with statement", ""),
    "YIELD_VALUE": ("generator (yield)", ""),
    "RETURN_GENERATOR": ("generator (yield)", ""),
    "GET_AWAITABLE": ("async function", ""),
    "LOAD_BUILD_CLASS": ("class definition", "define the class outside the function"),
    "IMPORT_NAME": ("import inside the function", "import at module level"),
    "IMPORT_FROM": ("import inside the function", "import at module level"),
    "DELETE_FAST": ("del statement", ""),
    "DELETE_DEREF": ("del statement", ""),
    "DELETE_GLOBAL": ("del statement", ""),
    "DELETE_NAME": ("del statement", ""),
    "DELETE_SUBSCR": ("del statement", ""),
    "DELETE_ATTR": ("del statement", ""),
    "STORE_ATTR": ("attribute assignment", "assign to a local variable or an array element"),
    "CALL_FUNCTION_EX": ("*args or **kwargs in a call", "pass the arguments one by one"),
    "UNPACK_EX": ("starred assignment (a, *b = ...)", ""),
    "RAISE_VARARGS": ("raise statement", "check the inputs before calling the function"),
    "RERAISE": ("raise statement", ""),
    "LOAD_ASSERTION_ERROR": ("assert statement", "check the inputs before calling the function"),
    "FORMAT_VALUE": ("f-string", ""),
    "FORMAT_SIMPLE": ("f-string", ""),
    "FORMAT_WITH_SPEC": ("f-string", ""),
    "CONVERT_VALUE": ("f-string", ""),
    "BUILD_STRING": ("f-string", ""),
    "BUILD_SET": ("set display or set comprehension", "use a list or a tuple"),
    "SET_ADD": ("set comprehension", ""),
    "SET_UPDATE": ("set display with *x", ""),
    "MAP_ADD": ("dict comprehension", "build the dict with a for loop"),
    "DICT_UPDATE": ("dict display with **x", ""),
    "DICT_MERGE": ("**kwargs in a call", ""),
    "LIST_TO_TUPLE": ("starred expression (*x)", ""),
    "CALL_INTRINSIC_1": ("starred expression (*x)", ""),
    "MATCH_CLASS": ("match statement", ""),
    "MATCH_MAPPING": ("match statement", ""),
    "MATCH_SEQUENCE": ("match statement", ""),
    "GET_LEN": ("match statement", ""),
    "LOAD_SUPER_ATTR": ("super()", ""),
}


# ----------------------------------------------------------------------- abstract values
# Stack entries are IR expressions, or one of these markers for values with no IR form.

class _Marker:
    def __repr__(self):
        return type(self).__name__


class _NullT(_Marker):
    """The NULL CPython pushes next to a callable."""


NULL = _NullT()


class _Iter(_Marker):
    """The iterator made by GET_ITER from `expr`."""
    def __init__(self, expr):
        self.expr = expr
        self.started = False  # the for loop runs: never spill it


class _ForItem(_Marker):
    """The item FOR_ITER pushes; the stores that consume it give the loop's target."""
    def __init__(self):
        self.target = None


class _Unpack:
    """UNPACK_SEQUENCE in progress: slots are filled by the stores that follow."""
    def __init__(self, n, parent, value):
        self.slots = [None] * n
        self.parent = parent  # a _Slot (nested unpacking), a _ForItem, or None
        self.value = value    # the unpacked expression when parent is None


class _Slot(_Marker):
    def __init__(self, unpack, index):
        self.unpack = unpack
        self.index = index


class _CellRef(_Marker):
    """A closure cell loaded to build a nested function's closure."""
    def __init__(self, name):
        self.name = name


class _CellTuple(_Marker):
    def __init__(self, names):
        self.names = names


class _Saved(_Marker):
    """3.12+: the outer value of an inline comprehension's variable (LOAD_FAST_AND_CLEAR);
    storing it back restores the variable and means nothing in the IR."""
    def __init__(self, name):
        self.name = name


class _ListBuilder(_Marker):
    """BUILD_LIST 0: an empty list, or the list a comprehension appends to."""


class _InPlace(_Marker):
    """`target op= value` computed but not stored yet (BINARY_OP with an in-place op)."""
    def __init__(self, target, op, value):
        self.target = target
        self.op = op
        self.value = value


# Pseudo statements, removed before `lift` returns.
@dataclass
class _Append:
    """LIST_APPEND in a comprehension body."""
    value: object
    line: int = 0


@dataclass
class _ContinueTest:
    """A jump to a rotated while loop's top test: `if test: continue` else run `exit`."""
    test: object
    exit: list
    line: int = 0


class _EndT:
    def __repr__(self):
        return "END"


END = _EndT()  # the end of the current region

SMALL_EXIT = 12  # instructions: exit blocks compared as possible copies of each other


def _trivial(v) -> bool:
    """Whether evaluating `v` later instead of now cannot change anything: no calls, no
    reads of objects that may be mutated (names can be rebound: see `_Lifter.spill`)."""
    if isinstance(v, (ir.Const, ir.Name, ir.Global, ir.FreeVar)):
        return True
    if isinstance(v, (ir.Slice, ir.Tuple)):
        return all(_trivial(c) for c in ir.children(v))
    return isinstance(v, _Marker) and not isinstance(v, _InPlace)


_COMPLEMENT = {"is": "is not", "is not": "is", "in": "not in", "not in": "in"}


def _negate(e):
    """`not e` (for `is` and `in` the complementary comparison, which is exact)."""
    if isinstance(e, ir.UnaryOp) and e.op == "not":
        return e.operand
    if isinstance(e, ir.Compare) and e.op in _COMPLEMENT:
        return ir.Compare(_COMPLEMENT[e.op], e.left, e.right)
    return ir.UnaryOp("not", e)


def _key(x):
    """A structural key of IR (statements, expressions, lists), ignoring line numbers."""
    if isinstance(x, list):
        return ("list",) + tuple(_key(i) for i in x)
    if isinstance(x, tuple):
        return ("tuple",) + tuple(_key(i) for i in x)
    if isinstance(x, ir.Const):
        v = x.value
        return ("Const", type(v).__name__, v if ir.is_literal(v) else id(v))
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__,) + tuple(_key(getattr(x, f.name)) for f in dataclasses.fields(x)
                                          if f.name != "line")
    if isinstance(x, CodeType):
        return ("code", id(x))
    return x


def _same_stmts(a, b) -> bool:
    return _key(a) == _key(b)


# ----------------------------------------------------------------------- CFG

class _Block:
    def __init__(self, bid, start, end):
        self.id = bid
        self.start = start  # index of the first instruction
        self.end = end      # one past the last instruction
        self.succs = []     # [fallthrough/body, jump target] (threaded)
        self.preds = []
        self.jump = None    # the jump target block of the terminator
        self.fall = None    # the fallthrough block

    def __repr__(self):
        return f"B{self.id}@{self.start}"


@dataclass
class _Loop:
    header: _Block
    kind: str          # "for" | "while"
    body: set          # blocks, header included
    body_entry: _Block
    exit: object       # _Block or None (left only by return)
    guard: object = None  # the top test block of a rotated while loop with `continue`


@dataclass
class _Region:
    loop: object = None   # _Loop, or None for the function / an inlined exit
    entry: object = None
    end: object = None    # a block where the region ends (code run before a break)
    ipdom: dict = field(default_factory=dict)
    reach: dict = field(default_factory=dict)


@dataclass
class _Edge:
    blk: object
    stack: list


class _State:
    """The abstract machine state of one path: stack, emitted statements, the line of
    the statement being built, and whether we are inside a comprehension body."""

    def __init__(self, stack, comp=False, frozen=frozenset()):
        self.stack = stack
        self.stmts = []
        self.line = None
        self.comp = comp
        self.frozen = frozen  # ids of values computed before an enclosing branch
        self.kept = None      # the test an and/or keeps on the stack, in its arms
        self.kept_used = False


class _NeedSpill(Exception):
    """An arm of an If needs a value computed before the branch (ident: its id) to be
    assigned to a temporary before the If: it would otherwise be evaluated after the
    test (a call), or after a statement of the arm rebinds it (a name)."""

    def __init__(self, ident):
        self.ident = ident


class _NotCondition(Exception):
    """Raised inside a sandboxed block run that turns out not to be a pure condition."""


# ----------------------------------------------------------------------- the lifter

class _Lifter:
    def __init__(self, code: CodeType, globals_: dict, qualname: str, dot0=None):
        self.code = code
        self.globals = globals_
        self.qualname = qualname
        self.dot0 = dot0  # 3.11 <listcomp> code: the iterator passed as `.0`
        self.ins = _bc.normalise(code)
        self.cur_line = code.co_firstlineno
        self.ntemp = 0
        self._terminal = {}
        self._cond_memo = {}
        self._build_cfg()
        self._refuse_constructs()
        # Block interpretations allowed: lifting is linear for ordinary code; pathological
        # conditions (chained comparisons needing temporaries inside conditional
        # expressions used as tests) duplicate code, and this bounds the damage.
        self.work, self.budget = 0, 200 * len(self.blocks) + 5000
        self._find_loops()

    # ------------------------------------------------------------------ errors
    def error(self, construct, line=None, hint=""):
        return UnsupportedError(construct, function=self.qualname, filename=self.code.co_filename,
                                line=line if line is not None else self.cur_line, hint=hint)

    def _refuse_constructs(self):
        """Raise for the first construct bytrev does not support (known by its opcode) in
        code that can run, before the loop analysis: such a construct can shape control
        flow in ways the loop analysis would misreport (a `with` whose body breaks out of
        a loop adds an exit that looks like a loop's else clause)."""
        for b in sorted(self.rpo, key=lambda b: b.start):
            for x in self.ins[b.start:b.end]:
                if x.op in UNSUPPORTED_OPS:
                    construct, hint = UNSUPPORTED_OPS[x.op]
                    raise self.error(construct, x.line, hint)

    # ------------------------------------------------------------------ CFG
    def _build_cfg(self):
        ins = self.ins
        n = len(ins)
        if n == 0:
            raise self.error("empty function body")
        leaders = {0}
        for i, x in enumerate(ins):
            if x.target is not None:
                if not 0 <= x.target < n:
                    raise self.error(f"opcode {x.op} (jump outside the function)", x.line)
                leaders.add(x.target)
            if x.op in _bc.TERMINATORS and i + 1 < n:
                leaders.add(i + 1)
            if x.op == "FOR_ITER":  # a loop header is a block of its own
                leaders.add(i)
        starts = sorted(leaders)
        self.blocks = []
        self.block_at = {}
        for k, s in enumerate(starts):
            e = starts[k + 1] if k + 1 < len(starts) else n
            b = _Block(k, s, e)
            self.blocks.append(b)
            self.block_at[s] = b

        def raw_succ(b):
            last = ins[b.end - 1]
            fall = self.block_at.get(b.end) if last.op not in _bc.NO_FALLTHROUGH else None
            jump = self.block_at[last.target] if last.target is not None else None
            return fall, jump

        def bare_target(b):
            """Where a block that does nothing (NOPs, then a jump or falling through) leads."""
            if not all(x.op == "NOP" for x in ins[b.start:b.end - 1]):
                return None
            last = ins[b.end - 1]
            if last.op == "JUMP":
                return self.block_at[last.target]
            if last.op == "NOP":
                return self.block_at.get(b.end)
            return None

        def thread(b):
            seen = set()
            while b is not None and b.id not in seen and bare_target(b) is not None:
                seen.add(b.id)
                b = bare_target(b)
            return b

        self.jumps_back = {}  # block id -> ends of the jumps (threaded) back to it
        for b in self.blocks:
            fall, jump = raw_succ(b)
            b.fall, b.jump = thread(fall), thread(jump)
            b.succs = [s for s in (b.fall, b.jump) if s is not None]
            if b.jump is not None and b.jump.start <= b.start:
                self.jumps_back.setdefault(b.jump.id, []).append(b.end)
        self.entry = thread(self.blocks[0])
        # Reachable blocks, predecessors, reverse postorder.
        order, seen = [], set()

        def dfs(b):
            stack = [(b, iter(b.succs))]
            seen.add(b.id)
            while stack:
                node, it = stack[-1]
                for s in it:
                    if s.id not in seen:
                        seen.add(s.id)
                        stack.append((s, iter(s.succs)))
                        break
                else:
                    stack.pop()
                    order.append(node)
        dfs(self.entry)
        self.rpo = order[::-1]
        for b in self.rpo:
            for s in b.succs:
                s.preds.append(b)
        # Dominators (iterative, on reverse postorder).
        idx = {b.id: i for i, b in enumerate(self.rpo)}
        idom = {self.entry.id: self.entry}
        changed = True
        while changed:
            changed = False
            for b in self.rpo[1:]:
                ps = [p for p in b.preds if p.id in idom]
                if not ps:
                    continue
                new = ps[0]
                for p in ps[1:]:
                    a, c = p, new
                    while a is not c:
                        while idx[a.id] > idx[c.id]:
                            a = idom[a.id]
                        while idx[c.id] > idx[a.id]:
                            c = idom[c.id]
                    new = a
                if idom.get(b.id) is not new:
                    idom[b.id] = new
                    changed = True
        self.idom = idom

    def dominates(self, a, b) -> bool:
        while True:
            if a is b:
                return True
            if b is self.entry:
                return False
            b = self.idom[b.id]

    def term(self, b) -> Ins:
        return self.ins[b.end - 1]

    # ------------------------------------------------------------------ loops
    def _find_loops(self):
        back = [(b, s) for b in self.rpo for s in b.succs if self.dominates(s, b)]
        targets = {}
        for b, s in back:
            targets.setdefault(s.id, (s, []))[1].append(b)
        for b in self.rpo:  # a for loop whose body never loops back is still a loop
            if self.term(b).op == "FOR_ITER":
                targets.setdefault(b.id, (b, []))
        self.loop_heads = {sid for sid in targets}  # conservative, while guards are found
        self.loops = {}

        def natural(h, srcs):
            body = {h.id}
            work = [s for s in srcs]
            while work:
                x = work.pop()
                if x.id not in body:
                    body.add(x.id)
                    work.extend(x.preds)
            # ... plus the blocks laid out inside the loop (3.12+ copy exit blocks there)
            # (a bare `JUMP h` ending the body is threaded away: its position still counts)
            end = max([s.end for s in srcs] + [h.end] + self.jumps_back.get(h.id, []))
            if self.term(h).op == "FOR_ITER":
                end = max(end, self.term(h).target)
            for b in self.rpo:
                if h.start <= b.start < end and self.dominates(h, b):
                    body.add(b.id)
            return body, end

        ranges = {sid: natural(h, srcs) for sid, (h, srcs) in targets.items()}

        # Guards of rotated while loops with `continue` (see the module docstring).
        guard_of = {}
        for sid, (g, srcs) in sorted(targets.items(), key=lambda kv: kv[1][0].start):
            if self.term(g).op == "FOR_ITER":
                continue
            h = self._guarded_loop(g)
            if h is None or h.id not in targets or h is g or not self.dominates(g, h):
                continue
            hbody, hend = ranges[h.id]
            if all(s.id in hbody for s in srcs):
                guard_of[h.id] = g
        guards = {g.id for g in guard_of.values()}
        self.loop_heads = {sid for sid in targets if sid not in guards}

        for sid in self.loop_heads:
            h, srcs = targets[sid]
            body_ids, _ = ranges[sid]
            body = {b for b in self.rpo if b.id in body_ids}
            guard = guard_of.get(sid)
            if self.term(h).op == "FOR_ITER":
                loop = _Loop(h, "for", body, h.fall, h.jump, guard)
                self._check_exits(loop, {h.jump})
            else:
                loop = _Loop(h, "while", body, h, None, guard)
                loop.exit = self._while_exit(loop)
            self.loops[sid] = loop

    def _exit_candidates(self, loop):
        out = []
        for b in loop.body:
            for s in b.succs:
                if s in loop.body or s is loop.header or s is loop.guard:
                    continue
                if s is not loop.exit:
                    s = self._skip_pops(s, loop)
                if s not in out and s is not loop.header:
                    out.append(s)
        return out

    def _while_exit(self, loop):
        cands = self._exit_candidates(loop)
        if len(cands) <= 1:
            return cands[0] if cands else None
        live = [c for c in cands if not self.is_terminal(c)]
        if len(live) > 1:
            # The loop test's exit, when the other exits only run some code on the way to
            # it (the statements before a `break` that falls out of the loop).
            tests = {s.id for b in [loop.header] + loop.header.preds if b in loop.body for s in b.succs}
            for e in live:
                if e.id in tests and all(self.breaks_to(c, e, loop) for c in live if c is not e):
                    return e
            raise self.error("loop with an else clause, or a while loop whose test needs a "
                             "temporary together with continue", self.loop_line(loop),
                             hint="move the else block after the loop, using a flag; compute a "
                                  "computed middle operand of a chained comparison into a variable")
        return live[0] if live else None

    def breaks_to(self, b, exit_, loop):
        """Whether every path from b (outside the loop body) ends at the loop's exit or
        in a return, without coming back into the loop."""
        seen, work = set(), [b]
        while work:
            x = work.pop()
            if x is exit_ or x.id in seen:
                continue
            seen.add(x.id)
            if (x in loop.body or x is loop.header or x is loop.guard or x.id in self.loop_heads
                    or self.term(x).op == "FOR_ITER"):
                return False
            if not x.succs and self.term(x).op != "RETURN_VALUE":
                return False
            work.extend(x.succs)
        return True

    def loop_line(self, loop):
        """The line of the loop statement: FOR_ITER's, or the test at the bottom of a
        rotated while loop (whose first block is the first statement of the body)."""
        if loop.kind == "for":
            return self.term(loop.header).line
        latch = max((b for b in loop.header.preds if b in loop.body), key=lambda b: b.start,
                    default=loop.header)
        return self.term(latch).line

    def _check_exits(self, loop, allowed):
        for c in self._exit_candidates(loop):
            if c not in allowed and not self.is_terminal(c):
                raise self.error("loop with an else clause", self.term(loop.header).line,
                                 hint="move the else block after the loop, using a flag")

    def _skip_pops(self, b, loop=None):
        """Follow blocks that only pop the stack (CPython's cleanup of an abandoned
        chained comparison, of a for loop's iterator) to where they lead."""
        seen = set()
        while b.id not in seen and (loop is None or b not in loop.body) and self.is_pop_block(b):
            seen.add(b.id)
            nxt = b.jump if self.term(b).op == "JUMP" else b.fall
            if nxt is None:
                break
            b = nxt
        return b

    def is_pop_block(self, b) -> bool:
        body = self.ins[b.start:b.end]
        last = body[-1]
        if last.op == "JUMP":
            body = body[:-1]
        elif last.op in _bc.TERMINATORS:
            return False
        return bool(body) and all(x.op in ("POP_TOP", "NOP") for x in body)

    def is_terminal(self, b) -> bool:
        """Whether every path from b ends in a return without entering a loop."""
        return self._terminal_size(b) is not None

    def _terminal_size(self, b):
        """The number of instructions reachable from b if b is terminal, else None."""
        key = (b.id, frozenset(self.loop_heads))
        if key not in self._terminal:
            seen, work, size = set(), [b], 0
            while work:
                x = work.pop()
                if x.id in seen:
                    continue
                seen.add(x.id)
                size += x.end - x.start
                if (x.id in self.loop_heads or self.term(x).op == "FOR_ITER"
                        or (not x.succs and self.term(x).op != "RETURN_VALUE")):
                    size = None
                    break
                work.extend(x.succs)
            self._terminal[key] = size
        return self._terminal[key]

    def _guarded_loop(self, g):
        """If block g is the top test of a rotated while loop, the loop's body block."""
        try:
            c, t, f = self.condition_at(g, [], None)
        except Exception:
            return None
        for side in (t, f):
            h = side.blk
            if (side.stack == [] and h.id in self.loop_heads and self.term(h).op != "FOR_ITER"):
                return h
        return None

    # ------------------------------------------------------------------ regions
    def region_succs(self, R, b):
        L = self.loops.get(b.id)
        if L is not None and L is not R.loop:
            return [self.classify(R, L.exit)] if L.exit is not None else [END]
        t = self.term(b)
        if t.op in ("RETURN_VALUE", "RAISE_VARARGS", "RERAISE") or not b.succs:
            return [END]
        return [self.classify(R, s) for s in b.succs]

    def classify(self, R, s):
        L = R.loop
        if s is R.end:
            return END
        if L is None:
            return s
        if s is L.header or s is L.guard or s not in L.body:
            return END
        return s

    def ipdom(self, R, b):
        if not R.ipdom:
            self._postdominators(R)
        return R.ipdom.get(b.id, END)

    def _postdominators(self, R):
        nodes, order, seen = {}, [], set()
        work = [R.entry]
        while work:
            x = work.pop()
            if x is END or x.id in seen:
                continue
            seen.add(x.id)
            nodes[x.id] = x
            order.append(x)
            work.extend(self.region_succs(R, x))
        succ = {x.id: [s for s in self.region_succs(R, x)] for x in order}
        allset = set(nodes) | {"END"}
        pdom = {i: set(allset) for i in nodes}
        changed = True
        while changed:
            changed = False
            for x in reversed(order):
                acc = None
                for s in succ[x.id]:
                    ps = {"END"} if s is END else pdom[s.id]
                    acc = set(ps) if acc is None else acc & ps
                new = (acc or {"END"}) | {x.id}
                if new != pdom[x.id]:
                    pdom[x.id] = new
                    changed = True
        for i in nodes:
            cands = pdom[i] - {i}
            best = END
            for c in cands:
                if c == "END":
                    continue
                if pdom[c] == cands:
                    best = nodes[c]
                    break
            R.ipdom[i] = best

    def reach(self, R, b):
        """Ids of the blocks of region R reachable from b (b included)."""
        if self.classify(R, b) is END:
            return frozenset()
        if b.id not in R.reach:
            seen, work = set(), [b]
            while work:
                x = work.pop()
                if x is END or x.id in seen:
                    continue
                seen.add(x.id)
                work.extend(self.region_succs(R, x))
            R.reach[b.id] = frozenset(seen)
        return R.reach[b.id]

    def loop_region(self, L):
        if not hasattr(L, "_region"):
            L._region = _Region(L, L.body_entry)
        return L._region

    # ------------------------------------------------------------------ the stack
    def new_temp(self):
        self.ntemp += 1
        return ir.Name(f"${self.ntemp}")

    def pop(self, st, ins):
        if not st.stack:
            raise self.error(f"opcode {ins.op} (stack underflow)", ins.line)
        return st.stack.pop()

    def expr(self, st, v, ins):
        """`v` as an IR expression (markers with an expression form are converted)."""
        if isinstance(v, _ListBuilder):
            return ir.List(())
        if isinstance(v, _InPlace):
            return self._inplace_to_temp(st, v)
        if isinstance(v, _Marker) or v is None:
            raise self.error(f"opcode {ins.op} on an internal value ({v!r})", ins.line)
        return v

    def pop_expr(self, st, ins):
        return self.expr(st, self.pop(st, ins), ins)

    def _inplace_to_temp(self, st, v):
        t = self.new_temp()
        self._append(st, ir.Assign(t, v.target), reset=False)
        self._append(st, ir.AugAssign(t, v.op, v.value), reset=False)
        return t

    def spill(self, st, upto=None, names=frozenset()):
        """Assign pending stack values that must be evaluated now to temporaries, bottom
        of the stack first (see the module docstring)."""
        stack = st.stack
        n = len(stack) if upto is None else upto
        for k in range(n):
            v = stack[k]
            if id(v) in st.frozen and (not _trivial(v) or (names and ir.names_read(v) & names)):
                raise _NeedSpill(id(v))
            if isinstance(v, _InPlace):
                stack[k] = self._inplace_to_temp(st, v)
            elif isinstance(v, _Iter):
                if v.started:
                    continue
                if not _trivial(v.expr) or (names and ir.names_read(v.expr) & names):
                    t = self.new_temp()
                    self._append(st, ir.Assign(t, v.expr), reset=False)
                    v.expr = t
            elif isinstance(v, _Marker):
                continue
            elif not _trivial(v) or (names and ir.names_read(v) & names):
                t = self.new_temp()
                self._append(st, ir.Assign(t, v), reset=False)
                stack[k] = t

    def emit(self, st, stmt, rebinds=frozenset()):
        """Emit a statement after spilling what it must not overtake. (A comprehension
        body only holds structure, evaluated as one expression: nothing to spill.)"""
        if not st.comp:
            self.spill(st, names=frozenset(rebinds))
        if st.frozen:
            exprs = _stmt_exprs(stmt)
            if st.kept is not None and isinstance(stmt, (ir.Return, ir.Assign)) and stmt.value is st.kept:
                exprs = exprs[:-1]  # see _if_arms
                st.kept_used = True
            self.check_frozen(st.frozen, exprs)
        self._append(st, stmt)

    def _append(self, st, stmt, reset=True):
        if st.comp and not isinstance(stmt, (_Append, ir.If, ir.For)):
            raise self.error("list comprehension too complex to lift", st.line or self.cur_line,
                             hint="write it as a for loop")
        if not stmt.line:
            stmt.line = st.line or self.cur_line
        st.stmts.append(stmt)
        if reset:
            st.line = None

    # ------------------------------------------------------------------ one block
    def exec_block(self, b, st):
        """Interpret block b's instructions on `st`. Returns the terminator as
        ("return", value) | ("jump", block) | ("cond", test, T _Edge, F _Edge, keeps)."""
        self.work += 1
        if self.work > self.budget:
            raise self.error("control flow too complex to lift", self.ins[b.start].line,
                             hint="split the function into smaller ones")
        ins = self.ins
        i = b.start
        while i < b.end:
            x = ins[i]
            self.cur_line = x.line
            if st.line is None and x.op != "JUMP":  # (a jump closing an if's arm starts none)
                st.line = x.line
            if i == b.end - 1 and x.op in _bc.TERMINATORS:
                return self._terminator(b, st, x)
            handler = _HANDLERS.get(x.op)
            if handler is None:
                construct, hint = UNSUPPORTED_OPS.get(x.op, (f"opcode {x.op}", ""))
                raise self.error(construct, x.line, hint)
            self.pc, self.block_end = i, b.end
            try:
                # A handler may consume the instructions after its own (returns how many).
                i += 1 + (handler(self, st, x) or 0)
            except (UnsupportedError, _NeedSpill):
                raise
            except Exception as exc:  # a bug or an unexpected shape: never leak it
                raise self.error(f"opcode {x.op} in this position", x.line,
                                 hint=f"internal lifter error {exc!r}; please report") from exc
            if all(isinstance(v, _Iter) and v.started for v in st.stack):
                # Nothing of a statement is pending (after a `pass`, an expression
                # statement with no effect, a 3.12+ comprehension restoring its variable):
                # the next statement is on the line of its own first instruction.
                st.line = None
        return ("jump", b.fall)

    def _terminator(self, b, st, x):
        op = x.op
        if op == "JUMP":
            return ("jump", b.jump)
        if op == "RETURN_VALUE":
            return ("return", self.pop_expr(st, x))
        if op in ("POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE"):
            c = self.pop_expr(st, x)
            jump, fall = _Edge(b.jump, list(st.stack)), _Edge(b.fall, list(st.stack))
            if op == "POP_JUMP_IF_FALSE":
                return ("cond", c, fall, jump, False)
            return ("cond", c, jump, fall, False)
        if op in ("JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP"):
            if not st.stack:
                raise self.error(f"opcode {op} (stack underflow)", x.line)
            c = self.expr(st, st.stack[-1], x)
            st.stack[-1] = c
            kept, popped = _Edge(b.jump, list(st.stack)), _Edge(b.fall, list(st.stack[:-1]))
            if op == "JUMP_IF_FALSE_OR_POP":
                return ("cond", c, popped, kept, True)
            return ("cond", c, kept, popped, True)
        if op == "FOR_ITER":
            raise self.error("for loop of an unexpected shape", x.line)
        construct, hint = UNSUPPORTED_OPS.get(op, (f"opcode {op}", ""))
        raise self.error(construct, x.line, hint)

    # ------------------------------------------------------------------ walking regions
    def walk(self, blk, stop, R, st, jumped=False) -> bool:
        """Lift the blocks from `blk` until `stop` (a block, or END for the region's end).
        Returns whether control reaches `stop`. `jumped`: blk is the target of a jump
        still to be classified (it may be a break, a continue, ...)."""
        if jumped:
            r = self.edge(blk, stop, R, st)
            if r is not None:
                return r
        while True:
            if blk is stop:
                return True
            L = self.loops.get(blk.id)
            if L is not None and L is not R.loop:
                self.do_loop(L, st)
                if L.exit is None:
                    return False
                nxt = L.exit
            else:
                t = self.exec_block(blk, st)
                if t[0] == "return":
                    self.emit(st, ir.Return(t[1]))
                    return False
                if t[0] == "cond":
                    nxt = self.do_if(blk, t, R, st, stop)
                    if nxt is None:
                        return False
                    if nxt is END:
                        return True
                    blk = nxt
                    continue
                nxt = t[1]
                if nxt is None:
                    raise self.error("control flow falling off the end of the code")
            r = self.edge(nxt, stop, R, st)
            if r is not None:
                return r
            blk = nxt

    def edge(self, nxt, stop, R, st):
        """Follow a jump to `nxt`: None to keep walking there, else whether `stop` is
        reached (after emitting break/continue/the code of an inlined exit)."""
        if nxt is stop:
            return True
        if nxt is R.end:
            return True  # the code before a break reached the loop's exit
        L = R.loop
        if L is None:
            return None
        if nxt is L.header:
            if stop is END:
                return True  # the natural end of the loop body
            self.emit(st, ir.Continue())
            return False
        if nxt is L.guard:
            self.emit(st, self.continue_test(L, st))
            return False
        if nxt in L.body:
            return None
        # Leaving the loop: run cleanup blocks that only pop (for loop iterator, the
        # operand of an abandoned chained comparison), then break or inline the exit.
        seen = set()
        while nxt not in L.body and nxt is not L.exit and self.is_pop_block(nxt) and nxt.id not in seen:
            seen.add(nxt.id)
            t = self.exec_block(nxt, st)
            nxt = t[1]
        if nxt is L.exit:
            self.emit(st, ir.Break())
            return False
        if nxt is L.header:
            self.emit(st, ir.Continue())
            return False
        if self.is_terminal(nxt):
            self.walk(nxt, END, _Region(None, nxt), st)
            return False
        if L.exit is not None and self.breaks_to(nxt, L.exit, L):
            # statements run before leaving the loop (a break that falls out of it)
            if self.walk(nxt, END, _Region(None, nxt, L.exit), st):
                self.emit(st, ir.Break())
            return False
        if nxt.id in self.loop_heads:
            # The test of a rotated `while` loop is not a pure expression (it needs a
            # temporary), so `continue`'s jump to it is a jump to an enclosing loop.
            raise self.error("continue in a while loop whose test needs a temporary",
                             hint="compute the test (or the middle of a chained comparison) "
                                  "into a variable first")
        raise self.error("unsupported control flow (a jump out of a loop)")

    def continue_test(self, L, st):
        """A jump to rotated while loop L's top test G: `if test: continue` else exit."""
        line = st.line or self.cur_line
        c, t, f = self.condition_at(L.guard, list(st.stack), None)
        if t.blk is L.header:
            test, out = c, f
        elif f.blk is L.header:
            test, out = _negate(c), t
        else:
            raise self.error("while loop of an unexpected shape", line)
        x = _State(list(out.stack), st.comp, st.frozen)
        if self.edge(out.blk, None, self.loop_region(L), x) is None:
            raise self.error("while loop of an unexpected shape", line)
        return _ContinueTest(test, x.stmts, line)

    # ------------------------------------------------------------------ loops
    def do_loop(self, L, st):
        line = st.line or self.ins[L.header.start].line
        R = self.loop_region(L)
        if L.kind == "while":
            self.spill(st)
            body = _State(list(st.stack), st.comp, st.frozen)
            self.walk(L.header, END, R, body)
            self.emit(st, ir.While(ir.Const(True), body.stmts, line))
            return
        if not st.stack or not isinstance(st.stack[-1], _Iter):
            raise self.error("for loop of an unexpected shape", line)
        it = st.stack[-1]
        comp = st.comp or (len(st.stack) >= 2 and isinstance(st.stack[-2], _ListBuilder))
        if not comp:
            self.spill(st, upto=len(st.stack) - 1)
        it.started = True
        item = _ForItem()
        body = _State(list(st.stack) + [item], comp, st.frozen)
        body.line = None
        self.walk(L.body_entry, END, R, body)
        st.stack.pop()  # the iterator, exhausted
        if item.target is None:
            raise self.error("for loop whose target is not a variable", line)
        loop = ir.For(item.target, it.expr, body.stmts, line)
        if comp and st.stack and isinstance(st.stack[-1], _ListBuilder):
            st.stack[-1] = self.to_listcomp(loop)
            st.line = st.line or line
        elif comp:
            self._append(st, loop)
        else:
            if self._has_append(loop.body):
                raise self.error("list comprehension of an unexpected shape", line)
            self.emit(st, loop, rebinds=ir.target_names(item.target))

    def _has_append(self, stmts):
        for s in stmts:
            if isinstance(s, _Append):
                return True
            for sub in ("body", "orelse"):
                if self._has_append(getattr(s, sub, ())):
                    return True
        return False

    def to_listcomp(self, loop: ir.For):
        """The comprehension a for loop with LIST_APPEND in its body builds."""
        comp = self._to_listcomp(loop)
        bound = set()
        for clause in comp.loops:
            bound |= ir.target_names(clause.target)
        if any(isinstance(e, ir.MakeFunction) and set(e.closure) & bound for e in _all_exprs(comp)):
            # The IR's closures are the enclosing function's cells, not the variables of
            # a comprehension (which 3.12+ also keep in the function's cells).
            raise self.error("nested function capturing a comprehension variable", loop.line,
                             hint="build the functions with a for loop")
        return comp

    def _to_listcomp(self, loop: ir.For):
        loops = []
        target, it, conds, body = loop.target, loop.iter, [], loop.body
        while True:
            if len(body) != 1:
                raise self.error("list comprehension too complex to lift", loop.line,
                                 hint="write it as a for loop")
            s = body[0]
            if isinstance(s, _Append):
                loops.append(ir.CompFor(target, it, tuple(conds)))
                return ir.ListComp(s.value, tuple(loops))
            if isinstance(s, ir.If) and s.body and not s.orelse:
                conds.append(s.test)
                body = s.body
            elif isinstance(s, ir.If) and s.orelse and not s.body:
                conds.append(_negate(s.test))
                body = s.orelse
            elif isinstance(s, ir.For):
                loops.append(ir.CompFor(target, it, tuple(conds)))
                target, it, conds, body = s.target, s.iter, [], s.body
            else:
                raise self.error("list comprehension too complex to lift", loop.line,
                                 hint="write it as a for loop")

    # ------------------------------------------------------------------ conditions
    def condition_at(self, blk, stack, R):
        """Run a condition-only block (and the condition blocks chained to it) from
        `stack` in a sandbox: (test, T edge, F edge), or raise _NotCondition."""
        r = self._cond_block(blk, stack)
        if r is None:
            raise _NotCondition()
        c, t, f, keeps = r
        used = {blk.id}
        t, f = self.resolve(t, used, R), self.resolve(f, used, R)
        return self.extend_cond(c, t, f, used, R, None)

    def sandbox(self, blk, stack):
        """Run block `blk` on a copy of `stack` where no statement may be emitted:
        (terminator, state) or None."""
        saved = self.ntemp
        st = _State(list(stack), comp=True)
        try:
            t = self.exec_block(blk, st)
            if st.stmts:
                return None
            return t, st
        except Exception:
            return None
        finally:
            self.ntemp = saved

    def _cond_block(self, blk, stack):
        r = self.sandbox(blk, stack)
        if r is None or r[0][0] != "cond" or r[0][4]:
            return None
        return r[0][1:]

    def _in_region(self, blk, R):
        if blk.id in self.loop_heads:
            return False
        if R is None or R.loop is None:
            return True
        L = R.loop
        return blk in L.body and blk is not L.header and blk is not L.guard

    def resolve(self, e, used, R, join=None):
        """Skip blocks that only shuffle the stack and jump on (no statements, entered
        only from the condition being built), stopping at the branch's join."""
        seen = set()
        while (e.blk.id not in seen and e.blk is not join and self._in_region(e.blk, R)
               and all(p.id in used for p in e.blk.preds)):
            seen.add(e.blk.id)
            r = self.sandbox(e.blk, e.stack)
            if r is None or r[0][0] != "jump" or r[0][1] is None:
                break
            used.add(e.blk.id)
            e = _Edge(r[0][1], r[1].stack)
        return e

    def same(self, a, b) -> bool:
        """Whether jumping to edge a or to edge b does the same thing."""
        if a.blk is b.blk:  # (equal stacks: the same values, or equal trivial ones)
            return len(a.stack) == len(b.stack) and all(
                x is y or (_trivial(x) and not isinstance(x, _Marker) and x == y)
                for x, y in zip(a.stack, b.stack))
        # Different blocks: the same if both are small copies of one exit block (CPython
        # 3.12+ duplicate exit blocks of a few instructions).
        na, nb = self._terminal_size(a.blk), self._terminal_size(b.blk)
        if na is not None and nb is not None and na <= SMALL_EXIT and nb <= SMALL_EXIT:
            sa, sb = self._sandbox_terminal(a), self._sandbox_terminal(b)
            return sa is not None and sb is not None and _same_stmts(sa, sb)
        return False

    def _sandbox_terminal(self, e):
        saved = self.ntemp
        try:
            st = _State(list(e.stack))
            self.walk(e.blk, END, _Region(None, e.blk), st)
            return st.stmts
        except Exception:
            return None
        finally:
            self.ntemp = saved

    def _try_cond(self, e, used, R, join, barrier):
        """If edge e leads to a block that only computes a condition: (c, T, F, used').
        `barrier`: ids of blocks the enclosing condition still jumps to (not to be
        absorbed). Memoised: extending a condition looks at the same blocks many times."""
        key = (e.blk.id, tuple(map(id, e.stack)), frozenset(used), id(join), id(R), barrier)
        hit = self._cond_memo.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], e.stack)):
            return hit[1]
        r = self._try_cond_uncached(e, used, R, join, barrier)
        self._cond_memo[key] = (tuple(e.stack), r)
        return r

    def _try_cond_uncached(self, e, used, R, join, barrier):
        blk = e.blk
        if (blk is join or blk.id in barrier or not self._in_region(blk, R)
                or any(p.id not in used for p in blk.preds)):
            return None
        r = self._cond_block(blk, e.stack)
        if r is None:
            return None
        c, t, f, _ = r
        used2 = set(used) | {blk.id}
        t, f = self.resolve(t, used2, R, join), self.resolve(f, used2, R, join)
        # the whole condition starting here: `a or (b and c)` needs `b and c` first
        c, t, f = self.extend_cond(c, t, f, used2, R, join, barrier)
        return c, t, f, used2

    def extend_cond(self, c, t, f, used, R, join, barrier=frozenset()):
        """Merge chains of condition-only blocks into one `and`/`or` condition
        (`if a and b:` jumps to the same else block from both tests)."""
        while True:
            r = self._try_cond(t, used, R, join, barrier | {f.blk.id})
            if r is not None:
                c2, t2, f2, used2 = r
                if self.same(f2, f):      # a and b
                    c, t, used = ir.BoolOp("and", c, c2), t2, used2
                    continue
                if self.same(t2, f):      # a and not b
                    c, t, used = ir.BoolOp("and", c, _negate(c2)), f2, used2
                    continue
            r = self._try_cond(f, used, R, join, barrier | {t.blk.id})
            if r is not None:
                c2, t2, f2, used2 = r
                if self.same(t2, t):      # a or b
                    c, f, used = ir.BoolOp("or", c, c2), f2, used2
                    continue
                if self.same(f2, t):      # a or not b
                    c, f, used = ir.BoolOp("or", c, _negate(c2)), t2, used2
                    continue
            rt = self._try_cond(t, used, R, join, barrier | {f.blk.id})
            rf = self._try_cond(f, used, R, join, barrier | {t.blk.id})
            if rt is not None and rf is not None:  # (x if c else y) as a condition
                if self.same(rt[1], rf[1]) and self.same(rt[2], rf[2]):
                    c = ir.IfExp(c, rt[0], rf[0])
                    t, f, used = rt[1], rt[2], rt[3] | rf[3]
                    continue
            return c, t, f

    # ------------------------------------------------------------------ if / and / or
    def do_if(self, blk, term, R, st, stop):
        """Lift a conditional jump at the end of `blk` inside a walk that ends at `stop`.
        Returns the join block where walking continues, END, or None when no arm
        reaches a join."""
        _, c, t, f, keeps = term
        join = self.ipdom(R, blk)
        used = {blk.id}
        t, f = self.resolve(t, used, R, join), self.resolve(f, used, R, join)
        if not keeps:
            c, t, f = self.extend_cond(c, t, f, used, R, join)
        if join is END:
            # No post-dominator: some path leaves early (return, break, continue). Join
            # where both arms meet again, else where the enclosing walk stops; arm paths
            # that go elsewhere end in an explicit jump. (Walking each arm to the end of
            # the region instead would copy the rest of it, twice per such if.)
            common = (self.reach(R, t.blk) & self.reach(R, f.blk)) - used
            join = min((self.blocks[i] for i in common), key=lambda b: b.start) if common else stop
        line = st.line
        nbase = 0
        while nbase < min(len(t.stack), len(f.stack)) and t.stack[nbase] is f.stack[nbase]:
            nbase += 1
        # Values pending below the branch (and a kept condition) were computed before
        # the test: an arm must not evaluate them after it (see _NeedSpill).
        # (A value an enclosing branch already guards is spilled by that branch: before
        # its test, not in its arm.)
        mine = {id(v) for v in t.stack[:nbase] + ([c] if keeps else [])
                if not isinstance(v, (_Marker, ir.Const))} - st.frozen
        while True:
            try:
                return self._if_arms(c, t, f, nbase, join, R, st, mine, line, keeps)
            except _NeedSpill as exc:
                if exc.ident not in mine:
                    raise
                # Spill it (and what was computed before it) before the If; walk again.
                st.stack, repl = list(t.stack[:nbase]), {}
                order = st.stack + ([c] if keeps else [])
                upto = next(k for k, v in enumerate(order) if id(v) == exc.ident)
                for k, v in enumerate(order[:upto + 1]):
                    if id(v) in mine and (k == upto or not _trivial(v)):
                        tmp = self.new_temp()
                        self._append(st, ir.Assign(tmp, v), reset=False)
                        repl[id(v)] = tmp
                        mine.discard(id(v))
                c = repl.get(id(c), c)
                t = _Edge(t.blk, [repl.get(id(v), v) for v in t.stack])
                f = _Edge(f.blk, [repl.get(id(v), v) for v in f.stack])
                st.line = line

    def _if_arms(self, c, t, f, nbase, join, R, st, mine, line, keeps):
        frozen = st.frozen | mine
        kept = c if keeps and id(c) in mine else None
        at, rt = self._arm(t, join, R, st, frozen, kept)
        af, rf = self._arm(f, join, R, st, frozen, kept)
        st.line = line
        if at.kept_used or af.kept_used:
            # 3.12+ copy `return <and/or value>` into both arms; one returns the kept
            # test itself. Merge them back, or else the test must go to a temporary.
            merged = _merge_duplicated(c, at.stmts, af.stmts, line) if not (rt or rf) else None
            if merged is None:
                raise _NeedSpill(id(c))
            st.stack = list(t.stack[:nbase])
            for stmt in merged:
                self.emit(st, stmt)
            return None
        if rt and rf and not at.stmts and not af.stmts:
            # Pure arms: the values they leave become IfExp / and / or expressions.
            ts, fs = at.stack, af.stack
            if len(ts) != len(fs):
                raise self.error("conditional expression of an unexpected shape", line)
            diffs = [k for k in range(len(ts)) if ts[k] is not fs[k]]
            if not diffs:
                st.stack = list(ts)
                if not _trivial(c):
                    self.emit(st, ir.If(c, [], [], line))
                return join
            if (len(diffs) == 1 or _trivial(c)) and not any(
                    isinstance(ts[k], _Marker) or isinstance(fs[k], _Marker) for k in diffs):
                merged = list(ts)
                for k in diffs:
                    self.check_frozen(frozen, [v for v in (ts[k], fs[k]) if v is not c])
                    merged[k] = _ifexp(c, ts[k], fs[k])
                st.stack = merged
                return join
        # Statement form: values the arms leave for the join go through temporaries.
        reaching = [a for a, r in ((at, rt), (af, rf)) if r]
        result = None
        if reaching:
            ref = reaching[0].stack
            if any(len(a.stack) != len(ref) for a in reaching):
                raise self.error("conditional expression of an unexpected shape", line)
            result = list(ref)
            for k in range(len(ref)):
                vals = [a.stack[k] for a in reaching]
                if all(v is vals[0] for v in vals) and (k < nbase or isinstance(vals[0], _Marker)):
                    continue
                if any(isinstance(v, _Marker) for v in vals):
                    raise self.error("conditional expression of an unexpected shape", line)
                self.check_frozen(frozen, vals)
                tmp = self.new_temp()
                for a in reaching:
                    a.stmts.append(ir.Assign(tmp, a.stack[k], line))
                result[k] = tmp
        st.stack = list(t.stack[:nbase])
        self.emit(st, ir.If(c, at.stmts, af.stmts, line))
        if not reaching:
            return None
        st.stack = result
        return join

    def _arm(self, e, join, R, st, frozen, kept=None):
        a = _State(list(e.stack), st.comp, frozen)
        a.kept = kept
        reached = self.walk(e.blk, join, R, a, jumped=True)
        return a, reached

    def check_frozen(self, frozen, exprs):
        """Raise _NeedSpill if an arm's statement evaluates a value computed before
        the branch (other than a constant or a variable)."""
        if not frozen:
            return
        for e in exprs:
            if isinstance(e, _Marker) or e is None:
                continue
            for node in ir.walk(e):
                if id(node) in frozen and not _trivial(node):
                    raise _NeedSpill(id(node))

    # ------------------------------------------------------------------ the whole function
    def run(self) -> list:
        st = _State([])
        R = _Region(None, self.entry)
        if self.walk(self.entry, END, R, st):
            raise self.error("control flow falling off the end of the code")
        return _finish(st.stmts)


def _merge_duplicated(c, body, orelse, line):
    """Arms ending in the same statements, after one assignment to the same name or one
    return each, on one line: the statement of a conditional value whose exit block
    CPython duplicated. Returns the statements with the value as an expression."""
    n = 0
    while n < min(len(body), len(orelse)) and _key(body[-1 - n]) == _key(orelse[-1 - n]):
        n += 1
    a, b = body[:len(body) - n], orelse[:len(orelse) - n]
    if len(a) != 1 or len(b) != 1:
        return None
    a, b = a[0], b[0]
    if type(a) is not type(b) or not isinstance(a, (ir.Return, ir.Assign)) or a.line != b.line:
        return None
    if isinstance(a, ir.Assign) and (not isinstance(a.target, ir.Name) or a.target != b.target):
        return None
    value = _ifexp(c, a.value, b.value)
    first = ir.Return(value, a.line) if isinstance(a, ir.Return) else ir.Assign(a.target, value, a.line)
    return [first] + body[len(body) - n:]


def _stmt_exprs(s):
    """The expressions a statement evaluates itself (not those of nested statements)."""
    if isinstance(s, (ir.Assign, ir.AugAssign)):
        return [s.target, s.value]
    if isinstance(s, (ir.ExprStmt, ir.Return, _Append)):
        return [s.value]
    if isinstance(s, (ir.If, ir.While)):
        return [s.test]
    if isinstance(s, ir.For):
        return [s.target, s.iter]
    return []


def _ifexp(c, a, b):
    """`a if c else b`, written as and/or when an arm is the test itself (the value
    JUMP_IF_*_OR_POP keeps), so the test is evaluated once."""
    if b is c:
        return ir.BoolOp("and", c, a)
    if a is c:
        return ir.BoolOp("or", c, b)
    return ir.IfExp(c, a, b)


# ----------------------------------------------------------------------- opcode handlers
# One handler per canonical opcode: (lifter, state, instruction) -> None.

def _push(st, v):
    st.stack.append(v)


def op_NOP(lf, st, x):
    pass


def op_LOAD_CONST(lf, st, x):
    _push(st, ir.Const(x.arg))


def op_LOAD_FAST(lf, st, x):
    if x.arg == ".0":  # 3.11 <listcomp>: the iterator argument
        _push(st, lf.dot0 if lf.dot0 is not None else _Iter(ir.Name(".0")))
    else:
        _push(st, ir.Name(x.arg))


def op_LOAD_FAST_AND_CLEAR(lf, st, x):
    _push(st, _Saved(x.arg))


def op_LOAD_CLOSURE(lf, st, x):
    _push(st, _CellRef(x.arg))


def op_LOAD_DEREF(lf, st, x):
    name, kind = x.arg
    _push(st, ir.FreeVar(name) if kind == "free" else ir.Name(name))


def op_LOAD_GLOBAL(lf, st, x):
    _push(st, ir.Global(x.arg))


def op_PUSH_NULL(lf, st, x):
    _push(st, NULL)


def op_LOAD_ATTR(lf, st, x):
    _push(st, ir.Attribute(lf.pop_expr(st, x), x.arg))


def _store(lf, st, x, target):
    v = lf.pop(st, x)
    if isinstance(v, _Saved):  # end of a 3.12+ inline comprehension
        if target != ir.Name(v.name):
            raise lf.error("comprehension of an unexpected shape", x.line)
        return
    if isinstance(v, _Slot):
        _fill(lf, st, x, v, target)
        return
    if isinstance(v, _ForItem):
        v.target = target
        st.line = None  # the loop header ends here; the body's first statement follows
        return
    if isinstance(v, _InPlace) and v.target == target:
        if isinstance(target, ir.Subscript):
            target = _unspill(st, target, v.value)
        stmt = ir.AugAssign(target, v.op, v.value)
    else:
        stmt = ir.Assign(target, lf.expr(st, v, x))
    lf.emit(st, stmt, rebinds=ir.target_names(target))


def _unspill(st, target, value):
    """`a[f(i)] += v`: CPython copies the container and the index (COPY), so they were
    assigned to temporaries just before. An augmented assignment evaluates its target
    once anyway, so put the expressions back: `a[f(i)] += v`, not `$1 = f(i); a[$1] += v`."""
    temps = {n for n in ir.names_read(target) if n.startswith("$")}
    if not temps or ir.names_read(value) & temps:
        return target
    subst = {}
    while (st.stmts and isinstance(st.stmts[-1], ir.Assign) and isinstance(st.stmts[-1].target, ir.Name)
           and st.stmts[-1].target.id in temps and st.stmts[-1].target.id not in subst):
        a = st.stmts.pop()
        subst[a.target.id] = a.value
    if any(ir.names_read(v) & temps for v in st.stack if not isinstance(v, _Marker)):
        for n, e in reversed(list(subst.items())):
            st.stmts.append(ir.Assign(ir.Name(n), e))  # still needed: leave them
        return target
    return _substitute(target, {n: e for n, e in subst.items()}, names=True)


def _fill(lf, st, x, slot, target):
    u = slot.unpack
    u.slots[slot.index] = target
    if any(s is None for s in u.slots):
        return
    tup = ir.Tuple(tuple(u.slots))
    if isinstance(u.parent, _Slot):
        _fill(lf, st, x, u.parent, tup)
    elif isinstance(u.parent, _ForItem):
        u.parent.target = tup
        st.line = None
    else:
        lf.emit(st, ir.Assign(tup, u.value), rebinds=ir.target_names(tup))


def _local_target(lf, x):
    """The local a STORE_FAST/STORE_DEREF writes (writes to nonlocals are unsupported)."""
    if x.op == "STORE_FAST":
        return x.arg
    name, kind = x.arg
    if kind == "free":
        raise lf.error(f"assignment to nonlocal '{name}'", x.line,
                       hint="return the new value instead")
    return name


def _store_names(lf, st, x):
    """STORE_FAST / STORE_DEREF. Consecutive stores of distinct values are one tuple
    assignment `a, b = b, a + b` (3.11+ drop the tuple and may reorder the stores);
    it is kept as one statement when that cannot reorder evaluations."""
    names = [_local_target(lf, x)]
    j = lf.pc + 1
    while j < lf.block_end and lf.ins[j].op in ("STORE_FAST", "STORE_DEREF"):
        names.append(_local_target(lf, lf.ins[j]))
        j += 1
    k = len(names)
    if 2 <= k <= len(st.stack) and len(set(names)) == k:
        vals = st.stack[-k:][::-1]  # in the order the stores pop them
        if (not any(isinstance(v, _Marker) for v in vals) and len({id(v) for v in vals}) == k
                and sum(not _trivial(v) for v in vals) <= 1):
            del st.stack[-k:]
            targets = ir.Tuple(tuple(ir.Name(n) for n in names))
            lf.emit(st, ir.Assign(targets, ir.Tuple(tuple(vals))), rebinds=set(names))
            return k - 1
    _store(lf, st, x, ir.Name(names[0]))


op_STORE_FAST = op_STORE_DEREF = _store_names


def op_STORE_GLOBAL(lf, st, x):
    raise lf.error(f"assignment to global '{x.arg}'", x.line, hint="return the new value instead")


def op_STORE_SUBSCR(lf, st, x):
    index = lf.pop_expr(st, x)
    container = lf.pop_expr(st, x)
    _store(lf, st, x, ir.Subscript(container, index))


def op_UNPACK_SEQUENCE(lf, st, x):
    v = lf.pop(st, x)
    if isinstance(v, (_Slot, _ForItem)):
        u = _Unpack(x.arg, v, None)
    else:
        u = _Unpack(x.arg, None, lf.expr(st, v, x))
    for i in reversed(range(x.arg)):
        _push(st, _Slot(u, i))


def op_POP_TOP(lf, st, x):
    v = lf.pop(st, x)
    if isinstance(v, _Slot):  # 3.13 `b, b = 2, 0`: the overwritten target is dropped
        _fill(lf, st, x, v, lf.new_temp())
        return
    if isinstance(v, _InPlace):
        raise lf.error("opcode POP_TOP on an internal value", x.line)
    if not _trivial(v):
        lf.emit(st, ir.ExprStmt(v))


def op_COPY(lf, st, x):
    n = x.arg
    if n > len(st.stack):
        raise lf.error("opcode COPY (stack underflow)", x.line)
    if not _trivial(st.stack[-n]):
        # A copied expression would be evaluated twice: evaluate it once, now.
        lf.spill(st, upto=len(st.stack) - n + 1)
    _push(st, st.stack[-n])


def op_SWAP(lf, st, x):
    n = x.arg
    s = st.stack
    if n > len(s):
        raise lf.error("opcode SWAP (stack underflow)", x.line)
    window = s[-n:]
    heavy = [v for v in window if not _trivial(v)]
    if len(heavy) >= 2 and (not _trivial(s[-1]) or not _trivial(s[-n])):
        # The swap would reorder two expressions: evaluate them in their order first.
        lf.spill(st)
    s[-1], s[-n] = s[-n], s[-1]


def op_BINARY_OP(lf, st, x):
    op, inplace = x.arg
    right = lf.pop_expr(st, x)
    left = lf.pop_expr(st, x)
    _push(st, _InPlace(left, op, right) if inplace else ir.BinOp(op, left, right))


def op_UNARY(lf, st, x):
    _push(st, ir.UnaryOp(x.arg, lf.pop_expr(st, x)))


def op_COMPARE(lf, st, x):
    right = lf.pop_expr(st, x)
    left = lf.pop_expr(st, x)
    _push(st, ir.Compare(x.arg, left, right))


def op_BINARY_SUBSCR(lf, st, x):
    index = lf.pop_expr(st, x)
    container = lf.pop_expr(st, x)
    _push(st, ir.Subscript(container, index))


def op_BUILD_SLICE(lf, st, x):
    step = lf.pop_expr(st, x) if x.arg == 3 else ir.Const(None)
    upper = lf.pop_expr(st, x)
    lower = lf.pop_expr(st, x)
    _push(st, ir.Slice(lower, upper, step))


def _pop_n(lf, st, x, n):
    if n > len(st.stack):
        raise lf.error(f"opcode {x.op} (stack underflow)", x.line)
    vals = st.stack[len(st.stack) - n:]
    del st.stack[len(st.stack) - n:]
    return vals


def op_BUILD_TUPLE(lf, st, x):
    vals = _pop_n(lf, st, x, x.arg)
    if vals and all(isinstance(v, _CellRef) for v in vals):
        _push(st, _CellTuple(tuple(v.name for v in vals)))
    else:
        _push(st, ir.Tuple(tuple(lf.expr(st, v, x) for v in vals)))


def op_BUILD_LIST(lf, st, x):
    if x.arg == 0:
        _push(st, _ListBuilder())
    else:
        vals = _pop_n(lf, st, x, x.arg)
        _push(st, ir.List(tuple(lf.expr(st, v, x) for v in vals)))


def op_LIST_EXTEND(lf, st, x):
    v = lf.pop_expr(st, x)
    i = x.arg
    base = st.stack[-i]
    if isinstance(v, ir.Const) and isinstance(v.value, (tuple, list)) and isinstance(base, (_ListBuilder, ir.List)):
        elts = () if isinstance(base, _ListBuilder) else base.elts
        st.stack[-i] = ir.List(elts + tuple(ir.Const(c) for c in v.value))
    else:
        raise lf.error("starred expression (*x) in a list display", x.line)


def op_LIST_APPEND(lf, st, x):
    v = lf.pop_expr(st, x)
    if not isinstance(st.stack[-x.arg], _ListBuilder) or not st.comp:
        raise lf.error("list display of an unexpected shape", x.line)
    lf._append(st, _Append(v))


def op_BUILD_MAP(lf, st, x):
    vals = _pop_n(lf, st, x, 2 * x.arg)
    vals = [lf.expr(st, v, x) for v in vals]
    _push(st, ir.Dict(tuple(vals[0::2]), tuple(vals[1::2])))


def op_BUILD_CONST_KEY_MAP(lf, st, x):
    keys = lf.pop_expr(st, x)
    vals = [lf.expr(st, v, x) for v in _pop_n(lf, st, x, x.arg)]
    if not isinstance(keys, ir.Const) or not isinstance(keys.value, tuple):
        raise lf.error("dict display of an unexpected shape", x.line)
    _push(st, ir.Dict(tuple(ir.Const(k) for k in keys.value), tuple(vals)))


def op_GET_ITER(lf, st, x):
    _push(st, _Iter(lf.pop_expr(st, x)))


def _call(lf, st, x, kwnames):
    args = _pop_n(lf, st, x, x.arg)
    if len(st.stack) < 2:
        raise lf.error(f"opcode {x.op} (stack underflow)", x.line)
    below, top = st.stack[-2], st.stack[-1]
    del st.stack[-2:]
    # 3.11/3.12 put NULL below the callable, 3.13 above it; a method call has the bound
    # object instead of NULL, which is simply the first argument.
    if below is NULL:
        func = top
    elif top is NULL:
        func = below
    else:
        func, args = below, [top] + args
    if isinstance(func, ir.MakeFunction) and func.code.co_name == "<listcomp>":
        if len(args) == 1 and isinstance(args[0], _Iter) and not kwnames:
            _push(st, lf.inline_listcomp(func, args[0], x))
            return
    func = lf.expr(st, func, x)
    args = [lf.expr(st, a, x) for a in args]
    if isinstance(func, ir.Global) and func.id in SIDE_EFFECT_BUILTINS and func.id not in lf.globals:
        raise lf.error(f"call to {func.id} (a side effect)", x.line, hint=SIDE_EFFECT_HINT)
    npos = len(args) - len(kwnames)
    _push(st, ir.Call(func, tuple(args[:npos]), tuple(zip(kwnames, args[npos:])), line=x.line))


def op_CALL(lf, st, x):
    _call(lf, st, x, ())


def op_CALL_KW(lf, st, x):
    names = lf.pop_expr(st, x)
    if not isinstance(names, ir.Const) or not isinstance(names.value, tuple):
        raise lf.error("call of an unexpected shape", x.line)
    _call(lf, st, x, names.value)


_COMPREHENSION_CODE = {"<genexpr>": "generator expression", "<setcomp>": "set comprehension",
                       "<dictcomp>": "dict comprehension"}


def op_MAKE_FUNCTION(lf, st, x):
    code = lf.pop_expr(st, x)
    if not isinstance(code, ir.Const) or not isinstance(code.value, CodeType):
        raise lf.error("function definition of an unexpected shape", x.line)
    code = code.value
    if code.co_name in _COMPREHENSION_CODE:
        raise lf.error(_COMPREHENSION_CODE[code.co_name], x.line,
                       hint="use a list comprehension or a for loop")
    fn = ir.MakeFunction(code)
    for flag in (0x08, 0x04, 0x02, 0x01):  # pops in reverse push order
        if x.arg & flag:
            fn = _set_function_attribute(lf, st, x, fn, flag, lf.pop(st, x))
    _push(st, fn)


def op_SET_FUNCTION_ATTRIBUTE(lf, st, x):
    fn = lf.pop(st, x)
    value = lf.pop(st, x)
    if not isinstance(fn, ir.MakeFunction):
        raise lf.error("function definition of an unexpected shape", x.line)
    _push(st, _set_function_attribute(lf, st, x, fn, x.arg, value))


def _set_function_attribute(lf, st, x, fn, flag, value):
    if flag == 0x08:
        if not isinstance(value, _CellTuple):
            raise lf.error("function definition of an unexpected shape", x.line)
        if fn.code.co_name != "<listcomp>" and set(value.names) & set(lf.code.co_freevars):
            # The IR's closure names this function's own cells only.
            raise lf.error("nested function capturing a variable of an enclosing function",
                           x.line, hint="pass the value as a default argument")
        return dataclasses.replace(fn, closure=value.names)
    if flag == 0x04:  # annotations: no effect on what the function computes
        return fn
    value = lf.expr(st, value, x)
    if flag == 0x02:
        if not isinstance(value, ir.Dict) or not all(
                isinstance(k, ir.Const) and isinstance(k.value, str) for k in value.keys):
            raise lf.error("keyword-only defaults of an unexpected shape", x.line)
        return dataclasses.replace(fn, kwdefaults=tuple(zip((k.value for k in value.keys), value.values)))
    if flag == 0x01:
        if isinstance(value, ir.Const) and isinstance(value.value, tuple):
            defaults = tuple(ir.Const(v) for v in value.value)
        elif isinstance(value, ir.Tuple):
            defaults = value.elts
        else:
            raise lf.error("defaults of an unexpected shape", x.line)
        return dataclasses.replace(fn, defaults=defaults)
    raise lf.error(f"function attribute {flag}", x.line)


_HANDLERS = {name[3:]: fn for name, fn in list(globals().items()) if name.startswith("op_")}


# ----------------------------------------------------------------------- 3.11 <listcomp>

def _inline_listcomp(self, fn: ir.MakeFunction, it: _Iter, x):
    """3.11 compiles `[e for v in xs]` into a nested code object called with iter(xs):
    lift that code and return its comprehension as an expression of this function."""
    sub = _Lifter(fn.code, self.globals, self.qualname, dot0=_Iter(it.expr))
    body = sub.run()
    if len(body) != 1 or not isinstance(body[0], ir.Return) or not isinstance(body[0].value, ir.ListComp):
        raise self.error("list comprehension too complex to lift", x.line, hint="write it as a for loop")

    # Its free variables are this function's cells (or free variables, passed through).
    mapping = {n: (ir.FreeVar(n) if n in self.code.co_freevars else ir.Name(n)) for n in fn.closure}
    return _substitute(body[0].value, mapping)


_Lifter.inline_listcomp = _inline_listcomp


def _all_exprs(e):
    """Every expression node inside e, comprehension elements and conditions included."""
    if isinstance(e, tuple):
        for v in e:
            yield from _all_exprs(v)
    elif dataclasses.is_dataclass(e) and not isinstance(e, type):
        if not isinstance(e, ir.CompFor):
            yield e
        for f in dataclasses.fields(e):
            yield from _all_exprs(getattr(e, f.name))


def _substitute(e, mapping, names=False):
    """Replace FreeVar(n) (or, with names=True, Name(n)) by mapping[n] in an expression."""
    if isinstance(e, ir.FreeVar) and not names:
        return mapping.get(e.id, e)
    if isinstance(e, ir.Name) and names:
        return mapping.get(e.id, e)
    if isinstance(e, (ir.Const, ir.Name, ir.Global, ir.FreeVar, CodeType, str)) or e is None:
        return e
    if isinstance(e, tuple):
        return tuple(_substitute(v, mapping, names) for v in e)
    if dataclasses.is_dataclass(e):
        return dataclasses.replace(e, **{f.name: _substitute(getattr(e, f.name), mapping, names)
                                         for f in dataclasses.fields(e)})
    return e


# ----------------------------------------------------------------------- tidying up

def _terminates(stmts) -> bool:
    if not stmts:
        return False
    s = stmts[-1]
    if isinstance(s, (ir.Return, ir.Break, ir.Continue, _ContinueTest)):
        return True
    return isinstance(s, ir.If) and _terminates(s.body) and _terminates(s.orelse)


def _loop_jumps(stmts, kinds):
    """Whether `stmts` contain a statement of `kinds` belonging to the enclosing loop."""
    for s in stmts:
        if isinstance(s, kinds):
            return True
        if isinstance(s, ir.If) and (_loop_jumps(s.body, kinds) or _loop_jumps(s.orelse, kinds)):
            return True
    return False


def _replace_continue_tests(stmts, test, exit_):
    """Turn the loop's `_ContinueTest`s into `continue` (None if one does not fit)."""
    out = []
    for s in stmts:
        if isinstance(s, _ContinueTest):
            if _key(s.test) != _key(test) or not _same_stmts(s.exit, exit_):
                return None
            out.append(ir.Continue(s.line))
        elif isinstance(s, ir.If):
            b = _replace_continue_tests(s.body, test, exit_)
            o = _replace_continue_tests(s.orelse, test, exit_)
            if b is None or o is None:
                return None
            out.append(ir.If(s.test, b, o, s.line))
        else:
            out.append(s)
    return out


def _rotated_while(s: ir.If):
    """`if t: [while True: B; if not t: X] R  else: Y`  ->  `while t: B` + exit code,
    the shape CPython gives every `while t:` loop."""
    for test, arm, other in ((s.test, s.body, s.orelse), (_negate(s.test), s.orelse, s.body)):
        if not arm or not isinstance(arm[0], ir.While) or arm[0].test != ir.Const(True):
            continue
        w, rest = arm[0], arm[1:]
        body = w.body
        if not body or not isinstance(body[-1], ir.If) or body[-1].orelse:
            continue
        latch = body[-1]
        if _key(latch.test) != _key(_negate(test)):
            continue
        exit_code, b0 = latch.body, body[:-1]
        if _loop_jumps(b0, ir.Continue):
            continue  # a plain continue here skips the test: not a `while t` loop
        if _same_stmts(exit_code, [ir.Break()]):
            if not _same_stmts(rest, other):
                continue
            after = rest
        else:
            if not _terminates(exit_code) or _loop_jumps(b0, ir.Break) or rest:
                continue
            if not _same_stmts(other, exit_code):
                continue
            after = exit_code
        new_body = _replace_continue_tests(b0, test, exit_code)
        if new_body is None:
            continue
        return [ir.While(test, new_body, s.line)] + list(after)
    return None


def _simplify_if(s: ir.If) -> list:
    """Tidy one If whose arms are already tidy; returns the statements replacing it."""
    # 3.12+ copy a small exit block (`return x`) into both arms: share it again.
    b, o = s.body, s.orelse
    n = 0
    while n < min(len(b), len(o)) and _key(b[len(b) - 1 - n]) == _key(o[len(o) - 1 - n]):
        n += 1
    tail = []
    if n and _terminates(b[len(b) - n:]):
        tail = b[len(b) - n:]
        s = ir.If(s.test, b[:len(b) - n], o[:len(o) - n], s.line)
    merged = _as_ifexp(s)
    if merged is not None:
        return [merged] + tail
    if not s.body and s.orelse:
        s = ir.If(_negate(s.test), s.orelse, [], s.line)
    w = _rotated_while(s)
    if w is not None:
        return _simplify(w) + tail
    if _terminates(s.body) and s.orelse:
        # `if c: ...return  else: rest`  ->  `if c: ...return` then `rest`
        return [ir.If(s.test, s.body, [], s.line)] + s.orelse + tail
    return [s] + tail


def _as_ifexp(s: ir.If):
    """`x = a if c else b` (or `return a if c else b`) that 3.12+ compiled into two
    arms because the join was a duplicated exit: one assignment or return per arm, all
    on the If's own line (an if statement has its arms on other lines)."""
    if len(s.body) != 1 or len(s.orelse) != 1:
        return None
    a, b = s.body[0], s.orelse[0]
    if type(a) is not type(b) or not isinstance(a, (ir.Assign, ir.Return)) or not (a.line == b.line == s.line):
        return None
    if isinstance(a, ir.Assign) and (_key(a.target) != _key(b.target) or not isinstance(a.target, ir.Name)):
        return None
    value = _factor(s.test, a.value, b.value)
    if isinstance(a, ir.Assign):
        return ir.Assign(a.target, value, s.line)
    return ir.Return(value, s.line)


_LEAVES = (ir.Const, ir.Name, ir.Global, ir.FreeVar, ir.ListComp, ir.MakeFunction)


def _factor(c, x, y):
    """`x if c else y`, with what x and y share moved outside: the duplicated tail of
    `x * (2.0 if c else 0.5)` gives `x * 2.0` and `x * 0.5`, factored back. The shared
    parts are trivial, so evaluating them outside the test changes nothing."""
    if _trivial(c) and _key(y) == _key(c):
        return ir.BoolOp("and", c, x)
    if _trivial(c) and _key(x) == _key(c):
        return ir.BoolOp("or", c, y)
    if type(x) is type(y) and dataclasses.is_dataclass(x) and not isinstance(x, _LEAVES):
        names = [f.name for f in dataclasses.fields(x) if f.name != "line"]
        diff = [n for n in names if _key(getattr(x, n)) != _key(getattr(y, n))]
        if len(diff) == 1 and all(_trivial_part(getattr(x, n)) for n in names if n != diff[0]):
            a, b = getattr(x, diff[0]), getattr(y, diff[0])
            if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
                d = [i for i in range(len(a)) if _key(a[i]) != _key(b[i])]
                if (len(d) == 1 and all(_trivial_part(a[i]) for i in range(len(a)) if i != d[0])
                        and not isinstance(a[d[0]], tuple)):
                    i = d[0]
                    new = a[:i] + (_factor(c, a[i], b[i]),) + a[i + 1:]
                    return dataclasses.replace(x, **{diff[0]: new})
            elif not isinstance(a, (tuple, str)) and not isinstance(b, (tuple, str)):
                return dataclasses.replace(x, **{diff[0]: _factor(c, a, b)})
    return ir.IfExp(c, x, y)


def _trivial_part(v):
    if isinstance(v, str) or v is None:
        return True
    if isinstance(v, tuple):
        return all(_trivial_part(i) for i in v)
    return _trivial(v)


def _top_tested(w: ir.While) -> ir.While:
    """`while True: if t: B else: break; rest`  ->  `while t: B; rest` (a loop whose
    first block holds the test: no rotation, e.g. when the body always breaks)."""
    if w.test != ir.Const(True) or not w.body or not isinstance(w.body[0], ir.If):
        return w
    first, rest = w.body[0], w.body[1:]
    brk = [ir.Break()]
    if _same_stmts(first.orelse, brk) and not _terminates(first.body):
        return ir.While(first.test, first.body + rest, w.line)
    if _same_stmts(first.body, brk) and not first.orelse:
        return ir.While(_negate(first.test), rest, w.line)
    return w


def _simplify(stmts, loop_body=False) -> list:
    out = []
    for k, s in enumerate(stmts):
        if (loop_body and k == len(stmts) - 1 and isinstance(s, ir.If) and not s.body
                and s.orelse and not _same_stmts(s.orelse, [ir.Break()])):
            # Last in a loop body: `if c: (nothing) else: X` is `if c: continue` + X.
            out.append(ir.If(s.test, [ir.Continue(s.line)], [], s.line))
            out.extend(_simplify(s.orelse, loop_body=True))
            continue
        if isinstance(s, ir.If):
            out.extend(_simplify_if(ir.If(s.test, _simplify(s.body), _simplify(s.orelse), s.line)))
            continue
        elif isinstance(s, ir.While):
            s = _top_tested(ir.While(s.test, _simplify(s.body, loop_body=True), s.line))
        elif isinstance(s, ir.For):
            s = ir.For(s.target, s.iter, _simplify(s.body, loop_body=True), s.line)
        out.append(s)
    return out


def _lower(stmts) -> list:
    """Remove the pseudo statements the rewrites did not use."""
    out = []
    for s in stmts:
        if isinstance(s, _ContinueTest):
            out.append(ir.If(s.test, [ir.Continue(s.line)], _lower(s.exit), s.line))
        elif isinstance(s, ir.If):
            out.append(ir.If(s.test, _lower(s.body), _lower(s.orelse), s.line))
        elif isinstance(s, ir.While):
            out.append(ir.While(s.test, _lower(s.body), s.line))
        elif isinstance(s, ir.For):
            out.append(ir.For(s.target, s.iter, _lower(s.body), s.line))
        elif isinstance(s, _Append):
            raise TypeError("LIST_APPEND outside a comprehension")
        else:
            out.append(s)
    return out


def _finish(stmts):
    return _simplify(_lower(_simplify(stmts)))


# ----------------------------------------------------------------------- public API

# Lifted functions by (code object, globals): the IR keeps its code object alive, so the
# cache is bounded (least recently used first out).
_cache: OrderedDict = OrderedDict()
CACHE_SIZE = 1024


def lift(func) -> ir.Function:
    """The IR of Python function `func` (cached per code object)."""
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):
        raise UnsupportedError("object without Python bytecode", function=repr(func),
                               hint="bytrev lifts plain Python functions")
    return lift_code(code, func.__globals__, getattr(func, "__qualname__", code.co_qualname))


def lift_code(code: CodeType, globals: dict, qualname: str | None = None) -> ir.Function:
    """The IR of a code object (also the nested functions of `MakeFunction.code`)."""
    key = (code, id(globals))
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        return hit
    qualname = qualname or code.co_qualname
    _check_flags(code, qualname)
    lifter = None
    try:
        lifter = _Lifter(code, globals, qualname)
        body = lifter.run()
    except UnsupportedError:
        raise
    except RecursionError as exc:
        raise UnsupportedError("function too deeply nested to lift", function=qualname,
                               filename=code.co_filename, line=code.co_firstlineno) from exc
    except Exception as exc:  # never let an internal error escape as something else
        line = lifter.cur_line if lifter is not None else code.co_firstlineno
        raise UnsupportedError("control flow of an unexpected shape", function=qualname,
                               filename=code.co_filename, line=line,
                               hint=f"internal lifter error {exc!r}; please report") from exc
    nargs = code.co_argcount
    fn = ir.Function(name=code.co_name, qualname=qualname, filename=code.co_filename,
                     firstlineno=code.co_firstlineno,
                     params=tuple(code.co_varnames[:nargs]),
                     kwonly=tuple(code.co_varnames[nargs:nargs + code.co_kwonlyargcount]),
                     body=body, cellvars=tuple(code.co_cellvars),
                     freevars=tuple(code.co_freevars), code=code)
    _cache[key] = fn
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return fn


def _check_flags(code: CodeType, qualname: str):
    def err(construct, line, hint=""):
        return UnsupportedError(construct, function=qualname, filename=code.co_filename,
                                line=line, hint=hint)
    first = next((line for _, _, line in code.co_lines() if line is not None), code.co_firstlineno)
    flags = code.co_flags
    if flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR):
        raise err("async function", first, "bytrev runs plain functions")
    if flags & CO_GENERATOR:
        line = first
        for ins in _bc.normalise(code):
            if ins.op == "YIELD_VALUE":
                line = ins.line
                break
        raise err("generator (yield)", line, "return a list instead")
    if flags & CO_VARARGS:
        raise err("*args in the signature", first, "name each parameter")
    if flags & CO_VARKEYWORDS:
        raise err("**kwargs in the signature", first, "name each parameter")
