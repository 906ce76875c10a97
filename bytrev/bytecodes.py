"""One canonical instruction list for CPython 3.11, 3.12 and 3.13 bytecode.

The lifter (`bytrev.lift`) never looks at raw bytecode: it sees the output of
`normalise(code)`, a flat list of `Ins` whose jump targets are list indices. Every
difference between interpreter versions is settled here, in one place, so the lifter
needs exactly one handler per canonical opcode.

What normalisation does (see /work/shared/reference/cpython-bytecode.md for the
measurements behind each row):

| raw (version)                                   | canonical                               |
|-------------------------------------------------|-----------------------------------------|
| POP_JUMP_FORWARD/BACKWARD_IF_X (3.11)           | POP_JUMP_IF_X                           |
| JUMP_FORWARD / JUMP_BACKWARD[_NO_INTERRUPT]     | JUMP                                    |
| POP_JUMP_IF_NONE / _NOT_NONE                    | LOAD_CONST None; COMPARE is[ not]; POP_JUMP_IF_FALSE |
| COPY 1; POP_JUMP_IF_X L; POP_TOP (3.12+)        | JUMP_IF_X_OR_POP L (3.11's form)        |
| LOAD_GLOBAL (push_null, name)                   | LOAD_GLOBAL name [+ PUSH_NULL]          |
| LOAD_METHOD (3.11), LOAD_ATTR (True, name)      | LOAD_ATTR name; PUSH_NULL               |
| KW_NAMES names; [PRECALL]; CALL n (3.11/3.12)   | LOAD_CONST names; CALL_KW n (3.13 form) |
| LOAD_FAST_LOAD_FAST & co. (3.13)                | split into the single instructions      |
| LOAD_FAST of a cell (3.13), LOAD_CLOSURE        | LOAD_CLOSURE name                       |
| LOAD_DEREF / STORE_DEREF                        | same, arg (name, "cell" or "free")      |
| LOAD_FAST_CHECK (3.12)                          | LOAD_FAST                               |
| COMPARE_OP (with 3.13's *_CAST), IS_OP, CONTAINS_OP | COMPARE op (e.g. "<", "is not", "in") |
| BINARY_OP                                       | BINARY_OP (op, inplace)                 |
| UNARY_*, CALL_INTRINSIC_1 UNARY_POSITIVE        | UNARY op                                |
| BINARY_SLICE / STORE_SLICE (3.12+)              | BUILD_SLICE 2; BINARY_SUBSCR / STORE_SUBSCR |
| RETURN_CONST c (3.12+)                          | LOAD_CONST c; RETURN_VALUE              |
| MAKE_FUNCTION (3.13, no flags)                  | MAKE_FUNCTION 0 (then SET_FUNCTION_ATTRIBUTE) |
| FOR_ITER -> END_FOR [POP_TOP] (3.12/3.13)       | FOR_ITER jumping past them (dropped)    |
| TryBegin whose handler starts with PUSH_EXC_INFO | TRY_STATEMENT (a user try/except)      |
| other TryBegin/TryEnd (3.12+ comprehension cleanup) | dropped                             |
| RESUME, PRECALL, TO_BOOL, MAKE_CELL, COPY_FREE_VARS, CACHE | dropped (no effect on meaning) |

Canonical FOR_ITER means: push the next item, or, when the iterator is exhausted, pop
the iterator and jump to the target. Opcodes with no canonical form are passed through
under their own name; the lifter reports them as unsupported when it reaches them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import bytecode as _bc

PY = sys.version_info[:2]

# Ops that end a basic block. RAISE_VARARGS/RERAISE never fall through either.
JUMP = "JUMP"
COND_JUMPS = frozenset({"POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE",
                        "JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP"})
NO_FALLTHROUGH = frozenset({"JUMP", "RETURN_VALUE", "RAISE_VARARGS", "RERAISE"})
TERMINATORS = COND_JUMPS | NO_FALLTHROUGH | {"FOR_ITER"}


@dataclass
class Ins:
    """A canonical instruction. `target` is the index of the jump target in the list."""
    op: str
    arg: object = None
    line: int | None = None
    target: object = None  # a bytecode.Label while normalising, then an int


# ----------------------------------------------------------------------- version table
# Raw opcode -> canonical opcode, for opcodes that only changed their name.
RENAMED = {
    "POP_JUMP_FORWARD_IF_FALSE": "POP_JUMP_IF_FALSE",   # 3.11
    "POP_JUMP_BACKWARD_IF_FALSE": "POP_JUMP_IF_FALSE",  # 3.11
    "POP_JUMP_FORWARD_IF_TRUE": "POP_JUMP_IF_TRUE",     # 3.11
    "POP_JUMP_BACKWARD_IF_TRUE": "POP_JUMP_IF_TRUE",    # 3.11
    "POP_JUMP_FORWARD_IF_NONE": "POP_JUMP_IF_NONE",     # 3.11
    "POP_JUMP_BACKWARD_IF_NONE": "POP_JUMP_IF_NONE",    # 3.11
    "POP_JUMP_FORWARD_IF_NOT_NONE": "POP_JUMP_IF_NOT_NONE",   # 3.11
    "POP_JUMP_BACKWARD_IF_NOT_NONE": "POP_JUMP_IF_NOT_NONE",  # 3.11
    "JUMP_FORWARD": "JUMP",
    "JUMP_BACKWARD": "JUMP",
    "JUMP_BACKWARD_NO_INTERRUPT": "JUMP",
    "LOAD_FAST_CHECK": "LOAD_FAST",                     # 3.12+: LOAD_FAST that may be unbound
}

# Raw opcodes that do not change what the function computes.
DROPPED = frozenset({
    "RESUME",          # start of the function / after a yield
    "PRECALL",         # 3.11 only: a no-op before CALL
    "TO_BOOL",         # 3.13: jumps and `not` test truthiness themselves in the IR
    "MAKE_CELL",       # prologue: turn a local into a cell
    "COPY_FREE_VARS",  # prologue: copy the closure into the frame
    "CACHE", "EXTENDED_ARG",
})

UNARY = {"UNARY_NEGATIVE": "-", "UNARY_POSITIVE": "+", "UNARY_INVERT": "~", "UNARY_NOT": "not"}

COMPARE = {"LT": "<", "LE": "<=", "EQ": "==", "NE": "!=", "GT": ">", "GE": ">="}

BINARY = {"ADD": "+", "SUBTRACT": "-", "MULTIPLY": "*", "TRUE_DIVIDE": "/",
          "FLOOR_DIVIDE": "//", "REMAINDER": "%", "POWER": "**", "MATRIX_MULTIPLY": "@",
          "LSHIFT": "<<", "RSHIFT": ">>", "AND": "&", "OR": "|", "XOR": "^"}

# 3.12 ends a for loop with END_FOR; 3.13 with END_FOR; POP_TOP. FOR_ITER skips them
# when the iterator is exhausted, so they are dropped and FOR_ITER jumps past them.
END_FOR_POPS_AFTER = 1 if PY >= (3, 13) else 0


def _name(arg) -> str:
    """The variable name of a LOAD_/STORE_ argument (str, CellVar or FreeVar)."""
    return arg if isinstance(arg, str) else arg.name


def _lineno(instr) -> int | None:
    loc = getattr(instr, "location", None)
    return loc.lineno if loc is not None else None


def normalise(code) -> list[Ins]:
    """The canonical instruction list of `code` (see the module docstring)."""
    raw = list(_bc.Bytecode.from_code(code))
    cells = set(code.co_cellvars) | set(code.co_freevars)

    # The first real instruction after each label: tells user try blocks (whose
    # handler starts with PUSH_EXC_INFO) from 3.12+ comprehension cleanup regions.
    first_after = {}
    pending = []
    for item in raw:
        if isinstance(item, _bc.Label):
            pending.append(item)
        elif isinstance(item, _bc.Instr):
            for lab in pending:
                first_after[lab] = item.name
            pending = []

    out: list[Ins] = []
    labels: dict = {}  # Label -> index in `out`
    line = code.co_firstlineno
    kw_names = None       # 3.11/3.12: KW_NAMES waiting for its CALL
    skip_pop_top = False  # 3.13: the POP_TOP after a dropped END_FOR

    def emit(op, arg=None, target=None):
        out.append(Ins(op, arg, line, target))

    for item in raw:
        if isinstance(item, _bc.Label):
            labels[item] = len(out)
            continue
        if isinstance(item, _bc.TryBegin):
            if first_after.get(item.target) == "PUSH_EXC_INFO":
                emit("TRY_STATEMENT")
            continue
        if isinstance(item, (_bc.TryEnd, _bc.SetLineno)):
            if isinstance(item, _bc.SetLineno):
                line = item.lineno
            continue
        name, arg = item.name, item.arg
        lineno = _lineno(item)
        if lineno is not None:
            line = lineno
        if skip_pop_top:
            skip_pop_top = False
            if name == "POP_TOP":
                continue
        name = RENAMED.get(name, name)

        if name in DROPPED:
            continue
        if name == "END_FOR":
            skip_pop_top = bool(END_FOR_POPS_AFTER)
            continue
        if name in ("JUMP", "POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "FOR_ITER",
                    "JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP"):
            emit(name, target=arg)
        elif name in ("POP_JUMP_IF_NONE", "POP_JUMP_IF_NOT_NONE"):
            # `x is None` as an ordinary comparison, so conditions read naturally.
            emit("LOAD_CONST", None)
            emit("COMPARE", "is not" if name == "POP_JUMP_IF_NONE" else "is")
            emit("POP_JUMP_IF_FALSE", target=arg)
        elif name == "RETURN_CONST":
            emit("LOAD_CONST", arg)
            emit("RETURN_VALUE")
        elif name == "LOAD_GLOBAL":
            push_null, gname = arg if isinstance(arg, tuple) else (False, arg)
            if push_null and PY < (3, 13):
                emit("PUSH_NULL")
            emit("LOAD_GLOBAL", gname)
            if push_null and PY >= (3, 13):
                emit("PUSH_NULL")
        elif name in ("LOAD_ATTR", "LOAD_METHOD"):
            method, aname = arg if isinstance(arg, tuple) else (name == "LOAD_METHOD", arg)
            emit("LOAD_ATTR", aname)
            if method:
                # The call handler accepts the NULL on either side of the callable.
                emit("PUSH_NULL")
        elif name == "KW_NAMES":
            kw_names = arg
        elif name == "CALL":
            if kw_names is not None:
                emit("LOAD_CONST", kw_names)
                emit("CALL_KW", arg)
                kw_names = None
            else:
                emit("CALL", arg)
        elif name == "LOAD_FAST":
            # 3.13 loads a closure cell with LOAD_FAST (LOAD_CLOSURE became a pseudo-op).
            name = _name(arg)
            emit("LOAD_CLOSURE" if PY >= (3, 13) and name in cells else "LOAD_FAST", name)
        elif name == "LOAD_CLOSURE":
            emit("LOAD_CLOSURE", _name(arg))
        elif name == "LOAD_FAST_LOAD_FAST":
            emit("LOAD_FAST", _name(arg[0]))
            emit("LOAD_FAST", _name(arg[1]))
        elif name == "STORE_FAST_STORE_FAST":
            emit("STORE_FAST", _name(arg[0]))
            emit("STORE_FAST", _name(arg[1]))
        elif name == "STORE_FAST_LOAD_FAST":
            emit("STORE_FAST", _name(arg[0]))
            emit("LOAD_FAST", _name(arg[1]))
        elif name in ("STORE_FAST", "LOAD_FAST_AND_CLEAR", "DELETE_FAST"):
            emit(name, _name(arg))
        elif name in ("LOAD_DEREF", "STORE_DEREF", "DELETE_DEREF"):
            kind = "free" if isinstance(arg, _bc.FreeVar) else "cell"
            emit(name, (_name(arg), kind))
        elif name == "COMPARE_OP":
            emit("COMPARE", COMPARE[arg.name.replace("_CAST", "")])
        elif name == "IS_OP":
            emit("COMPARE", "is not" if arg else "is")
        elif name == "CONTAINS_OP":
            emit("COMPARE", "not in" if arg else "in")
        elif name == "BINARY_OP":
            inplace = arg.name.startswith("INPLACE_")
            emit("BINARY_OP", (BINARY[arg.name.replace("INPLACE_", "")], inplace))
        elif name in UNARY:
            emit("UNARY", UNARY[name])
        elif name == "CALL_INTRINSIC_1" and arg.name == "INTRINSIC_UNARY_POSITIVE":
            emit("UNARY", "+")
        elif name == "BINARY_SLICE":
            emit("BUILD_SLICE", 2)
            emit("BINARY_SUBSCR")
        elif name == "STORE_SLICE":
            emit("BUILD_SLICE", 2)
            emit("STORE_SUBSCR")
        elif name == "MAKE_FUNCTION":
            emit("MAKE_FUNCTION", arg if isinstance(arg, int) else 0)
        elif name == "CALL_INTRINSIC_1":
            emit(name, arg.name)
        else:
            emit(name, arg)

    # Resolve labels to indices.
    for ins in out:
        if ins.target is not None:
            ins.target = labels[ins.target]
    return _fuse_and_or(out)


def _fuse_and_or(out: list[Ins]) -> list[Ins]:
    """3.12+ write a value-keeping `and`/`or` as COPY 1; POP_JUMP_IF_X L; POP_TOP.
    Rewrite it as 3.11's single JUMP_IF_X_OR_POP L, so the kept value is never
    copied (which would force a temporary) and both versions look the same."""
    targets = {ins.target for ins in out if ins.target is not None}
    keep = []
    remap = {}
    i = 0
    while i < len(out):
        ins = out[i]
        if (ins.op == "COPY" and ins.arg == 1 and i + 2 < len(out)
                and out[i + 1].op in ("POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE")
                and out[i + 2].op == "POP_TOP"
                and i + 1 not in targets and i + 2 not in targets):
            remap[i] = len(keep)
            op = "JUMP_IF_FALSE_OR_POP" if out[i + 1].op == "POP_JUMP_IF_FALSE" else "JUMP_IF_TRUE_OR_POP"
            keep.append(Ins(op, None, out[i + 1].line, out[i + 1].target))
            i += 3
            continue
        remap[i] = len(keep)
        keep.append(ins)
        i += 1
    remap[len(out)] = len(keep)
    for ins in keep:
        if ins.target is not None:
            ins.target = remap[ins.target]
    return keep


def dump(code) -> str:
    """The canonical instructions of `code`, one a line (for debugging)."""
    lines = []
    for i, ins in enumerate(normalise(code)):
        t = f" -> {ins.target}" if ins.target is not None else ""
        a = "" if ins.arg is None else f" {ins.arg!r}"
        lines.append(f"{i:4} L{ins.line} {ins.op}{a}{t}")
    return "\n".join(lines)
