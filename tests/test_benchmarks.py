"""benchmarks/run_all.py runs every benchmark and prints one table.

Smallest sizes (``--tiny``), one torch thread.  Only that the table is complete
and its numbers are sane is checked, never a speed goal: timings are reports.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_ALL = ROOT / "benchmarks" / "run_all.py"

# each benchmark's key ratio(s), by key prefix
KEY_RATIOS = {
    "cif": ["cif.speedup."],
    "extract": ["extract.ratio_90_cnn", "extract.ratio_20_nocif", "extract.size_ratio_90_20"],
    "pretrain": ["pretrain.step_ratio"],
    "probe": ["probe.stream_vs_memory_1x", "probe.rss_growth"],
    "precision": ["precision.extract_20", "precision.extract_90", "precision.pretrain_step"],
    "st": ["st.incremental_speedup"],
    "malloc": [],
}


def run_all(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(RUN_ALL), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def test_run_all_tiny(tmp_path):
    """One run (it is the slow part) checked three ways: key ratios, every value, the detailed tables."""
    out = tmp_path / "bench.json"
    proc = run_all("--tiny", "--threads", "1", "--long-minutes", "0.02", "--verbose", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdout, data = proc.stdout, json.loads(out.read_text())
    check_key_ratios(stdout, data)
    check_every_value(stdout, data)
    check_intervals(stdout, data)
    for header in ("loop/cif", "x CNN floor", "ms/step", "float32 prefix sum", "long audio", "peak RSS MB",
                   "identical frame counts, min cosine", "incr. s"):
        assert header in stdout  # --verbose: each benchmark's own table


def check_key_ratios(stdout: str, data: dict) -> None:
    assert stdout.count("# machine: ") == 1
    assert any(line.startswith("| benchmark | quantity") and "| measured |" in " ".join(line.split())
               for line in stdout.splitlines())
    by_key = {r["key"]: r for r in data["results"]}
    for bench, prefixes in KEY_RATIOS.items():
        for prefix in prefixes:
            rows = [r for key, r in by_key.items() if key.startswith(prefix)]
            assert rows, f"no {prefix} row"
            for r in rows:
                assert r["benchmark"] == bench and r["unit"] == "x"
                assert math.isfinite(r["value"]) and r["value"] > 0, r
                assert r["goal"] and isinstance(r["met"], bool)
                assert any(line.startswith(f"| {bench}") and r["quantity"] in line for line in stdout.splitlines())


def check_intervals(stdout: str, data: dict) -> None:
    """The side-by-side timing ratios carry a 95% interval and their n, in the JSON and in the table."""
    prefixes = ("cif.vs_index_add.", "cif.speedup.", "cif.fwd_bwd_speedup.", "pretrain.step_ratio",
                "precision.extract_", "precision.pretrain_step", "extract.ratio_90_cnn", "extract.ratio_20_nocif",
                "st.incremental_speedup")
    rows = [r for r in data["results"] if r["key"].startswith(prefixes)]
    assert {prefix for prefix in prefixes for r in rows if r["key"].startswith(prefix)} == set(prefixes)
    for r in rows:
        assert r["low"] <= r["value"] <= r["high"] and r["n"] >= 1, r
        line = next(line for line in stdout.splitlines()
                    if line.startswith(f"| {r['benchmark']}") and r["quantity"] in line)
        assert f"n={r['n']}" in line and "[" in line


def check_every_value(stdout: str, data: dict) -> None:
    assert data["machine"]["threads"] == 1 and data["machine"]["cores"] >= 1
    assert {r["benchmark"] for r in data["results"]} == set(KEY_RATIOS)
    for r in data["results"]:
        assert math.isfinite(r["value"]) and r["value"] >= 0, r
        assert (r["goal"] is None) == (r["met"] is None), r
    assert "extract.long_peak_mb" in {r["key"] for r in data["results"]}
    met = sum(r["met"] is True for r in data["results"])
    goals = sum(r["met"] is not None for r in data["results"])
    assert f"# {met} of {goals} goals met" in stdout


def test_timing_ratio_and_its_interval():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from common import Result, format_interval, side_by_side, timing_ratio
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    num, den = [3.0, 4.0, 5.0, 6.0, 100.0], [1.0, 2.0, 2.0, 2.0, 50.0]
    for paired in (True, False):
        est = timing_ratio(num, den, paired=paired)
        assert est.value == 5.0 / 2.0 and est.n == 5  # median(num) / median(den), not a mean of ratios
        assert est.low <= est.value <= est.high
    # a round that is slow for both cancels when paired: the paired interval is the narrower one here
    rng = __import__("numpy").random.default_rng(0)
    load = rng.uniform(1.0, 3.0, size=40)
    paired = timing_ratio(2.0 * load, load, paired=True)
    unpaired = timing_ratio(2.0 * load, load, paired=False)
    assert paired.low == paired.high == 2.0 and unpaired.high - unpaired.low > 0.2
    assert timing_ratio([1.0] * 3, [2.0] * 3, paired=True).value == 0.5
    with __import__("pytest").raises(ValueError, match="in pairs"):
        timing_ratio([1.0, 2.0], [1.0], paired=True)
    r = Result("cif", "q", 2.5, "x").with_interval(timing_ratio(num, den, paired=True))
    assert format_interval(r).startswith("2.500x [") and format_interval(r).endswith("] n=5")
    assert format_interval(Result("cif", "q", 2.5, "x")) == "2.500x"
    with __import__("pytest").raises(ValueError, match="median"):
        timing_ratio([1.0], [1.0], paired=True, statistic="best")
    assert timing_ratio([1.0, 3.0, 8.0], [1.0, 1.0, 1.0], paired=True, statistic="mean").value == 4.0
    # interleaving: every function once per round (the fastest of calls_per_round calls), after a warm-up call
    calls: list[str] = []
    times = side_by_side({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, calls_per_round=2,
                         warmup=True)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3} and min(times["a"] + times["b"]) >= 0


def test_only_and_unknown_names():
    proc = run_all("--tiny", "--threads", "1", "--only", "cif")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    assert table and all(line.startswith("| cif") for line in table)
    bad = run_all("--only", "cif,nope")
    assert bad.returncode == 2 and "nope" in bad.stderr
