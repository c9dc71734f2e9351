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
    env = {**os.environ, "EXP": str(exp), "OFACTL": str(ofactl), "SPEAKERS": "5", "UTTERANCES": "60",
           "TEACHER_STEPS": "8", "STEPS": "12", "PERIODS": "20ms,200ms", "PROBE_ARGS": "--max-epochs 2",
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", str(ROOT / "recipes/mini/run.sh")], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in ("synth", "teacher", "segments", "pretrain", "calibrate", "sweep", "adaptive", "plot"):
        assert (exp / f".{stage}.done").is_file(), stage
    assert (exp / "tradeoff.png").stat().st_size > 10_000 and (exp / "calibration.png").is_file()

    df = read_results(exp / "results.csv")
    test = df[df["split"] == "test"]
    ofa = test[test["model"] == "ofa-lmax2"]
    for task in TASKS:  # every task at every period of the OFA model, each with a final status
        rows = ofa[(ofa["task"] == task) & ofa["target_period_ms"].notna()]
        assert sorted(set(rows["target_period_ms"])) == [20.0, 200.0], task
        assert set(rows["status"]) <= {"ok", "infeasible"}, (task, set(rows["status"]))
    assert (ofa[(ofa["task"] == "ks") & (ofa["target_period_ms"] == 20.0)]["status"] == "ok").all()
    # baselines: fixed lambda 1 (by lambda), lambda_max 0 at 20 ms, and average pooling to 200 ms
    fixed = test[test["model"] == "fixed-lam1"]
    assert set(fixed["task"]) == set(TASKS) and (fixed["lambda"] == 1.0).all()
    plain = test[test["model"] == "distilhubert-lmax0"]
    assert set(plain["task"]) == set(TASKS) and set(plain["target_period_ms"]) == {20.0}
    pooled = test[test["model"] == "distilhubert-lmax0+avgpool"]
    assert set(pooled["task"]) == set(TASKS) and set(pooled["target_period_ms"]) == {200.0}
    # adaptive lambda on IC: a learned lambda and its measured period
    learned = df[df["note"].fillna("").str.contains("learned", case=False) & (df["task"] == "ic")]
    assert len(learned) and learned["lambda"].notna().all() and (learned["measured_period_ms"] > 0).all()
    assert "ks" in run.stdout and "done; the figure is" in run.stdout
