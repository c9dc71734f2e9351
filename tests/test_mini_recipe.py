"""The mini recipe end to end at reduced size: every stage runs, the table has every task and period, the figure exists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ofactl.results import read_results

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("ks", "sid", "ic", "pr")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_reduced_mini_recipe_runs_end_to_end(tmp_path):
    exp = tmp_path / "mini"
    ofactl = Path(sys.executable).with_name("ofactl")
    env = {**os.environ, "EXP": str(exp), "OFACTL": str(ofactl), "SPEAKERS": "8", "HELD_OUT": "2",
           "UTTERANCES": "60", "DEV_UTTS": "12", "TEST_UTTS": "16", "TEACHER_STEPS": "8", "STEPS": "12",
           "OFA_PERIODS": "20ms,200ms", "UNIFORM_PERIODS": "200ms",
           "NARROW_PERIOD": "30ms", "PROBE_ARGS": "--max-epochs 2", "LAMBDA_INITS": "0.5,1.5"}
    # the recipe works in the folder above recipes/ (it records its model in ofactl.toml there): run a copy,
    # so that the checkout is never written to
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "recipes", copy / "recipes")
    # no timeout that a slow machine could hit: the run is bounded by its sizes (about 2 minutes here)
    run = subprocess.run(["bash", str(copy / "recipes/mini/run.sh")], env=env, capture_output=True, text=True,
                         timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (copy / "ofactl.toml").is_file() and not (ROOT / "ofactl.toml").exists()
    for stage in ("synth", "teacher", "segments", "pretrain", "calibrate", "sweep", "adaptive", "plot"):
        assert (exp / f".{stage}.done").is_file(), stage
    assert (exp / "tradeoff.png").stat().st_size > 10_000 and (exp / "calibration.png").is_file()
    assert (exp / "table.txt").read_text().count("cells: value [95% CI]") == len(TASKS)
    claims = (exp / "claims.md").read_text()
    assert claims.startswith("| claim |") and all(f"| ({k}) " in claims for k in "abcde")

    df = read_results(exp / "results.csv")
    test = df[df["split"] == "test"]
    ofa = test[test["model"] == "ofa-lmax2"]
    for task in TASKS:  # every task at every period of the widest model, each with a final status
        rows = ofa[(ofa["task"] == task) & ofa["target_period_ms"].notna()]
        assert {20.0, 200.0} <= set(rows["target_period_ms"]) and len(set(rows["target_period_ms"])) == 3, task
        assert set(rows["status"]) <= {"ok", "infeasible"}, (task, set(rows["status"]))
    ok = test[test["status"] == "ok"]
    assert ok["ci_low"].notna().all() and (ok["ci_low"] <= ok["value"] + 1e-12).all()
    assert all((exp / ref).is_file() for ref in ok["outcomes"])  # per-utterance outcomes beside the table
    assert (ofa[(ofa["task"] == "ks") & (ofa["target_period_ms"] == 20.0)]["status"] == "ok").all()
    for name in ("ofa-lmax1.5", "ofa-lmax1"):  # the narrower ranges at 20 ms
        assert set(test.loc[test["model"] == name, "task"]) == set(TASKS)
    fixed = test[test["model"] == "fixed-lam1"]
    assert set(fixed["task"]) == set(TASKS) and (fixed["lambda"] == 1.0).all()
    plain = test[test["model"] == "distilhubert-lmax0"]
    assert set(plain["task"]) == set(TASKS) and set(plain["target_period_ms"]) == {20.0}
    uniform = test[test["model"] == "ofa-lmax2+uniform"]  # fixed-length pooling inside the widest model
    assert set(uniform["task"]) == set(TASKS) - {"pr"} and set(uniform["target_period_ms"]) == {200.0}
    assert (uniform["variant"] == "uniform").all()
    # adaptive lambda on PR and IC, one run per initial lambda
    learned = test[test["variant"].str.startswith("learned")]
    assert {(t, v) for t, v in zip(learned["task"], learned["variant"])} == {
        (t, f"learned-init{x}") for t in ("pr", "ic") for x in ("0.5", "1.5")}
    assert learned["lambda"].notna().all() and (learned["measured_period_ms"] > 0).all()
    assert "done; the figure is" in run.stdout and "done: sweep-pr-ofa" in run.stdout
