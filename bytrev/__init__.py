"""bytrev: run ordinary Python functions backwards.

`reversible(f)` gives `f`'s reversible form (`forward` records a small tape, `backward`
gives the arguments back), `inverse(f)` its inverse when it needs no tape, and `show(f)`
prints how each statement is undone. `grad`, `value_and_grad`, `vjp` and `jacobian`
differentiate unmodified Python/NumPy functions by running them backwards; `defvjp`
registers a derivative rule for any callable. See README.md.
"""
from .api import Inverse, Reversible, inverse, reversible, show
from .errors import (BytrevError, NotInvertibleError, ReversalDriftWarning, ReversalError,
                     TapeMismatchError, UnsupportedError)
from .gradient import grad, jacobian, value_and_grad, vjp
from .rules import definverse, defvjp, defvjp_all
from .tape import Tape

__all__ = ["reversible", "inverse", "show", "grad", "value_and_grad", "vjp", "jacobian",
           "defvjp", "defvjp_all", "definverse", "Reversible", "Inverse", "Tape",
           "BytrevError", "UnsupportedError", "NotInvertibleError", "TapeMismatchError",
           "ReversalError", "ReversalDriftWarning"]
__version__ = "0.1.0"
