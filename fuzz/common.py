"""What the fuzzers share: turning generated source into a real function (its lines in
linecache, so that bytrev's errors and tracebacks show them) and the command line that
runs a campaign and counts the outcomes."""
from __future__ import annotations

import collections
import linecache
import sys
import time


def indent(lines):
    return ["    " + line for line in lines]


def load(src: str, filename: str, namespace: dict):
    """The function `f` defined by `src`, compiled as if read from `filename`."""
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(compile(src, filename, "exec"), namespace)
    return namespace["f"]


class Failed(str):
    """An outcome that is a failure: its text says what went wrong, on which program."""


def campaign(check, what: str, argv=None, count=500) -> int:
    """Run `check(seed)` (which returns a list of outcomes, one per variant of the seed's
    program: a short label such as "passed" or "unsupported", or a `Failed` naming the
    seed and showing the program) for the seeds
    given on the command line (`START COUNT`); print each failure and the counts of every
    outcome; return the exit status (1 on any failure)."""
    argv = sys.argv[1:] if argv is None else argv
    start = int(argv[0]) if argv else 0
    count = int(argv[1]) if len(argv) > 1 else count
    tally = collections.Counter()
    t0 = time.perf_counter()
    for seed in range(start, start + count):
        for outcome in check(seed):
            if isinstance(outcome, Failed):
                tally["failed"] += 1
                print(f"{outcome}\n")
            else:
                tally[outcome] += 1
    counts = ", ".join(f"{n} {label}" for label, n in sorted(tally.items()))
    print(f"{what}, seeds {start}..{start + count - 1} ({time.perf_counter() - t0:.0f} s): "
          f"{counts}")
    return 1 if tally["failed"] else 0
