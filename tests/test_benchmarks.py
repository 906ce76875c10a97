"""Smoke test: the benchmark scripts run at a tiny size and measure what they claim
(correct results and tape sizes; no timing assertions)."""
import importlib.util
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_foundation  # noqa: E402
import bench_peers  # noqa: E402


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


def test_peer_benchmark_quick_reports_every_workload_and_tool(tmp_path, capsys):
    records = bench_peers.main(["--quick", "--out", str(tmp_path)])
    report = (tmp_path / "RESULTS.md").read_text()
    assert "numpy " in report and "Python " in report          # the machine and versions line
    for name, w in bench_peers.WORKLOADS.items():
        assert f"### {name}: " in report
        for tool in bench_peers.TOOLS:
            (r,) = [r for r in records if (r["workload"], r["tool"], r["allocator"])
                    == (name, tool, "default")]
            installed = importlib.util.find_spec(bench_peers.MODULE_OF_TOOL[tool]) is not None
            assert r["status"] == ("ok" if installed else "skipped (not installed)"), r
            (row,) = [line for line in report.splitlines()
                      if line.startswith(f"| {w.tiny['size']} | {tool} |")]
            assert row.endswith(f"| {r['status']} |")
            if installed:
                assert 0 <= r["check_error"] < 1e-6
        for allocator in ("default", "no-trim"):
            (r,) = [r for r in records if (r["workload"], r["tool"], r["allocator"])
                    == (name, "bytrev", allocator)]
            assert r["status"] == "ok" and r["f"] > 0 and r["grad"] > 0 and r["ratio"] > 0
            assert r["check_error"] < 1e-6          # against central differences
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "w1_memory.png").stat().st_size > 0
        assert (tmp_path / "w3_time.png").stat().st_size > 0


def test_gpu_benchmark_runs_on_the_cpu(capsys):
    import bench_gpu
    rows = bench_gpu.main(["--cpu", "--elements", "64", "--sizes", "3"])
    out = capsys.readouterr().out
    by_tool = {r["tool"]: r for r in rows}
    assert set(by_tool) == set(bench_gpu.TOOLS) and "| bytrev | 3 |" in out
    assert by_tool["bytrev"]["status"] == "ok" and by_tool["bytrev"]["grad"] > 0
    assert all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows)


def test_hessian_benchmark_agrees_with_the_peers(capsys):
    import bench_hessian
    records = bench_hessian.main(["--quick"])
    assert {r[0] for r in records} == {"stress_loop", "stress_vectorised"}
    for objective, tool, seconds, err in records:
        assert seconds is None or (seconds > 0 and err < 1e-10), (objective, tool, err)
    assert any(tool == "bytrev" and seconds for _, tool, seconds, _ in records)
