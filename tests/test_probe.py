"""Probes on the synthetic synth_corpus with a tiny random model: accuracy above chance, PER, infeasible periods,
the feature cache, and the `ofactl probe` command."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from ofactl import load_model
from ofactl.cli import app
from ofactl.results import read_results
from ofactl.workspace import MODEL_ENV_VAR

runner = CliRunner()

from probe_fixtures import DATA, SPEAKERS




def test_sid_and_ks_well_above_chance_at_20ms(synth_corpus, calibrated_model, tmp_path):
    from ofactl.probe import run_probe

    sid = run_probe("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), period="20ms", lr=1e-2, features_dir=tmp_path)
    ks = run_probe("ks", synth_corpus / DATA["ks"], load_model(calibrated_model), period="20ms", lr=1e-2, features_dir=tmp_path)
    sid_test = [r for r in sid if r.split == "test"][0]
    ks_test = [r for r in ks if r.split == "test"][0]
    # chance: SID 1/6 over 6 speakers; KS 1/12 (majority class 2/14)
    assert sid_test.n_utterances == SPEAKERS and sid_test.value >= 3 / SPEAKERS, sid_test
    assert ks_test.n_utterances == 14 and ks_test.value >= 4 / 14, ks_test
    for r in sid + ks:
        assert r.status == "ok" and r.target_period_ms == 20.0 and 19.0 < r.measured_period_ms < 21.5
        assert r.lam is not None and r.lr == 1e-2 and r.layer == "last" and r.model == "tiny"
        assert len(r.model_sha256) == 64


def test_features_are_extracted_once_and_reused(synth_corpus, calibrated_model, tmp_path):
    from ofactl.probe import features_path, run_probe
    from ofactl.checkpoint import model_sha256

    run_probe("ic", synth_corpus / DATA["ic"], load_model(calibrated_model), lam=0.5, features_dir=tmp_path, max_epochs=2)
    sha = model_sha256(calibrated_model)
    files = {s: features_path(tmp_path, sha, "ic", s, "lam0.5", data=synth_corpus / DATA["ic"])
             for s in ("train", "dev", "test")}
    assert all(f.is_file() for f in files.values())
    stamps = {s: f.stat().st_mtime_ns for s, f in files.items()}
    rows = run_probe("ic", synth_corpus / DATA["ic"], load_model(calibrated_model), lam=0.5, features_dir=tmp_path, max_epochs=2)
    assert {s: f.stat().st_mtime_ns for s, f in files.items()} == stamps
    assert [(r.split, r.metric, r.status) for r in rows] == [("test", "accuracy", "ok"), ("dev", "accuracy", "ok")]
    assert len(list(tmp_path.rglob("*.h5"))) == 3


def test_the_feature_cache_is_keyed_by_the_data_and_heals_a_bad_entry(synth_corpus, calibrated_model, tmp_path):
    """A second corpus of the same task gets its own cache files (no collision, no stale features), and a file
    at a cache path that is not complete features is re-extracted, never read."""
    import shutil

    from ofactl.checkpoint import model_sha256
    from ofactl.probe import features_path, run_probe

    first = synth_corpus / DATA["ic"]
    second = tmp_path / "copy" / DATA["ic"]
    shutil.copytree(first, second)
    feats = tmp_path / "features"
    for data in (first, second):
        rows = run_probe("ic", data, load_model(calibrated_model), lam=0.5, features_dir=feats, max_epochs=1)
        assert rows[0].status == "ok"
    assert len(list(feats.rglob("*.h5"))) == 6
    sha = model_sha256(calibrated_model)
    a = features_path(feats, sha, "ic", "test", "lam0.5", data=first)
    b = features_path(feats, sha, "ic", "test", "lam0.5", data=second)
    assert a != b and a.is_file() and b.is_file()
    b.write_bytes(b"not features")  # e.g. a file cut short by a full disk
    rows = run_probe("ic", second, load_model(calibrated_model), lam=0.5, features_dir=feats, max_epochs=1)
    assert rows[0].status == "ok" and b.stat().st_size > 100


def test_pr_reports_per_and_marks_an_infeasible_period(synth_corpus, calibrated_model, tmp_path):
    from ofactl.probe import run_probe

    ok = run_probe("pr", synth_corpus / DATA["pr"], load_model(calibrated_model), period="20ms", features_dir=tmp_path, max_epochs=4)
    test = [r for r in ok if r.split == "test"]
    assert [(r.metric, r.status, r.higher_is_better) for r in test] == [("per", "ok", False)]
    assert 0.0 < test[0].value < 2.0
    bad = run_probe("pr", synth_corpus / DATA["pr"], load_model(calibrated_model), period="400ms", features_dir=tmp_path)
    assert {r.status for r in bad} == {"infeasible"} and all(math.isnan(r.value) for r in bad)
    assert "fewer frames than labels" in bad[0].note and " of " in bad[0].note
    # compute per second of audio: the 400 ms rows cost less than the 20 ms rows, the CNN floor stays
    assert 0 < bad[0].macs_per_second < test[0].macs_per_second


def test_asr_reports_wer_and_cer(synth_corpus, calibrated_model, tmp_path):
    from ofactl.probe import run_probe

    rows = run_probe("asr", synth_corpus / DATA["asr"], load_model(calibrated_model), period="40ms", features_dir=tmp_path, max_epochs=1)
    assert [(r.split, r.metric, r.status) for r in rows] == [("test", "wer", "ok"), ("test", "cer", "ok"),
                                                             ("dev", "wer", "ok")]
    assert all(r.value >= 0 for r in rows)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    return tmp_path


def test_cli_probe_appends_rows(synth_corpus, calibrated_model, in_tmp):
    result = runner.invoke(app, ["probe", "--task", "sid", "--period", "40ms", "--model", str(calibrated_model), "--data",
                                 str(synth_corpus / DATA["sid"]), "--max-epochs", "2", "--seed", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    df = read_results(in_tmp / "results.csv")
    assert list(df["split"]) == ["test", "dev"] and set(df["seed"]) == {3}
    assert (df["target_period_ms"] == 40.0).all() and (df["status"] == "ok").all()
    assert (in_tmp / "features").is_dir()
    assert "appended" in result.stdout
    # in a log or a pipe (80 columns here) the table wraps its cells: the interval is never cut to "[0.1667,…"
    test = df[df["split"] == "test"].iloc[0]
    assert f"[{test['ci_low']:.4f}," in result.stdout and "…" not in result.stdout, result.stdout


def test_cli_probe_rows_carry_intervals_and_outcomes_that_compare_reads(synth_corpus, calibrated_model, in_tmp):
    """Two probes on one test set: each test row has its 95% interval (containing the value) and its outcomes
    file; `ofactl compare` pairs them; --seeds 2 gives two rows and a pooled line."""
    from ofactl.outcomes import load_outcomes

    base = ["probe", "--task", "ks", "--model", str(calibrated_model), "--data", str(synth_corpus / DATA["ks"]),
            "--max-epochs", "2", "--quiet"]
    first = runner.invoke(app, base + ["--period", "20ms", "--seeds", "2"])
    assert first.exit_code == 0, first.output
    assert "mean of 2 seeds" in first.stdout and "95% CI [" in first.stdout
    second = runner.invoke(app, base + ["--period", "60ms"])
    assert second.exit_code == 0, second.output
    df = read_results(in_tmp / "results.csv")
    test = df[df["split"] == "test"]
    assert len(test) == 3 and sorted(test["seed"]) == [0, 0, 1]
    assert (test["ci_low"] <= test["value"]).all() and (test["value"] <= test["ci_high"]).all()
    assert df.loc[df["split"] == "dev", "ci_low"].isna().all() and df.loc[df["split"] == "dev", "outcomes"].eq("").all()
    for ref, value in zip(test["outcomes"], test["value"]):
        out = load_outcomes(in_tmp / ref)
        assert len(out) == 14 and out.metrics()["accuracy"] == pytest.approx(value)
    compared = runner.invoke(app, ["compare", "results.csv", "--task", "ks", "--a", "tiny@20ms", "--b", "tiny@60ms"])
    assert compared.exit_code == 0, compared.output
    assert "paired bootstrap over the 14 test utterances" in compared.stdout and "verdict: " in compared.stdout
    assert "2 seeds" in compared.stdout


def test_cli_probe_data_from_the_workspace_and_clear_errors(synth_corpus, calibrated_model, in_tmp):
    base = ["probe", "--task", "sid", "--model", str(calibrated_model), "--quiet"]
    result = runner.invoke(app, base + ["--period", "40ms"])
    assert result.exit_code != 0 and "no dataset for task sid" in str(result.exception)
    (in_tmp / "ofactl.toml").write_text(f'results = "out.csv"\n[data]\nsid = "{synth_corpus / DATA["sid"]}"\n')
    result = runner.invoke(app, base + ["--lambda", "0.3", "--max-epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (read_results(in_tmp / "out.csv")["lambda"] == 0.3).all()
    result = runner.invoke(app, base + ["--period", "40ms", "--lambda", "0.3"])
    assert "exactly one of --period, --lambda and --learn-lambda" in str(result.exception)
    result = runner.invoke(app, base + ["--period", "40ms", "--rate-penalty", "1"])
    assert "need --learn-lambda" in str(result.exception)
    result = runner.invoke(app, ["probe", "--task", "st", "--period", "40ms", "--quiet"])
    assert "no dataset for task st" in str(result.exception)


# ----------------------------------------------------------------------------- average-pooling baseline


def test_average_pool_hits_the_period_and_averages_contiguous_runs():
    from ofactl.probe import average_pool

    x = torch.arange(10.0)[:, None].repeat(1, 2)
    assert torch.equal(average_pool(x, 20.0), x)
    out = average_pool(x, 40.0)
    assert out.shape == (5, 2) and torch.equal(out[:, 0], torch.tensor([0.5, 2.5, 4.5, 6.5, 8.5]))
    assert average_pool(x, 60.0).shape[0] == 3 and average_pool(x, 5000.0).shape == (1, 2)
    assert float(average_pool(x, 5000.0)[0, 0]) == pytest.approx(4.5)


def test_cli_probe_average_pooling_baseline(synth_corpus, calibrated_model, in_tmp):
    args = ["probe", "--task", "sid", "--model", str(calibrated_model), "--data", str(synth_corpus / DATA["sid"]), "--quiet",
            "--max-epochs", "2", "--pooling", "avg"]
    result = runner.invoke(app, args + ["--period", "80ms"])
    assert result.exit_code == 0, result.output
    df = read_results(in_tmp / "results.csv")
    assert (df["model"] == "tiny+avgpool").all() and df["lambda"].isna().all()
    assert 76 < df["measured_period_ms"].iloc[0] < 84 and (df["target_period_ms"] == 80.0).all()
    result = runner.invoke(app, args + ["--lambda", "0.5"])
    assert "needs --period" in str(result.exception)


def test_pr_without_phone_transcripts_names_them(synth_corpus, calibrated_model, tmp_path):
    """Issue 17 #15: `probe --task pr` on LibriSpeech without *.phones.txt said "check the dataset path"."""
    import shutil

    from ofactl.errors import OfactlError
    from ofactl.probe import run_probe

    libri = tmp_path / "LibriSpeech"
    shutil.copytree(synth_corpus / DATA["pr"], libri, ignore=shutil.ignore_patterns("*.phones.txt", "*.flac"))
    with pytest.raises(OfactlError) as err:
        run_probe("pr", libri, load_model(calibrated_model), period="40ms", features_dir=tmp_path / "f")
    assert err.value.message == (f"{libri}: split 'train-clean-100' has no phone transcripts (no "
                                 "<speaker>-<chapter>.phones.txt beside the .trans.txt files)")
    assert "check the dataset path" not in err.value.hint and "'<utt-id> <phone> <phone> ...'" in err.value.hint


# ----------------------------------------------------------------------------- SUPERB's weighted sum of layers


def test_weighted_layers_sums_with_softmax_weights_and_learns_them():
    from ofactl.tasks.weighted import WeightedLayers

    def identity(inputs):
        return torch.stack(inputs), torch.tensor([t.shape[0] for t in inputs])

    layers = torch.randn(3, 5, 4)  # (layers, frames, dim) as stored
    flat = layers.permute(1, 0, 2).reshape(5, 12)  # as Stored(layers=True) reads it
    up = WeightedLayers(identity, n_layers=3, dim=4)
    x, lengths = up([flat])
    assert torch.allclose(x[0], layers.mean(0), atol=1e-6) and lengths.tolist() == [5]  # equal weights at start
    with torch.no_grad():
        up.weights.copy_(torch.tensor([0.0, 0.0, 50.0]))
    assert torch.allclose(up([flat])[0][0], layers[2], atol=1e-5)
    up.weights.grad = None
    up([flat])[0].sum().backward()
    assert up.weights.grad is not None and up.weights.grad.abs().sum() > 0


def test_probe_with_the_weighted_sum_of_layers(synth_corpus, calibrated_model, tmp_path):
    from ofactl.features import read_attrs
    from ofactl.probe import run_probe

    rows = run_probe("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), period="40ms", lr=1e-2, layer="weighted",
                     features_dir=tmp_path, max_epochs=3)
    test = [r for r in rows if r.split == "test"][0]
    assert test.status == "ok" and test.layer == "weighted" and 0 <= test.value <= 1
    weights = [float(w) for w in test.note.split("layer weights ")[1].split(";")[0].split("/")]
    assert len(weights) == 3 and abs(sum(weights) - 1) < 0.02 and weights != [0.33, 0.33, 0.33]  # learned
    files = sorted(tmp_path.rglob("*.h5"))
    assert len(files) == 3 and all("-layerall" in f.name for f in files)
    assert read_attrs(files[0])["layer"] == "all"
    with pytest.raises(Exception, match="needs one layer, not --layer weighted"):
        from ofactl.adaptive import run_adaptive

        run_adaptive("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), layer="weighted", features_dir=tmp_path)
