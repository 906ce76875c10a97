"""The version-independent intermediate representation (IR) of a lifted function.

The lifter (`bytrev.lift`) turns CPython bytecode of any supported version into this IR;
everything after it (reversibility analysis, code generation) sees only this module.

The IR is a small structured language shaped like Python's own `ast`:

* expressions are trees (`Expr`); evaluating one has no effect on variables, and it is
  pure unless it contains a `Call` (purity of calls is decided by the analysis);
* statements (`Stmt`) are structured: `If`, `While`, `For` with `Break`/`Continue`,
  `Return`. Every statement carries the source line it came from.

Names: `Name.id` is a local variable of the function (parameters, ordinary locals, and
the function's own cell variables). Temporaries invented by the lifter are named
`"$1"`, `"$2"`, ... so they can never collide with a user's variable. `Global.id` is
looked up in the function's globals, then builtins. `FreeVar.id` reads a closure cell of
the enclosing function (its value is fixed for the duration of a call).

`to_ast` turns IR back into Python `ast` nodes; it is used both to print the IR for
people (`unparse`) and by the code generator.
"""
from __future__ import annotations

import ast
import dataclasses
import types
from dataclasses import dataclass, field
from types import CodeType
from typing import Callable, Union

# --------------------------------------------------------------------------- expressions

BINARY_OPS = ("+", "-", "*", "/", "//", "%", "**", "@", "<<", ">>", "&", "|", "^")
UNARY_OPS = ("-", "+", "~", "not")
COMPARE_OPS = ("<", "<=", "==", "!=", ">", ">=", "is", "is not", "in", "not in")


@dataclass(frozen=True)
class Const:
    value: object


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Global:
    id: str


@dataclass(frozen=True)
class FreeVar:
    id: str


@dataclass(frozen=True)
class BinOp:
    op: str  # one of BINARY_OPS
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class UnaryOp:
    op: str  # one of UNARY_OPS
    operand: "Expr"


@dataclass(frozen=True)
class Compare:
    """A single comparison; chained comparisons are lowered to `BoolOp('and', ...)`
    by the lifter with the middle operand spilled to a temporary."""
    op: str  # one of COMPARE_OPS
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class BoolOp:
    """Short-circuit `left and right` / `left or right` with Python's value semantics."""
    op: str  # "and" | "or"
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class IfExp:
    test: "Expr"
    body: "Expr"
    orelse: "Expr"


@dataclass(frozen=True)
class Call:
    func: "Expr"
    args: tuple = ()  # tuple[Expr, ...]
    kwargs: tuple = ()  # tuple[tuple[str, Expr], ...]
    # The source line of the call itself (a statement may span lines, or hold a test
    # CPython merged into another): errors about the call name it. 0 when unknown.
    line: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Attribute:
    value: "Expr"
    attr: str


@dataclass(frozen=True)
class Subscript:
    value: "Expr"
    index: "Expr"


@dataclass(frozen=True)
class Slice:
    lower: "Expr"  # Const(None) when absent
    upper: "Expr"
    step: "Expr"


@dataclass(frozen=True)
class Tuple:
    elts: tuple


@dataclass(frozen=True)
class List:
    elts: tuple


@dataclass(frozen=True)
class Dict:
    keys: tuple
    values: tuple


@dataclass(frozen=True)
class CompFor:
    """One `for target in iter if cond ...` clause of a comprehension."""
    target: "Target"
    iter: "Expr"
    conds: tuple = ()


@dataclass(frozen=True)
class ListComp:
    """`[elt for ... in ... if ...]`; the clauses' targets are local to the comprehension."""
    elt: "Expr"
    loops: tuple  # tuple[CompFor, ...]


@dataclass(frozen=True)
class MakeFunction:
    """A nested `def` or `lambda`: a new function object made from `code`.

    `defaults` are the evaluated positional defaults; `closure` names the enclosing
    function's variables the new function captures, in `code.co_freevars` order."""
    code: CodeType
    defaults: tuple = ()
    kwdefaults: tuple = ()  # tuple[tuple[str, Expr], ...]
    closure: tuple = ()  # tuple[str, ...]


Expr = Union[Const, Name, Global, FreeVar, BinOp, UnaryOp, Compare, BoolOp, IfExp, Call,
             Attribute, Subscript, Slice, Tuple, List, Dict, ListComp, MakeFunction]
# An assignment target: Name, Subscript, or Tuple of targets (unpacking).
Target = Union[Name, Subscript, Tuple]

# --------------------------------------------------------------------------- statements


@dataclass
class Assign:
    target: Target
    value: Expr
    line: int = 0


@dataclass
class AugAssign:
    """`target op= value` with Python's in-place semantics (`__iadd__` and friends):
    it mutates arrays in place and rebinds immutable values."""
    target: Union[Name, Subscript]
    op: str  # one of BINARY_OPS
    value: Expr
    line: int = 0


@dataclass
class ExprStmt:
    value: Expr
    line: int = 0


@dataclass
class If:
    test: Expr
    body: list
    orelse: list
    line: int = 0


@dataclass
class While:
    test: Expr
    body: list
    line: int = 0


@dataclass
class For:
    target: Target
    iter: Expr
    body: list
    line: int = 0


@dataclass
class Break:
    line: int = 0


@dataclass
class Continue:
    line: int = 0


@dataclass
class Return:
    value: Expr
    line: int = 0


Stmt = Union[Assign, AugAssign, ExprStmt, If, While, For, Break, Continue, Return]


@dataclass
class Function:
    """A lifted function. `params` are the positional-or-keyword parameter names in
    order, `kwonly` the keyword-only ones; defaults live on the Python function object."""
    name: str
    qualname: str
    filename: str
    firstlineno: int
    params: tuple
    kwonly: tuple
    body: list
    cellvars: tuple = ()
    freevars: tuple = ()
    code: CodeType | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- traversal


def children(e: Expr) -> tuple:
    """The direct sub-expressions of `e`, left to right (evaluation order)."""
    if isinstance(e, (Const, Name, Global, FreeVar)):
        return ()
    if isinstance(e, (BinOp, Compare, BoolOp)):
        return (e.left, e.right)
    if isinstance(e, UnaryOp):
        return (e.operand,)
    if isinstance(e, IfExp):
        return (e.test, e.body, e.orelse)
    if isinstance(e, Call):
        return (e.func, *e.args, *(v for _, v in e.kwargs))
    if isinstance(e, Attribute):
        return (e.value,)
    if isinstance(e, Subscript):
        return (e.value, e.index)
    if isinstance(e, Slice):
        return (e.lower, e.upper, e.step)
    if isinstance(e, (Tuple, List)):
        return e.elts
    if isinstance(e, Dict):
        return (*e.keys, *e.values)
    if isinstance(e, ListComp):
        # Only the first iterable is evaluated in the enclosing scope.
        return (e.loops[0].iter,)
    if isinstance(e, MakeFunction):
        return (*e.defaults, *(v for _, v in e.kwdefaults), *(Name(n) for n in e.closure))
    raise TypeError(f"not an IR expression: {e!r}")


def walk(e: Expr):
    """All sub-expressions of `e`, `e` first."""
    yield e
    for c in children(e):
        yield from walk(c)


def names_read(e: Expr) -> set:
    """Local variables whose values `e` reads (comprehension targets excluded)."""
    if isinstance(e, ListComp):
        inner = set()
        bound = set()
        for loop in e.loops:
            inner |= names_read(loop.iter) - bound
            bound |= target_names(loop.target)
            for c in loop.conds:
                inner |= names_read(c) - bound
        return inner | (names_read(e.elt) - bound)
    if isinstance(e, Name):
        return {e.id}
    out = set()
    for c in children(e):
        out |= names_read(c)
    return out


def map_expr(e: Expr, fn) -> Expr:
    """Apply `fn` bottom-up to every sub-expression of `e`. A comprehension is passed to
    `fn` whole (its names are its own scope's)."""
    if isinstance(e, (Const, Name, Global, FreeVar, ListComp)):
        return fn(e)
    changes = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if dataclasses.is_dataclass(v):
            changes[f.name] = map_expr(v, fn)
        elif isinstance(v, tuple):
            changes[f.name] = tuple(
                (x[0], map_expr(x[1], fn)) if isinstance(x, tuple) else
                map_expr(x, fn) if dataclasses.is_dataclass(x) else x for x in v)
    return fn(dataclasses.replace(e, **changes))


def target_names(t: Target) -> set:
    """Local variables a target rebinds (a Subscript target rebinds none)."""
    if isinstance(t, Name):
        return {t.id}
    if isinstance(t, Tuple):
        out = set()
        for elt in t.elts:
            out |= target_names(elt)
        return out
    return set()


# --------------------------------------------------------------------------- to Python ast

_BINOP_AST = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "//": ast.FloorDiv,
              "%": ast.Mod, "**": ast.Pow, "@": ast.MatMult, "<<": ast.LShift,
              ">>": ast.RShift, "&": ast.BitAnd, "|": ast.BitOr, "^": ast.BitXor}
_UNARY_AST = {"-": ast.USub, "+": ast.UAdd, "~": ast.Invert, "not": ast.Not}
_COMPARE_AST = {"<": ast.Lt, "<=": ast.LtE, "==": ast.Eq, "!=": ast.NotEq, ">": ast.Gt,
                ">=": ast.GtE, "is": ast.Is, "is not": ast.IsNot, "in": ast.In,
                "not in": ast.NotIn}


def binop_ast(op: str):
    return _BINOP_AST[op]()


def is_literal(value) -> bool:
    """Whether `value` can be written as a literal in generated source."""
    if isinstance(value, tuple):
        return all(is_literal(v) for v in value)
    return value is None or value is Ellipsis or type(value) in (bool, int, float, complex, str, bytes)


@dataclass
class AstContext:
    """How IR leaves become Python names in generated code.

    `local(id)` maps an IR local to a Python identifier; `constant(value)` returns the
    name of a generated-code variable holding a non-literal constant; `free(id)` the
    expression reading a closure cell."""
    local: Callable[[str], str]
    constant: Callable[[object], str]
    free: Callable[[str], ast.expr]


def _display_context() -> AstContext:
    def local(n):  # "$3" -> "tmp3", "$result" -> "result"
        return ("tmp" + n[1:] if n[1:2].isdigit() else n[1:]) if n.startswith("$") else n

    def constant(v):  # a bound method by its object's name (Inverse.apply: inverse_of_g)
        named = v.__self__ if isinstance(v, types.MethodType) else v
        return getattr(named, "__name__", type(named).__name__)

    return AstContext(local=local, constant=constant, free=lambda n: ast.Name(n, ast.Load()))


def expr_ast(e: Expr, cx: AstContext) -> ast.expr:
    """Python `ast` for an IR expression."""
    def go(x):
        return expr_ast(x, cx)

    if isinstance(e, Const):
        if is_literal(e.value):
            return ast.Constant(e.value)
        return ast.Name(cx.constant(e.value), ast.Load())
    if isinstance(e, Name):
        return ast.Name(cx.local(e.id), ast.Load())
    if isinstance(e, Global):
        return ast.Name(e.id, ast.Load())
    if isinstance(e, FreeVar):
        return cx.free(e.id)
    if isinstance(e, BinOp):
        return ast.BinOp(go(e.left), binop_ast(e.op), go(e.right))
    if isinstance(e, UnaryOp):
        return ast.UnaryOp(_UNARY_AST[e.op](), go(e.operand))
    if isinstance(e, Compare):
        return ast.Compare(go(e.left), [_COMPARE_AST[e.op]()], [go(e.right)])
    if isinstance(e, BoolOp):
        return ast.BoolOp(ast.And() if e.op == "and" else ast.Or(), [go(e.left), go(e.right)])
    if isinstance(e, IfExp):
        return ast.IfExp(go(e.test), go(e.body), go(e.orelse))
    if isinstance(e, Call):
        return ast.Call(go(e.func), [go(a) for a in e.args],
                        [ast.keyword(k, go(v)) for k, v in e.kwargs])
    if isinstance(e, Attribute):
        return ast.Attribute(go(e.value), e.attr, ast.Load())
    if isinstance(e, Subscript):
        return ast.Subscript(go(e.value), go(e.index), ast.Load())
    if isinstance(e, Slice):
        def part(x):
            return None if isinstance(x, Const) and x.value is None else go(x)
        return ast.Slice(part(e.lower), part(e.upper), part(e.step))
    if isinstance(e, Tuple):
        return ast.Tuple([go(x) for x in e.elts], ast.Load())
    if isinstance(e, List):
        return ast.List([go(x) for x in e.elts], ast.Load())
    if isinstance(e, Dict):
        return ast.Dict([go(k) for k in e.keys], [go(v) for v in e.values])
    if isinstance(e, ListComp):
        gens = [ast.comprehension(target_ast(c.target, cx), go(c.iter), [go(x) for x in c.conds], 0)
                for c in e.loops]
        return ast.ListComp(go(e.elt), gens)
    if isinstance(e, MakeFunction):
        return ast.Name(cx.constant(e), ast.Load())
    raise TypeError(f"not an IR expression: {e!r}")


def target_ast(t: Target, cx: AstContext) -> ast.expr:
    """Python `ast` for an assignment target."""
    if isinstance(t, Name):
        return ast.Name(cx.local(t.id), ast.Store())
    if isinstance(t, Subscript):
        return ast.Subscript(expr_ast(t.value, cx), expr_ast(t.index, cx), ast.Store())
    if isinstance(t, Tuple):
        return ast.Tuple([target_ast(x, cx) for x in t.elts], ast.Store())
    raise TypeError(f"not an IR target: {t!r}")


def stmt_ast(s: Stmt, cx: AstContext) -> ast.stmt:
    """Python `ast` for an IR statement, with the same meaning as the IR."""
    def block(stmts):
        return [stmt_ast(x, cx) for x in stmts] or [ast.Pass()]

    if isinstance(s, Assign):
        node = ast.Assign([target_ast(s.target, cx)], expr_ast(s.value, cx))
    elif isinstance(s, AugAssign):
        node = ast.AugAssign(target_ast(s.target, cx), binop_ast(s.op), expr_ast(s.value, cx))
    elif isinstance(s, ExprStmt):
        node = ast.Expr(expr_ast(s.value, cx))
    elif isinstance(s, If):
        node = ast.If(expr_ast(s.test, cx), block(s.body), block(s.orelse) if s.orelse else [])
    elif isinstance(s, While):
        node = ast.While(expr_ast(s.test, cx), block(s.body), [])
    elif isinstance(s, For):
        node = ast.For(target_ast(s.target, cx), expr_ast(s.iter, cx), block(s.body), [])
    elif isinstance(s, Break):
        node = ast.Break()
    elif isinstance(s, Continue):
        node = ast.Continue()
    elif isinstance(s, Return):
        node = ast.Return(expr_ast(s.value, cx))
    else:
        raise TypeError(f"not an IR statement: {s!r}")
    node.lineno = s.line or 1
    return node


def unparse(node, indent: int = 0) -> str:
    """Readable Python-like source for an IR expression, statement, list of
    statements or `Function` (temporaries `$n` are shown as `tmpn`, `$result` as `result`)."""
    cx = _display_context()
    if isinstance(node, Function):
        params = ", ".join(node.params + (("*",) + node.kwonly if node.kwonly else ()))
        head = f"def {node.name}({params}):"
        return head + "\n" + unparse(node.body, indent + 4)
    if isinstance(node, list):
        text = "\n".join(ast.unparse(stmt_ast(s, cx)) for s in node) or "pass"
    elif isinstance(node, (Assign, AugAssign, ExprStmt, If, While, For, Break, Continue, Return)):
        text = ast.unparse(stmt_ast(node, cx))
    else:
        text = ast.unparse(expr_ast(node, cx))
    pad = " " * indent
    return "\n".join(pad + line for line in text.splitlines())
