"""A bounded run of the random-program fuzzer (fuzz/reversal.py): forward equals CPython,
backward restores the arguments, inverses invert, nothing crashes."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fuzz"))
import reversal  # noqa: E402


@pytest.mark.parametrize("exact", [True, False], ids=["fractions", "floats"])
@pytest.mark.parametrize("chunk", range(10))
def test_generated_programs_round_trip(chunk, exact):
    failures = {seed: problem for seed in range(chunk * 50, chunk * 50 + 50)
                if (problem := reversal.check(seed, exact))}
    assert not failures, "\n\n".join(f"seed {s}: {p}\n{reversal.program(s, exact)}"
                                     for s, p in failures.items())
