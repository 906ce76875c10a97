"""bytrev: run ordinary Python functions backwards.

`reversible(f)` gives `f`'s reversible form (`forward` records a small tape, `backward`
gives the arguments back), `inverse(f)` its inverse when it needs no tape, and `show(f)`
prints how each statement is undone. See README.md.
"""
from .api import Inverse, Reversible, inverse, reversible, show
from .errors import (BytrevError, NotInvertibleError, ReversalError, TapeMismatchError,
                     UnsupportedError)
from .tape import Tape

__all__ = ["reversible", "inverse", "show", "Reversible", "Inverse", "Tape", "BytrevError",
           "UnsupportedError", "NotInvertibleError", "TapeMismatchError", "ReversalError"]
__version__ = "0.1.0"
