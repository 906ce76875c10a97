"""bytrev: run ordinary Python functions backwards.

`reversible(f)` gives `f`'s reversible form (`forward` records a small tape, `backward`
gives the arguments back), `inverse(f)` its inverse when it needs no tape, and `show(f)`
prints how each statement is undone. `grad`, `value_and_grad`, `vjp` and `jacobian`
differentiate unmodified Python/NumPy functions by running them backwards; `jvp` and
`jacfwd` run them forwards on dual numbers, `hessian` and `hvp` both ways; `defvjp` and `defjvp` register derivative
rules for any callable. See README.md.
"""
from .api import Inverse, Reversible, inverse, reversible, show
from .errors import (BytrevError, NotInvertibleError, ReversalDriftWarning, ReversalError,
                     TapeMismatchError, UnsupportedError)
from .forward import defjvp, jacfwd, jvp
from .gradient import grad, hessian, hvp, jacobian, value_and_grad, vjp
from .rules import definverse, defvjp, defvjp_all
from .tape import Tape

__all__ = ["reversible", "inverse", "show", "grad", "value_and_grad", "vjp", "jacobian",
           "jvp", "jacfwd", "hessian", "hvp", "defvjp", "defvjp_all", "defjvp", "definverse", "Reversible", "Inverse", "Tape",
           "BytrevError", "UnsupportedError", "NotInvertibleError", "TapeMismatchError",
           "ReversalError", "ReversalDriftWarning"]
__version__ = "0.1.0"
