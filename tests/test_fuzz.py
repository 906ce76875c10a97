"""Bounded runs of the random-program fuzzers in fuzz/ (`make fuzz` runs long campaigns):
each seed's program must pass every oracle of its fuzzer, or use a construct bytrev
refuses with UnsupportedError."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fuzz"))
import reversal  # noqa: E402
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
