"""`ofactl sweep`: rows for several periods, lr chosen on dev, resumable, failures recorded, data from the workspace."""

from __future__ import annotations

import math

from typer.testing import CliRunner

from ofactl import load_model
from ofactl.cli import app
from ofactl.calibrate import Calibration
from ofactl.results import read_results
from ofactl.workspace import MODEL_ENV_VAR
from probe_fixtures import DATA

runner = CliRunner()


def test_default_periods_are_log_spaced_over_the_calibrated_range(calibrated_model):  # noqa: F811
    from ofactl.sweep import default_lrs, default_periods
    from ofactl.tasks import TASKS

    cal = Calibration.load(calibrated_model)
    periods = [p.ms for p in default_periods(cal, n=5)]
    assert len(periods) == 5 and periods[0] >= 20.0 and periods[-1] <= cal.max_period_ms * 1.001
    ratios = [b / a for a, b in zip(periods, periods[1:])]
    assert max(ratios) / min(ratios) < 1.05
    assert default_lrs(TASKS["sid"]) == [1e-4, 1e-3, 1e-2]


def test_sweep_skips_finished_rows_records_a_failure_and_goes_on(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    from ofactl.sweep import run_sweep

    results = tmp_path / "results.csv"
    periods = ["20ms", "9s", "60ms"]  # 9 s is outside the calibrated range: that run fails, the next one runs
    first = run_sweep("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), results=results, periods=periods, lrs=[1e-3, 1e-2],
                      max_epochs=4, patience=2)
    assert [p for p, _, _ in first.failed] == ["9000ms"] and "outside the calibrated range" in first.failed[0][2]
    assert set(first.chosen) == {("20ms", 0), ("60ms", 0)} and set(first.chosen.values()) <= {1e-3, 1e-2}
    df = read_results(results)
    ok = df[df["status"] == "ok"]
    assert sorted(set(ok["target_period_ms"])) == [20.0, 60.0]
    assert set(ok["split"]) == {"test", "dev"} and ok["lr"].notna().all()
    assert ok["note"].str.contains("lr chosen on dev accuracy").all()
    failed = df[df["status"] == "failed"]
    assert list(failed["target_period_ms"]) == [9000.0] and math.isnan(failed["value"].iloc[0])

    lines = results.read_text().splitlines()
    again = run_sweep("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), results=results, periods=periods, lrs=[1e-3, 1e-2],
                      max_epochs=4, patience=2)
    assert sorted(again.skipped) == [("20ms", 0), ("60ms", 0)]
    assert [p for p, _, _ in again.failed] == ["9000ms"]  # failures are retried
    new = results.read_text().splitlines()[len(lines):]
    assert len(new) == 1 and ",9000.0," in new[0]


def test_cli_sweep_from_the_workspace(synth_corpus, calibrated_model, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    result = runner.invoke(app, ["sweep", "--task", "ks", "--model", str(calibrated_model), "--quiet"])
    assert result.exit_code != 0 and "no dataset for task ks" in str(result.exception)
    assert "[data]" in result.exception.hint
    (tmp_path / "ofactl.toml").write_text(f'model = "{calibrated_model}"\n[data]\nks = "{synth_corpus / DATA["ks"]}"\n')
    args = ["sweep", "--task", "ks", "--periods", "20ms,80ms", "--lrs", "1e-2", "--seeds", "2", "--max-epochs", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    df = read_results(tmp_path / "results.csv")
    test = df[df["split"] == "test"]
    assert sorted(zip(test["target_period_ms"], test["seed"])) == [(20.0, 0), (20.0, 1), (80.0, 0), (80.0, 1)]
    assert (test["status"] == "ok").all() and (test["lr"] == 1e-2).all()
    result = runner.invoke(app, args + ["--quiet"])
    assert result.exit_code == 0 and "4 run(s) already in" in result.stdout
    assert len(read_results(tmp_path / "results.csv", supersede=False)) == len(df)
    result = runner.invoke(app, ["sweep", "--task", "ks", "--periods", "90", "--quiet"])
    assert result.exit_code != 0 and "did you mean '90ms'" in str(result.exception)


def test_sweep_by_lambda_writes_lambda_rows_and_resumes(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    from ofactl.errors import OfactlError
    from ofactl.sweep import run_sweep

    results = tmp_path / "results.csv"
    kwargs = dict(results=results, lrs=[1e-2], max_epochs=2, patience=1)
    first = run_sweep("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), lambdas=[0.0, 1.0], **kwargs)
    assert set(first.chosen) == {("lambda=0", 0), ("lambda=1", 0)}
    df = read_results(results)
    test = df[df["split"] == "test"]
    assert sorted(test["lambda"]) == [0.0, 1.0] and test["target_period_ms"].isna().all()
    assert (test["measured_period_ms"] > 0).all()
    measured = test.set_index("lambda")["measured_period_ms"]
    assert measured[1.0] > measured[0.0]
    again = run_sweep("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), lambdas=[1.0, 1.5], **kwargs)
    assert again.skipped == [("lambda=1", 0)] and set(again.chosen) == {("lambda=1.5", 0)}
    try:
        run_sweep("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), lambdas=[2.5], **kwargs)
    except OfactlError as err:
        assert "--lambdas must lie in [0, 2)" in str(err)
    else:
        raise AssertionError("lambda 2.5 accepted")
    result = runner.invoke(app, ["sweep", "--task", "sid", "--data", str(synth_corpus / DATA["sid"]), "--model",
                                 str(calibrated_model), "--periods", "20ms", "--lambdas", "1", "--quiet"])
    assert result.exit_code != 0 and "not both" in str(result.exception)
