"""Bounded runs of the random-program fuzzers in fuzz/ (`make fuzz` runs long campaigns):
each seed's program must pass every oracle of its fuzzer, or use a construct bytrev
refuses with UnsupportedError."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fuzz"))
import gradients  # noqa: E402
import reversal  # noqa: E402
import unsupported  # noqa: E402
from common import Failed  # noqa: E402

CHUNK = 50


def failures(fuzzer, chunk):
    return [outcome for seed in range(chunk * CHUNK, (chunk + 1) * CHUNK)
            for outcome in fuzzer.outcomes(seed) if isinstance(outcome, Failed)]


@pytest.mark.parametrize("chunk", range(10))
def test_reversal(chunk):
    """500 programs, each on Fractions and on floats: forward equals CPython, backward
    restores the arguments, inverses invert."""
    found = failures(reversal, chunk)
    assert not found, "\n\n".join(found)


@pytest.mark.parametrize("chunk", range(10))
def test_unsupported_constructs(chunk):
    """500 programs, each with one construct bytrev refuses (try, with, yield, async,
    class, global/nonlocal writes, del, import, attribute assignment, print/open/...,
    out=, mutating methods and helpers, raise, assert, f-strings, sets, ...) at a random
    place and depth: reversible, inverse and grad raise UnsupportedError naming f and the
    construct's line, before f's body has any effect."""
    found = failures(unsupported, chunk)
    assert not found, "\n\n".join(found)


@pytest.mark.parametrize("chunk", range(10))
def test_gradients(chunk):
    """500 programs, each on three inputs: value_and_grad's value equals f's, every
    element of the gradient agrees with central differences (elements at a kink are
    skipped), the gradients have the structure and types of the arguments, and the
    arguments come back unchanged."""
    found = failures(gradients, chunk)
    assert not found, "\n\n".join(found)
