"""A bounded run of the random-program fuzzer (fuzz/reversal.py): forward equals CPython,
backward restores the arguments, inverses invert, nothing crashes."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fuzz"))
import reversal  # noqa: E402


@pytest.mark.parametrize("chunk", range(12))
def test_generated_programs_round_trip(chunk):
    failures = {seed: problem for seed in range(chunk * 50, chunk * 50 + 50)
                if (problem := reversal.check(seed))}
    assert not failures, "\n\n".join(f"seed {s}: {p}\n{reversal.program(s)}"
                                     for s, p in failures.items())
