"""`ofactl compare`: selecting runs by MODEL[@POINT], the paired difference, verdicts and one-line errors.

The results tables here are written with the library's own appender from
simulated per-utterance outcomes (no probe training), so every path of the
selection is exercised in milliseconds; test_probe runs compare on real probes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ofactl.cli import app
from ofactl.compare import RunSpec, compare_runs
from ofactl.errors import OfactlError
from ofactl.outcomes import Outcomes
from ofactl.results import ResultRow, append_rows, learned_variant

runner = CliRunner()
N = 400


def _rows(model, correct, *, period=None, lam=None, seed=0, variant="", dev=None, status="ok", task="ks", ids=None,
          precision="fp32"):
    ids = ids or [f"u{i:04d}" for i in range(len(correct))]
    out = Outcomes(task, ids, {"correct": np.asarray(correct, float), "n": np.ones(len(ids))})
    common = dict(model=model, task=task, lam=lam, target_period_ms=period, measured_period_ms=period or 40.0,
                  seed=seed, variant=variant, status=status, layer="last", higher_is_better=True, metric="accuracy",
                  precision=precision)
    value = float(np.mean(correct)) if status == "ok" else float("nan")
    test = ResultRow(value=value, split="test", n_utterances=len(ids), per_utterance=out if status == "ok" else None,
                     **common)
    dev_row = ResultRow(value=dev if dev is not None else value, split="dev", **common)
    return [test, dev_row]


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    hard = rng.random(N)
    path = tmp_path / "exp" / "results.csv"
    rows = []
    rows += _rows("ofa", hard < 0.80, period=20.0, dev=0.81)
    rows += _rows("ofa", hard < 0.74, period=35.0, dev=0.79)
    rows += _rows("ofa", hard < 0.50, period=1000.0, dev=0.45)
    rows += _rows("ofa", hard < 0.77, period=35.0, seed=1, dev=0.80)
    rows += _rows("fixed", hard < 0.75, lam=1.0, dev=0.78)
    rows += _rows("ofa", hard < 0.73, lam=1.3, variant=learned_variant(0.5), dev=0.8)
    rows += _rows("ofa", hard < 0.70, lam=1.1, variant=learned_variant(1.5), dev=0.8)
    rows += _rows("pr-like", [0] * 5, period=400.0, status="infeasible")
    for i in range(0, len(rows), 2):
        append_rows(path, rows[i:i + 2])
    return path


def test_specs_parse():
    assert RunSpec.parse("ofa-lmax2@90ms") == RunSpec("ofa-lmax2", "90ms")
    assert RunSpec.parse(" fixed-lam1 ") == RunSpec("fixed-lam1", None)
    assert RunSpec.parse("ofa@90ms:bf16") == RunSpec("ofa", "90ms", "bf16")
    assert RunSpec.parse("ofa:fp32") == RunSpec("ofa", None, "fp32")
    assert RunSpec.parse("host:ofa@90ms") == RunSpec("host:ofa", "90ms")  # a colon that names no precision
    assert str(RunSpec("ofa", "lambda=1", "bf16")) == "ofa@lambda=1:bf16"
    with pytest.raises(OfactlError):
        RunSpec.parse("@90ms")


def test_a_period_against_a_model_by_lambda_pools_seeds_and_calls_no_difference(table):
    c = compare_runs(table, "ks", "ofa@35ms", "fixed")
    assert c.a.label == "ofa@35ms" and c.a.seeds == [0, 1] and c.b.label == "fixed@lambda=1"
    assert c.difference.n == N and c.difference.a == pytest.approx(c.a_interval.value)
    assert c.difference.low < 0 < c.difference.high and c.verdict == "no difference at 95%"
    assert compare_runs(table, "ks", "ofa@0.035s", "fixed@lam1").difference.diff == c.difference.diff


def test_a_clear_difference_and_the_dev_best_point(table):
    c = compare_runs(table, "ks", "ofa@20ms", "ofa@1000ms")
    assert c.difference.better == "a" and c.verdict == "ofa@20ms better"
    best = compare_runs(table, "ks", "ofa@best", "fixed")  # dev: 20 ms 0.81 beats 35 ms (0.79, 0.80)
    assert best.a.point == "20ms" and "best on dev accuracy among 3 point(s)" in best.a.note
    eq = compare_runs(table, "ks", "ofa@35ms", "fixed", margin=0.05)
    assert eq.difference.equivalent is True and "equivalent within ±0.05" in eq.verdict


def test_fp32_and_bf16_rows_of_one_point_are_two_runs(tmp_path):
    rng = np.random.default_rng(1)
    hard = rng.random(N)
    path = tmp_path / "r.csv"
    rows = _rows("ofa", hard < 0.80, period=90.0) + _rows("ofa", hard < 0.79, period=90.0, precision="bf16")
    rows += _rows("ofa", hard < 0.60, period=90.0, precision="bf16", seed=1)
    append_rows(path, rows)
    with pytest.raises(OfactlError) as err:
        compare_runs(path, "ks", "ofa@90ms", "ofa@90ms:bf16")  # mixing them would pool fp32 and bf16 seeds
    assert "2 runs" in err.value.message and "ofa@90ms:bf16" in err.value.hint and "ofa@90ms:fp32" in err.value.hint
    c = compare_runs(path, "ks", "ofa@90ms:fp32", "ofa@90ms:bf16")
    assert c.a.label == "ofa@90ms:fp32" and c.b.label == "ofa@90ms:bf16" and c.b.seeds == [0, 1] and c.a.seeds == [0]
    assert c.a_interval.value == pytest.approx(float(np.mean(hard < 0.80)))
    with pytest.raises(OfactlError, match="in bf16"):
        compare_runs(path, "ks", "fixed:bf16", "ofa@90ms:fp32")


def test_learned_runs_by_variant(table):
    with pytest.raises(OfactlError, match="names 2 runs") as err:
        compare_runs(table, "ks", "ofa@learned", "fixed")
    assert "ofa@learned-init0.5" in err.value.hint and "ofa@learned-init1.5" in err.value.hint
    c = compare_runs(table, "ks", "ofa@learned-init0.5", "ofa@best")
    assert c.a.label == "ofa@learned-init0.5" and c.a.lam == pytest.approx(1.3)


def test_selection_errors_are_one_line(table, tmp_path):
    cases = [
        (("ks", "ofa", "fixed"), "names 5 runs"),
        (("ks", "nope", "fixed"), "no ks rows for model 'nope'"),
        (("ks", "ofa@90ms", "fixed"), "no ks accuracy test row at 90ms"),
        (("ks", "pr-like", "fixed"), "is infeasible for ks"),
        (("sid", "ofa", "fixed"), "has no rows of task sid"),
        (("ks", "ofa@bogus", "fixed"), "cannot read the point 'bogus'"),
    ]
    for (task, a, b), message in cases:
        with pytest.raises(OfactlError, match=message):
            compare_runs(table, task, a, b)
    with pytest.raises(OfactlError, match="no metric 'per'"):
        compare_runs(table, "ks", "ofa@20ms", "fixed", metric="per")
    # no shared utterances
    other = tmp_path / "other.csv"
    append_rows(other, _rows("x", [1, 0, 1], period=20.0, ids=["a", "b", "c"]))
    append_rows(other, _rows("y", [1, 1], period=20.0, ids=["d", "e"]))
    with pytest.raises(OfactlError, match="share no test utterance"):
        compare_runs(other, "ks", "x", "y")
    # a missing outcomes file
    next(other.parent.rglob("*.npz")).unlink()
    with pytest.raises(OfactlError, match="not found"):
        compare_runs(other, "ks", "x", "y")


def test_schema_1_rows_have_no_outcomes_and_say_so(tmp_path):
    path = tmp_path / "old.csv"
    header = ("model,model_sha256,task,split,lambda,target_period_ms,measured_period_ms,metric,value,higher_is_better,"
              "status,note,seed,n_utterances,macs_per_second,lr,layer,created_at,ofactl_version,schema_version")
    rows = [f"{m},abc,ks,test,,20.0,20.1,accuracy,0.5,true,ok,,0,28,,0.001,last,2026-11-28T00:00:0{i},0.1.0,1"
            for i, m in enumerate(("a", "b"))]
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(OfactlError, match="no per-utterance outcomes"):
        compare_runs(path, "ks", "a", "b")


def test_cli_prints_the_difference_and_verdict(table):
    result = runner.invoke(app, ["compare", str(table), "--task", "ks", "--a", "ofa@20ms", "--b", "ofa@1000ms"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "paired bootstrap over the 400 test utterances" in lines[0]
    assert lines[1].strip().startswith("A  ofa@20ms") and lines[2].strip().startswith("B  ofa@1000ms")
    assert lines[3].strip().startswith("A - B  +0.") and lines[-1] == "verdict: ofa@20ms better"
    result = runner.invoke(app, ["compare", str(table), "--task", "ks", "--a", "ofa@35ms", "--b", "fixed", "--json"])
    data = json.loads(result.stdout)
    assert data["a"]["seeds"] == [0, 1] and data["verdict"] == "no difference at 95%" and data["n_utterances"] == N


def test_a_results_path_relative_to_the_working_directory(tmp_path, monkeypatch):
    """Outcome references are relative to the table's folder whatever form the table's path takes."""
    monkeypatch.chdir(tmp_path)
    relative = "exp/mini/results.csv"
    append_rows(relative, _rows("x", [1, 0, 1, 1], period=20.0))
    append_rows(relative, _rows("y", [1, 0, 0, 1], period=20.0))
    c = compare_runs(relative, "ks", "x", "y")
    assert c.difference.n == 4 and c.a.rows["outcomes"].iloc[0].startswith("results.outcomes/x/ks/")
    monkeypatch.chdir(tmp_path / "exp")
    assert compare_runs("mini/results.csv", "ks", "x", "y").difference.diff == c.difference.diff
