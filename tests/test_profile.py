"""ofactl profile: MACs by component against hand counts, the period dependence, the paper's reductions, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ofactl import load_model
from ofactl.calibrate import build_calibration
from ofactl.checkpoint import save_model
from ofactl.cli import app, main
from ofactl.errors import OfactlError
from ofactl.model import OFAStudent, StudentConfig
from ofactl.profile import COMPONENTS, PAPER_REDUCTIONS, parse_periods, profile_model
from ofactl.results import read_results
from ofactl.workspace import MODEL_ENV_VAR

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    monkeypatch.delenv("OFACTL_DEBUG", raising=False)


@pytest.fixture(scope="module")
def tiny():
    return profile_model(preset="tiny", duration_s=2.0, periods="20ms,40ms,90ms,320ms,960ms", device="cpu",
                         throughput=False)


def conv_len(n: int, kernel: int, stride: int, pad: int = 0) -> int:
    return (n + 2 * pad - kernel) // stride + 1


def hand_count(config: StudentConfig, n_samples: int, n_out: int) -> dict[str, int]:
    """MACs of every component, from the layer shapes (what FlopCounterMode should find)."""
    c = config
    macs = {"cnn": 0}
    length, channels = n_samples, 1
    for out_channels, kernel, stride in c.conv_layers:
        length = conv_len(length, kernel, stride)
        macs["cnn"] += length * out_channels * channels * kernel
        channels = out_channels
    t, d, n = length, c.embed_dim, n_out
    macs["alpha"] = t * channels * channels * c.alpha_kernel + t * channels  # conv + Linear(C, 1)
    macs["cif"] = 2 * t * (channels + 1)
    pos_len = conv_len(n, c.pos_conv_kernel, 1, c.pos_conv_kernel // 2)  # one extra frame for an even kernel, cut after
    macs["projection"] = n * channels * d + pos_len * d * (d // c.pos_conv_groups) * c.pos_conv_kernel
    per_layer = 4 * n * d * d + 2 * n * d * c.ffn_dim + 2 * n * n * d  # q, k, v, out; FFN; QK^T and AV
    macs["layers"] = c.num_layers * per_layer
    heads = len(c.target_layers)
    macs["heads"] = n * d * c.head_inner_dim * heads + heads * n * c.head_inner_dim * c.target_dim
    macs["t"] = t
    return macs


def test_tiny_macs_equal_a_hand_count_from_the_layer_shapes(tiny) -> None:
    config = StudentConfig.preset("tiny")
    for row in tiny.rows:
        expected = hand_count(config, 32000, row.n_frames)
        assert row.n_frames_20ms == expected["t"] == 99
        for component in COMPONENTS:
            assert row.macs_per_s[component] * row.duration_s == pytest.approx(expected[component], rel=1e-12), component
        assert row.total == pytest.approx(sum(expected[c] for c in COMPONENTS if c != "heads") / 2.0)


def test_frame_counts_follow_the_period_and_the_transformer_share_shrinks(tiny) -> None:
    rows = tiny.rows
    assert [r.n_frames for r in rows] == [99, 50, 22, 6, 2]  # round(2 s / period), at most T
    assert [round(r.measured_period_ms, 1) for r in rows] == [20.2, 40.0, 90.9, 333.3, 1000.0]
    assert len({r.macs_per_s["cnn"] for r in rows}) == 1  # the CNN runs at 20 ms whatever lambda
    shares = [r.layers_share for r in rows]
    assert all(a > b for a, b in zip(shares, shares[1:])), shares
    totals = [r.total for r in rows]
    assert all(a > b for a, b in zip(totals, totals[1:])), totals
    lams = [r.lam for r in rows]
    assert lams[0] == 0.0 and all(a < b for a, b in zip(lams, lams[1:])) and lams[-1] < 2.0
    assert tiny.lam_source == "exact" and tiny.model == "tiny (random init)"


def test_distilhubert_reductions_are_near_the_paper() -> None:
    prof = profile_model(preset="distilhubert", duration_s=2.0, periods="20ms,90ms,960ms", device="cpu",
                         throughput=False)
    by_period = {r.target_period_ms: r.reduction for r in prof.reductions}
    # Measured here: 69.1% at 90 ms and 88.9% at 960 ms on a 2 s utterance (71.1% / 89.8% at 10 s);
    # the paper: 68.7% and 90.6%.
    assert set(by_period) == set(PAPER_REDUCTIONS)
    assert 0.64 < by_period[90.0] < 0.74
    assert 0.86 < by_period[960.0] < 0.93
    first = prof.rows[0]
    assert 0.6 < first.macs_per_s["cnn"] / first.total < 0.75  # "about two thirds of all MACs" (REFERENCE.md)
    assert first.macs_per_s["cnn"] == pytest.approx(2.45e9, rel=0.01)


def test_calibrated_model_reports_its_lambdas_and_refuses_periods_outside_the_range(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model_dir = save_model(tmp_path / "m", OFAStudent(StudentConfig.preset("tiny")))
    rng = np.random.default_rng(0)
    alphas = [torch.from_numpy(rng.uniform(0.1, 0.3, size=int(n))) for n in rng.integers(80, 160, size=40)]
    durations = [0.02 * len(a) + 0.005 for a in alphas]
    cal = build_calibration(durations, alphas, lam_max=1.0)
    cal.save(model_dir)
    prof = profile_model(load_model(model_dir), periods="20ms,40ms", duration_s=1.0, device="cpu", throughput=False)
    assert prof.lam_source == "calibration"
    assert [r.lam for r in prof.rows] == pytest.approx([cal.lam_for(20.0), cal.lam_for(40.0)])
    assert [r.n_frames for r in prof.rows] == [49, 25]  # the count is still exact on the profiling audio
    assert [r.target_period_ms for r in prof.reductions] == [90.0]
    assert any("960ms is outside the calibrated range" in n for n in prof.notes)
    with pytest.raises(OfactlError, match="outside the calibrated range"):
        profile_model(load_model(model_dir), periods="20ms,500ms", duration_s=1.0, device="cpu", throughput=False)


def test_parse_periods() -> None:
    assert [p.ms for p in parse_periods("90ms, 20ms,0.96s,90ms")] == [20.0, 90.0, 960.0]
    with pytest.raises(OfactlError, match="did you mean '90ms'"):
        parse_periods("20ms,90")
    with pytest.raises(OfactlError, match="below 20ms"):
        parse_periods("10ms")


def test_cli_tiny_prints_the_table_and_appends_rows(tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    args = ["profile", "--preset", "tiny", "--seconds", "1", "--periods", "20ms,90ms", "--device", "cpu",
            "--min-time", "0", "--results", str(results), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("Compute profile of tiny (random init)", "CNN", "alpha", "CIF", "proj+pos", "layers", "(heads)",
                     "thru b1", "thru b8", "90.9ms", "(paper: 68.7%)", "(paper: 90.6%)", f"appended 6 rows to {results}"):
        assert expected in out, expected
    df = read_results(results)
    assert sorted(df["metric"]) == ["macs_per_s"] * 2 + ["throughput_b1"] * 2 + ["throughput_b8"] * 2
    assert set(df["task"]) == {"profile"} and set(df["model"]) == {"tiny (random init)"}
    macs = df[df["metric"] == "macs_per_s"].sort_values("target_period_ms")
    assert (macs["value"] == macs["macs_per_second"]).all() and macs["value"].is_monotonic_decreasing
    assert not macs["higher_is_better"].any() and df.loc[df["metric"] != "macs_per_s", "higher_is_better"].all()
    assert (df["value"] > 0).all() and "cnn=" in macs["note"].iloc[0]


def test_cli_distilhubert_json() -> None:
    result = runner.invoke(app, ["profile", "--preset", "distilhubert", "--seconds", "2", "--periods", "20ms,90ms",
                                 "--device", "cpu", "--no-throughput", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["n_frames"] for r in data["rows"]] == [99, 22]
    assert data["rows"][0]["throughput"] == {}
    assert [(r["target_period_ms"], r["paper"]) for r in data["reductions"]] == [(90.0, 0.687), (960.0, 0.906)]
    assert 0.64 < data["reductions"][0]["reduction"] < data["reductions"][1]["reduction"] < 0.93
    assert math.isclose(data["rows"][0]["total_macs_per_s"], sum(v for k, v in data["rows"][0]["macs_per_s"].items() if k != "heads"))


def test_cli_distilhubert_prints_the_table() -> None:
    result = runner.invoke(app, ["profile", "--preset", "distilhubert", "--seconds", "2", "--periods", "20ms,960ms",
                                 "--device", "cpu", "--no-throughput", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Compute profile of distilhubert (random init)" in result.stdout
    assert "2.45" in result.stdout  # GMAC/s of the CNN
    assert "at 90ms (paper: 68.7%)" in result.stdout and "at 960ms (paper: 90.6%)" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["--periods", "90"], "did you mean '90ms'"),
    (["--periods", "10ms"], "below 20ms"),
    (["--preset", "huge"], "unknown student preset 'huge'"),
    (["--model", "/nonexistent"], "give a model or a preset, not both"),
])
def test_cli_bad_input_is_one_line(argv, message, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["profile", "--device", "cpu", "--no-throughput", "--seconds", "1", "--preset", "tiny", *argv])
    _, err = capsys.readouterr()
    assert info.value.code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], err
    assert len(lines) <= 2 and "Traceback" not in err


def test_inference_macs_per_second_shrinks_with_the_period_and_matches_count_macs():
    import torch

    from ofactl.model import OFAStudent, StudentConfig
    from ofactl.macs import count_macs, inference_macs_per_second

    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset("tiny")).eval()
    at_20 = inference_macs_per_second(student, 20.0, seconds=2.0)
    at_90 = inference_macs_per_second(student, 90.0, seconds=2.0)
    at_960 = inference_macs_per_second(student, 960.0, seconds=2.0)
    assert at_20 > at_90 > at_960 > 0
    front, backs, _, _ = count_macs(student, torch.randn(1, 32000) * 0.1, [22])
    want = (front["cnn"] + front["alpha"] + backs[0]["cif"] + backs[0]["projection"] + backs[0]["layers"]) / 2.0
    assert at_90 == pytest.approx(want, rel=1e-9)
    assert at_960 > (front["cnn"] + front["alpha"]) / 2.0  # the CNN floor is never removed
