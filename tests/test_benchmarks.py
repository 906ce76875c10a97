"""Smoke test: the benchmark scripts run at a tiny size and measure what they claim
(correct results and tape sizes; no timing assertions)."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_foundation  # noqa: E402


def test_foundation_benchmark_runs_and_reports_tapes(capsys):
    rows = bench_foundation.main(["--quick"])
    out = capsys.readouterr().out
    assert "| workload |" in out and "lift + analysis + compilation" in out
    (branchy, t_f, t_fw, t_bw, branchy_tape), (leapfrog, *_, leapfrog_tape) = rows
    assert "branchy" in branchy and "leapfrog" in leapfrog
    assert min(t_f, t_fw, t_bw) > 0
    # 1000 bits packed into 125 bytes plus 8 bytes per stashed float; leapfrog needs none.
    assert 125 < branchy_tape <= 125 + 8 * 1000
    assert leapfrog_tape == 0
