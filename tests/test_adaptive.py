"""--learn-lambda: the gradient reaches lambda through the CIF, lambda moves, and it is recorded."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from ofactl import load_model
from ofactl.cli import app
from ofactl.results import read_results
from probe_fixtures import DATA

runner = CliRunner()


def test_gradient_reaches_theta_through_the_cif(calibrated_model):  # noqa: F811
    from ofactl.adaptive import AdaptiveUpstream, Cached
    from ofactl.inference import load_model

    m = load_model(calibrated_model)
    upstream = AdaptiveUpstream(m.student, 1.9, 0.7)
    torch.manual_seed(0)
    with torch.no_grad():
        feats, lengths, alpha = m.student.front(torch.randn(2, 16000), torch.tensor([16000, 9000]))
    inputs = [Cached(feats[i, : int(lengths[i])], alpha[i, : int(lengths[i])], 1.0) for i in range(2)]
    x, out_lengths = upstream(inputs)
    assert x.shape[0] == 2 and int(out_lengths.max()) == x.shape[1]
    (x ** 2).sum().backward()
    assert upstream.theta.grad is not None and upstream.theta.grad.abs() > 0
    assert float(upstream.lam.detach()) == pytest.approx(0.7)
    with pytest.raises(Exception, match="lambda-init"):
        AdaptiveUpstream(m.student, 1.9, 1.95)


def test_learn_lambda_moves_lambda_and_records_it(synth_corpus, calibrated_model, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["probe", "--task", "sid", "--learn-lambda", "--lambda-init", "1.0", "--lambda-lr",
                                 "0.1", "--rate-penalty", "0.5", "--model", str(calibrated_model), "--data",
                                 str(synth_corpus / DATA["sid"]), "--max-epochs", "4", "--patience", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    df = read_results(tmp_path / "results.csv")
    assert list(df["split"]) == ["test", "dev"] and (df["status"] == "ok").all()
    learned = df["lambda"].iloc[0]
    assert abs(learned - 1.0) > 1e-3 and 0 < learned < 2
    assert df["target_period_ms"].isna().all()
    measured = df["measured_period_ms"].iloc[0]
    assert 20.0 < measured and not math.isnan(measured)
    assert "learned lambda (init 1" in df["note"].iloc[0]


def test_learn_lambda_on_a_ctc_task(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    from ofactl.adaptive import run_adaptive

    seen = []
    rows = run_adaptive("pr", synth_corpus / DATA["pr"], load_model(calibrated_model), lam_init=0.5, lambda_lr=0.05, max_epochs=3, patience=3,
                        features_dir=tmp_path,
                        on_epoch=lambda epoch, lam, scores: seen.append(lam))
    assert len(seen) == 3 and len(set(seen)) == 3
    assert rows[0].metric == "per" and rows[0].status == "ok" and rows[0].lam in seen
