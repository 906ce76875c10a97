"""Test helper: compile a lifted `ir.Function` back into a plain Python function.

Running the result on the same arguments as the original function checks that the
lifter's IR means what the bytecode meant. The generated function:

* uses `ir.stmt_ast` with an `ir.AstContext`: temporaries `$n` become `_tmp_n`,
  non-literal constants are bound in an enclosing factory function (so the generated
  code runs with the original function's globals, untouched);
* reads a free variable through the original function's closure cell;
* builds nested functions (`MakeFunction`) at run time with
  `types.FunctionType(code, globals, name, defaults, closure_cells)`, where the cells
  are the generated function's own cells (made real cells by a small prologue
  `def _tmp_cells(): x, y`), so a nested function sees later rebindings exactly as in
  CPython.
"""
from __future__ import annotations

import ast
import dataclasses
import sys
import types

from bytrev import ir

CELLS = "$cells"  # IR name of the prologue function holding the cells
_TYPE_PARAMS = {"type_params": []} if sys.version_info >= (3, 12) else {}


def _make_function_factory(fn: ir.MakeFunction, globals_: dict):
    kwnames = tuple(k for k, _ in fn.kwdefaults)

    def make(defaults, kwvalues, cellfn):
        cells = None
        if fn.closure:
            by_name = dict(zip(cellfn.__code__.co_freevars, cellfn.__closure__))
            cells = tuple(by_name[n] for n in fn.closure)
        f = types.FunctionType(fn.code, globals_, fn.code.co_name, tuple(defaults) or None, cells)
        if kwnames:
            f.__kwdefaults__ = dict(zip(kwnames, kwvalues))
        f.__qualname__ = fn.code.co_qualname
        return f
    return make


def _lower_make_function(e, globals_, has_cells):
    """Replace every MakeFunction in an expression by a call of a factory."""
    if isinstance(e, ir.MakeFunction):
        factory = _make_function_factory(e, globals_)
        defaults = ir.Tuple(tuple(_lower_make_function(d, globals_, has_cells) for d in e.defaults))
        kwvalues = ir.Tuple(tuple(_lower_make_function(v, globals_, has_cells) for _, v in e.kwdefaults))
        cells = ir.Name(CELLS) if has_cells else ir.Const(None)
        return ir.Call(ir.Const(factory), (defaults, kwvalues, cells))
    if isinstance(e, (ir.Const, ir.Name, ir.Global, ir.FreeVar)) or e is None or isinstance(e, str):
        return e
    if isinstance(e, tuple):
        return tuple(_lower_make_function(v, globals_, has_cells) for v in e)
    if isinstance(e, list):
        return [_lower_make_function(v, globals_, has_cells) for v in e]
    if dataclasses.is_dataclass(e):
        return dataclasses.replace(e, **{f.name: _lower_make_function(getattr(e, f.name), globals_, has_cells)
                                         for f in dataclasses.fields(e)})
    return e


def compile_ir(fn: ir.Function, original) -> types.FunctionType:
    """A Python function that runs `fn` (the IR of `original`) with `original`'s
    globals, closure, defaults and keyword-only defaults."""
    globals_ = original.__globals__
    consts: dict[int, tuple[str, object]] = {}

    def constant(value):
        key = id(value)
        if key not in consts:
            consts[key] = (f"_const{len(consts)}", value)
        return consts[key][0]

    def local(name):
        return "_tmp_" + name[1:] if name.startswith("$") else name

    closure = dict(zip(original.__code__.co_freevars, original.__closure__ or ()))

    def free(name):
        return ast.Attribute(ast.Name(constant(closure[name]), ast.Load()), "cell_contents", ast.Load())

    cx = ir.AstContext(local=local, constant=constant, free=free)
    has_cells = bool(fn.cellvars)
    body = _lower_make_function(fn.body, globals_, has_cells)
    stmts = [ir.stmt_ast(s, cx) for s in body] or [ast.Pass()]
    if has_cells:
        # Referencing the cell variables from a nested def makes them real cells of the
        # generated function; MakeFunction reads them from this function's __closure__.
        cells_def = ast.FunctionDef(
            name=local(CELLS), args=ast.arguments([], [], None, [], [], None, []),
            body=[ast.Return(ast.Tuple([ast.Name(local(n), ast.Load()) for n in fn.cellvars], ast.Load()))],
            decorator_list=[], returns=None, **_TYPE_PARAMS)
        stmts.insert(0, cells_def)
    params = [ast.arg(p) for p in fn.params]
    kwonly = [ast.arg(p) for p in fn.kwonly]
    name = "_lifted"
    inner = ast.FunctionDef(
        name=name, args=ast.arguments([], params, None, kwonly, [None] * len(kwonly), None, []),
        body=stmts, decorator_list=[], returns=None, **_TYPE_PARAMS)
    factory = ast.FunctionDef(
        name="_factory",
        args=ast.arguments([], [ast.arg(n) for n, _ in consts.values()], None, [], [], None, []),
        body=[inner, ast.Return(ast.Name(name, ast.Load()))],
        decorator_list=[], returns=None, **_TYPE_PARAMS)
    module = ast.fix_missing_locations(ast.Module([factory], []))
    for node in ast.walk(module):  # statements keep their source lines
        if hasattr(node, "lineno"):
            node.end_lineno = node.lineno
            node.col_offset = node.end_col_offset = 0
    code = compile(module, f"<lifted {fn.qualname}>", "exec")
    factory_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    made = types.FunctionType(factory_code, globals_)(*(v for _, v in consts.values()))
    made.__defaults__ = original.__defaults__
    made.__kwdefaults__ = original.__kwdefaults__
    return made


def source(fn: ir.Function) -> str:
    """The IR as readable source (for failure messages)."""
    return ir.unparse(fn)
