"""Sweeps fan out: local worker processes, submitit's executor, jobs that die, the plan of --dry-run."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from ofactl import load_model
from ofactl.cli import app
from ofactl.errors import OfactlError
from ofactl.results import read_results

from probe_fixtures import DATA, calibrated_model, synth_corpus  # noqa: F401  (fixtures)

runner = CliRunner()
SWEEP = dict(periods=["40ms", "80ms"], lrs=[1e-3, 1e-2], max_epochs=3, patience=2)


def _values(path):
    df = read_results(path)
    return {(r.target_period_ms, r.split, r.metric): (r.value, r.lr) for r in df.itertuples()}


def test_local_processes_give_the_rows_of_one_process(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    from ofactl.launch import LocalPool
    from ofactl.sweep import jobs_dir, run_sweep

    data = synth_corpus / DATA["sid"]
    inline = run_sweep("sid", data, load_model(calibrated_model), results=tmp_path / "a.csv", features_dir=tmp_path / "f", **SWEEP)
    pooled = run_sweep("sid", data, load_model(calibrated_model), results=tmp_path / "b.csv", features_dir=tmp_path / "f",
                       launcher=LocalPool(2, threads=torch.get_num_threads()), **SWEEP)
    assert set(inline.chosen) == set(pooled.chosen) == {("40ms", 0), ("80ms", 0)} and not pooled.failed
    a, b = _values(tmp_path / "a.csv"), _values(tmp_path / "b.csv")
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        assert a[key][1] == b[key][1] and a[key][0] == pytest.approx(b[key][0], abs=1e-6)
    assert not jobs_dir(tmp_path / "b.csv").exists()  # every job file is gone once its rows are in
    # the losing learning rates' outcome files are removed, the chosen ones kept
    outcomes = sorted((tmp_path / "b.outcomes").rglob("*.npz"))
    assert len(outcomes) == 2


def test_a_job_that_dies_is_one_failed_point_and_a_rerun_trains_only_it(synth_corpus, calibrated_model, tmp_path,  # noqa: F811
                                                                        monkeypatch):
    from ofactl.faults import ENV
    from ofactl.launch import LocalPool
    from ofactl.sweep import jobs_dir, run_sweep

    data, results = synth_corpus / DATA["sid"], tmp_path / "r.csv"
    monkeypatch.setenv(ENV, "sweep-job:40ms:lr0.01")
    first = run_sweep("sid", data, load_model(calibrated_model), results=results, launcher=LocalPool(2), **SWEEP)
    assert [(p, s) for p, s, _ in first.failed] == [("40ms", 0)] and "process died" in first.failed[0][2]
    assert set(first.chosen) == {("80ms", 0)}
    kept = list(jobs_dir(results).rglob("*.json"))
    assert [k.name for k in kept] == ["40ms-seed0-lr0.001.json"]  # the finished learning rate is not lost
    df = read_results(results)
    assert set(df[df["status"] == "failed"]["target_period_ms"]) == {40.0}
    monkeypatch.delenv(ENV)
    again = run_sweep("sid", data, load_model(calibrated_model), results=results, **SWEEP)
    assert set(again.chosen) == {("40ms", 0)} and again.skipped == [("80ms", 0)] and not again.failed
    ok = read_results(results)
    assert set(ok[ok["status"] == "ok"]["target_period_ms"]) == {40.0, 80.0} and (ok["status"] == "ok").all()


def test_a_sweep_through_submitit_s_executor(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    pytest.importorskip("submitit")
    from ofactl.launch import Submitit
    from ofactl.sweep import run_sweep

    results = tmp_path / "r.csv"
    summary = run_sweep("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), results=results,
                        launcher=Submitit(tmp_path / "logs", cluster="local", params={"timeout_min": 10}),
                        periods=["60ms"], lrs=[1e-3, 1e-2], max_epochs=2, patience=1)
    assert set(summary.chosen) == {("60ms", 0)} and not summary.failed
    df = read_results(results)
    assert len(df) == 2 and (df["status"] == "ok").all() and not math.isnan(df["value"].iloc[0])
    assert list((tmp_path / "logs").rglob("*_result.pkl")) or list((tmp_path / "logs").rglob("*.out"))


def test_cli_dry_run_prints_the_plan_and_runs_nothing(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    results = tmp_path / "r.csv"
    args = ["sweep", "--task", "sid", "--data", str(synth_corpus / DATA["sid"]), "--model", str(calibrated_model),
            "--periods", "40ms,80ms", "--lrs", "1e-3,1e-2", "--seeds", "2", "--results", str(results), "--dry-run",
            "--jobs", "2"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    text = out.output
    assert "2 point(s) x 2 learning rate(s) x 2 seed(s) = 8 job(s)" in text
    assert "audio to extract" in text and "40ms" in text and "to extract" in text
    assert "peak memory per job" in text and "2 at once" in text
    assert not results.exists() and not (tmp_path / "features").exists()


@pytest.mark.parametrize("args, message", [
    (["--launcher", "cloud"], "--launcher must be local or slurm"),
    (["--slurm-partition", "gpu"], "--slurm-partition needs --launcher slurm"),
    (["--launcher", "slurm", "--slurm-time", "soon"], "--slurm-time: cannot read 'soon'"),
])
def test_cli_launcher_mistakes_are_one_line(args, message, tmp_path, capsys):
    code, err = _main(["sweep", "--task", "sid", "--data", str(tmp_path), "--model", str(tmp_path)] + args, capsys)
    assert code != 0 and message in err and "Traceback" not in err and err.startswith("error:")


def _main(argv, capsys):
    from ofactl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err


def test_a_slurm_submission_error_is_one_line(synth_corpus, calibrated_model, tmp_path, monkeypatch,  # noqa: F811
                                              capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    monkeypatch.chdir(tmp_path)
    code, err = _main(["sweep", "--task", "sid", "--data", str(synth_corpus / DATA["sid"]), "--model",
                              str(calibrated_model), "--periods", "40ms", "--lrs", "1e-3", "--launcher", "slurm",
                       "--results", str(tmp_path / "r.csv"), "--features-dir", str(tmp_path / "f"), "--quiet"], capsys)
    assert code != 0 and "could not be submitted" in err and "Traceback" not in err


def test_slurm_settings_parse_like_slurm():
    from ofactl.launch import parse_gb, parse_minutes, slurm_params

    assert parse_minutes("90") == 90 and parse_minutes("1:30:00") == 90 and parse_minutes("2-00:00:00") == 2880
    assert parse_minutes("10:30") == 11 and parse_minutes("1-2") == 1560
    assert parse_gb("32G") == 32 and parse_gb("512M") == 0.5 and parse_gb(8) == 8 and parse_gb("1T") == 1024
    for bad in ("", "x", "-5", "0"):
        with pytest.raises(OfactlError):
            parse_minutes(bad)
    assert slurm_params(partition="gpu", gpus=1, time="4:00:00", mem="32G") == {
        "slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 240, "mem_gb": 32.0}


def test_the_workspace_slurm_table_is_checked(tmp_path):
    from ofactl.workspace import load_workspace

    (tmp_path / "ofactl.toml").write_text('[slurm]\npartition = "gpu"\ngpus = 2\ntime = "4:00:00"\n')
    assert load_workspace(tmp_path / "ofactl.toml").slurm == {"partition": "gpu", "gpus": 2, "time": "4:00:00"}
    (tmp_path / "ofactl.toml").write_text('[slurm]\nqueue = "gpu"\n')
    with pytest.raises(OfactlError, match="unknown key 'queue' in \\[slurm\\]"):
        load_workspace(tmp_path / "ofactl.toml")


def test_a_sweep_under_torchrun_extracts_on_every_rank_and_runs_the_jobs_once(synth_corpus, calibrated_model,  # noqa: F811
                                                                               tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from ofactl.features import read_attrs

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    results = tmp_path / "r.csv"
    cmd = [torchrun, "--nproc-per-node", "2", "-m", "ofactl", "sweep", "--task", "sid", "--data",
           str(synth_corpus / DATA["sid"]), "--model", str(calibrated_model), "--periods", "40ms", "--lrs", "1e-3",
           "--max-epochs", "2", "--results", str(results), "--features-dir", str(tmp_path / "f"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("row(s) appended") == 1  # rank 0 alone runs the jobs and reports
    df = read_results(results)
    assert len(df) == 2 and (df["status"] == "ok").all()
    train = next((tmp_path / "f").rglob("train-40ms.h5"))
    assert read_attrs(train)["n_utterances"] == 48  # both ranks' shares merged
