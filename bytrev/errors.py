"""bytrev's errors. Each one names the function, the file:line and the construct, and
says what the user can do about it."""
from __future__ import annotations


class BytrevError(Exception):
    """Base class of every error bytrev raises on purpose."""


class UnsupportedError(BytrevError, NotImplementedError):
    """A construct, opcode or callable bytrev cannot lift or reverse."""

    def __init__(self, construct: str, *, function: str = "?", filename: str = "?",
                 line: int | None = None, hint: str = ""):
        self.construct = construct
        self.function = function
        self.filename = filename
        self.line = line
        self.hint = hint
        where = f"{filename}:{line}" if line else filename
        msg = f"{function} ({where}): {construct} is not supported by bytrev"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class NotInvertibleError(BytrevError, ValueError):
    """`inverse(f)` was asked for a function that destroys information.

    `reasons` lists `(line, text)` pairs, one per place that needs a tape."""

    def __init__(self, function: str, filename: str, reasons: list):
        self.function = function
        self.filename = filename
        self.reasons = reasons
        lines = "\n".join(f"  line {line}: {text}" for line, text in reasons)
        super().__init__(
            f"{function} ({filename}) is not invertible without a tape:\n{lines}\n"
            "Use bytrev.reversible(f), whose forward() records exactly this information "
            "and whose backward() restores the arguments.")


class TapeMismatchError(BytrevError, ValueError):
    """`backward` was given a tape that another function or call produced."""


class ReversalError(BytrevError, ArithmeticError):
    """The backward run failed on values it was given: an inverse instruction does not
    apply to their type (`s + "a"` on strings), or they are not what the forward run
    produced (a tampered result or tape)."""


class ReversalDriftWarning(UserWarning):
    """The backward run of a gradient restored the arguments only approximately (float
    inverses round): the gradient was computed along slightly different states."""
