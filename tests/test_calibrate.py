"""Calibration: frame counts vs CIF, the 2% interpolation bound, the inverse, persistence, exact lambdas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rich.console import Console

from ofactl.calibrate import (
    LAM_END,
    AlphaStats,
    Calibration,
    alpha_stats,
    build_calibration,
    format_period,
    frame_counts,
)
from ofactl.cli.calibration_table import render_table
from ofactl.exact_rate import solve_exact_lambda, solve_exact_lambdas
from ofactl.period import exact_target_frames
from ofactl.cif import FIRE_EPS, cif, modify_alpha
from ofactl.errors import OfactlError
from ofactl.period import FramePeriod


def cif_lengths(alphas: list[torch.Tensor], lam) -> torch.Tensor:
    """Frames from the real thing: pad, modify_alpha, cif."""
    lengths = torch.tensor([len(a) for a in alphas])
    padded = torch.zeros(len(alphas), max(1, int(lengths.max())), dtype=alphas[0].dtype)
    for b, a in enumerate(alphas):
        padded[b, : len(a)] = a
    x = torch.zeros(*padded.shape, 1)
    return cif(x, modify_alpha(padded, lam, lengths), lengths).lengths


def random_alphas(seed: int, n: int = 300, t_max: int = 900, dtype=torch.float32) -> tuple[list[float], list[torch.Tensor]]:
    """Sigmoid-like weights with per-utterance means from 0.05 to 0.6 (periods ~30..400 ms at lam 1)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, t_max, (n,), generator=g)
    alphas = []
    for t in lengths.tolist():
        mean = float(torch.empty(1).uniform_(0.05, 0.6, generator=g))
        logits = torch.randn(t, generator=g, dtype=torch.float64) * 1.5 + math.log(mean / (1 - mean))
        alphas.append(torch.sigmoid(logits).to(dtype))
    durations = [(t * 320 + 80) / 16000 for t in lengths.tolist()]
    return durations, alphas


# --------------------------------------------------------------------------- frame counts

alpha_lists = st.lists(
    st.lists(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.5, 1e-3])), min_size=0, max_size=40),
    min_size=1, max_size=6,
)
lam_values = st.one_of(st.floats(0.0, LAM_END), st.sampled_from([0.0, 0.5, 1.0, 1.5, 1.9, LAM_END]))


@settings(max_examples=150, deadline=None)
@given(alpha_lists, st.lists(lam_values, min_size=1, max_size=5))
def test_frame_counts_equal_cif_lengths(values, lams):
    alphas = [torch.tensor(v, dtype=torch.float64) for v in values]
    # A sum landing exactly on an integer minus FIRE_EPS is a tie that the two summation
    # orders may break differently in the last ulp (documented in frame_counts); skip ties.
    for a in alphas:
        for lam in lams:
            total = max(0.0, 1 - lam) * len(a) + (max(0.0, lam) - 2 * max(0.0, lam - 1)) * float(a.sum())
            frac = (total + FIRE_EPS) % 1.0
            assume(min(frac, 1.0 - frac) > 1e-9)
    counts = frame_counts(alphas, torch.tensor(lams, dtype=torch.float64))
    assert counts.shape == (len(alphas), len(lams)) and counts.dtype == torch.int64
    for g, lam in enumerate(lams):
        assert counts[:, g].tolist() == cif_lengths(alphas, lam).tolist(), lam


def test_frame_counts_float32_realistic():
    _, alphas = random_alphas(1, n=100, t_max=3000)
    lams = torch.tensor([0.0, 0.3, 0.77, 1.0, 1.2, 1.6, 1.95, 1.999, LAM_END])
    counts = frame_counts(alphas, lams)
    for g, lam in enumerate(lams.tolist()):
        assert counts[:, g].tolist() == cif_lengths(alphas, lam).tolist()
    stats = alpha_stats(alphas)
    assert torch.equal(frame_counts(stats, lams), counts)
    assert torch.equal(counts[:, 0], stats.n_frames)  # lambda 0 keeps every frame
    assert bool((counts[:, -1] == 1).all())  # lambda -> 2: one frame per utterance
    assert bool((counts[:, 1:] <= counts[:, :-1]).all())  # non-increasing in lambda


def test_frame_counts_edge_cases():
    alphas = [torch.ones(7), torch.zeros(5), torch.full((1,), 0.01), torch.zeros(0)]
    counts = frame_counts(alphas, [0.0, 0.5, 1.0, 1.5])
    assert counts.tolist() == [[7, 7, 7, 3], [5, 2, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    for g, lam in enumerate([0.0, 0.5, 1.0, 1.5]):
        assert counts[:, g].tolist() == cif_lengths(alphas, lam).tolist()
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        frame_counts(alphas, [2.0])
    with pytest.raises(ValueError, match=r"shape \(frame,\)"):
        frame_counts([torch.ones(2, 3)], [0.0])
    for bad in (1.5, -0.1, float("nan")):  # (NaN used to pass the range check)
        with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
            frame_counts([torch.tensor([0.5, bad])], [0.0])


def test_alpha_stats_of_a_padded_batch():
    _, alphas = random_alphas(2, n=5, t_max=50)
    lengths = torch.tensor([len(a) for a in alphas])
    padded = torch.full((5, int(lengths.max())), 0.9)  # padding must be ignored
    for b, a in enumerate(alphas):
        padded[b, : len(a)] = a
    batch = alpha_stats(padded, lengths)
    one_by_one = alpha_stats(alphas)
    assert torch.equal(batch.n_frames, one_by_one.n_frames)
    assert torch.allclose(batch.sums, one_by_one.sums, rtol=1e-12)
    both = AlphaStats.cat([batch, one_by_one])
    assert both.sums.shape == (10,)


# --------------------------------------------------------------------------- building


def true_period(durations, alphas, lams) -> np.ndarray:
    frames = frame_counts(alphas, torch.as_tensor(lams, dtype=torch.float64)).sum(dim=0).numpy()
    return 1000.0 * math.fsum(durations) / frames


def interp_period(cal: Calibration, lams: np.ndarray) -> np.ndarray:
    return np.array([cal.period_for(lam).ms for lam in lams])


@pytest.mark.parametrize("seed, lam_max", [(0, 2.0), (1, 2.0), (2, 1.5), (3, 1.0)])
def test_interpolation_error_below_two_percent_everywhere(seed, lam_max):
    durations, alphas = random_alphas(seed)
    cal = build_calibration(durations, alphas, lam_max=lam_max)
    assert cal.max_interp_error < 0.02
    lam = np.asarray(cal.lambdas)
    assert lam[0] == 0.0 and lam[-1] == min(lam_max, LAM_END) and lam[-1] < 2.0
    mids = (lam[:-1] + lam[1:]) / 2
    rng = np.random.default_rng(seed)
    end = min(lam_max, 2.0 - 1e-12)
    probes = np.concatenate([mids, rng.uniform(0, end, 3000), 2.0 - np.geomspace(1e-6, 0.3, 500)])
    probes = probes[probes < end]
    err = np.abs(interp_period(cal, probes) / true_period(durations, alphas, probes) - 1)
    assert err.max() < 0.02, (probes[err.argmax()], err.max())
    # The table's own points are exact, and the endpoints are 20 ms-ish and one frame per utterance.
    assert np.allclose(cal.period_ms, true_period(durations, alphas, lam), rtol=1e-12)
    if lam_max == 2.0:
        assert cal.max_period_ms == pytest.approx(1000 * math.fsum(durations) / len(durations))


def test_percentiles_and_totals():
    durations, alphas = random_alphas(4, n=50)
    cal = build_calibration(durations, alphas, data="/data/LibriSpeech", split="dev-clean", model_sha256="ab" * 32)
    counts = frame_counts(alphas, torch.tensor(cal.lambdas))
    assert cal.total_frames == counts.sum(dim=0).tolist()
    t = torch.tensor([len(a) for a in alphas], dtype=torch.float64)
    i = cal.lambdas.index(1.0)
    per_utt = (20.0 * t / counts[:, i]).numpy()
    assert cal.p50_ms[i] == pytest.approx(np.percentile(per_utt, 50))
    assert all(a <= b <= c for a, b, c in zip(cal.p10_ms, cal.p50_ms, cal.p90_ms))
    assert cal.p50_ms[0] == 20.0  # lambda 0: every utterance at exactly 20 ms
    assert cal.n_utterances == 50 and cal.total_duration_s == pytest.approx(sum(durations))


def test_build_refuses_empty_data():
    with pytest.raises(OfactlError, match="nothing to calibrate"):
        build_calibration([0.01], [torch.zeros(0)])
    with pytest.raises(OfactlError, match="alpha is zero everywhere"):
        build_calibration([1.0], [torch.zeros(50)])
    with pytest.raises(ValueError, match="2 durations for 1 alphas"):
        build_calibration([1.0, 2.0], [torch.rand(50)])


# --------------------------------------------------------------------------- the inverse


def table(periods, lambdas=None, **kw) -> Calibration:
    lambdas = lambdas or np.linspace(0, 1.99, len(periods)).tolist()
    n = len(periods)
    return Calibration(lambdas=lambdas, period_ms=periods, p10_ms=periods, p50_ms=periods, p90_ms=[None] * n,
                       total_frames=[1] * n, n_utterances=1, total_duration_s=1.0, **kw)


@pytest.fixture(scope="module")
def cal() -> Calibration:
    durations, alphas = random_alphas(5)
    return build_calibration(durations, alphas, model_sha256="ab" * 32, data="/data", split="dev")


def test_lam_for_is_a_monotone_inverse(cal):
    periods = np.geomspace(cal.min_period_ms, cal.max_period_ms, 400)
    lams = [cal.lam_for(p) for p in periods]
    assert all(b >= a for a, b in zip(lams, lams[1:]))
    assert lams[0] == 0.0 and lams[-1] <= cal.lambdas[-1]
    assert cal.period_for(lams[-1]).ms == pytest.approx(cal.max_period_ms, rel=1e-12)
    for p, lam in zip(periods, lams):
        assert cal.period_for(lam).ms == pytest.approx(p, rel=1e-9)
    assert cal.lam_for(FramePeriod.parse("0.09s")) == cal.lam_for(90.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(20.0, 2000.0), min_size=2, max_size=12), st.data())
def test_lam_for_handles_flat_stretches(raw, data):
    periods = sorted(raw)
    cal = table(periods)
    p = data.draw(st.floats(periods[0], periods[-1]))
    lam = cal.lam_for(p)
    assert cal.period_for(lam).ms == pytest.approx(p, rel=1e-9)
    # the smallest lambda reaching p: no grid point left of lam already reaches it
    assert all(math.log(per) < math.log(p) for lam_i, per in zip(cal.lambdas, periods) if lam_i < lam)


def test_flat_stretch_gives_smallest_lambda():
    cal = table([20.0, 30.0, 30.0, 30.0, 40.0], lambdas=[0.0, 0.5, 1.0, 1.5, 1.9])
    assert cal.lam_for(30.0) == 0.5
    assert 1.5 < cal.lam_for(35.0) < 1.9


def test_range_errors_name_the_range():
    cal = table([20.3, 90.0, 1240.0])
    with pytest.raises(OfactlError, match="5000ms is outside the calibrated range 20.3ms–1.24s of this model"):
        cal.lam_for(5000.0)
    with pytest.raises(OfactlError, match="19.9ms is outside the calibrated range 20.3ms–1.24s"):
        cal.lam_for(19.9)
    assert cal.lam_for(20.0) == 0.0  # within the table's 2% accuracy of its first point
    assert cal.lam_for(1250.0) == cal.lambdas[-1]
    with pytest.raises(OfactlError, match="outside the calibrated range"):
        cal.lam_for(20.0, tolerance=0.0)
    with pytest.raises(OfactlError, match="frame period must be positive"):
        cal.lam_for(-3.0)
    short = table([20.0, 90.0, 160.0], lam_max=1.5, lambdas=[0.0, 1.0, 1.5])
    with pytest.raises(OfactlError, match="calibrated up to lambda 1.5"):
        short.lam_for(500.0)
    with pytest.raises(OfactlError, match="lambda 1.7 is outside the calibrated range 0–1.5"):
        short.period_for(1.7)


def test_format_period():
    assert [format_period(v) for v in (20.0, 20.26, 90.0, 960.4, 999.7, 1240.0, 12345.0)] == [
        "20ms", "20.3ms", "90ms", "960ms", "1s", "1.24s", "12.3s"]


# --------------------------------------------------------------------------- persistence


def test_json_round_trip(tmp_path, cal):
    path = cal.save(tmp_path)
    assert path == tmp_path / "calibration.json"
    data = json.loads(path.read_text())  # strict JSON (no NaN)
    assert data["lambda_range"] == [0.0, cal.lambdas[-1]]
    loaded = Calibration.load(tmp_path)
    assert loaded == cal
    assert loaded.lam_for(90.0) == cal.lam_for(90.0)
    assert Calibration.load(tmp_path / "model.pt") == cal  # the checkpoint path works too
    from ofactl.checkpoint import _describe_calibration  # what `ofactl info` shows

    status = _describe_calibration(path)["status"]
    assert status.startswith("calibrated") and "period_range_ms" in status


def test_load_errors(tmp_path):
    with pytest.raises(OfactlError, match="not calibrated"):
        Calibration.load(tmp_path)
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(OfactlError, match="unreadable"):
        Calibration.load(tmp_path)
    bad = table([20.0, 90.0]).to_dict()
    bad["period_ms"] = [90.0, 20.0]
    (tmp_path / "calibration.json").write_text(json.dumps(bad))
    with pytest.raises(OfactlError, match="non-decreasing"):
        Calibration.load(tmp_path)
    with pytest.raises(OfactlError, match="does not exist"):
        table([20.0, 90.0]).save(tmp_path / "missing")


def test_sha_check(cal):
    cal.check("ab" * 32)
    cal.check(None)
    with pytest.raises(OfactlError, match="calibration was made for other weights.*run ofactl calibrate again"):
        cal.check("cd" * 32)


def test_render_table(cal):
    console = Console(record=True, width=120)
    console.print(render_table(cal))
    text = console.export_text()
    assert "lambda" in text and "p50" in text and "/data dev" in text
    assert "20ms" in text or "20." in text
    assert render_table(cal).row_count < 20
    assert render_table(cal, all_rows=True).row_count == len(cal.lambdas)


# --------------------------------------------------------------------------- exact lambda


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0.0, 1.0, width=32), st.sampled_from([0.0, 1.0, 0.5])), min_size=1, max_size=300),
    st.integers(-2, 320),
)
def test_exact_lambda_hits_the_target(values, target):
    alpha = torch.tensor(values, dtype=torch.float32)
    lam = solve_exact_lambda(alpha, target)
    assert 0.0 <= lam < 2.0
    want = min(max(target, 1), len(values))
    got = cif(torch.zeros(1, len(values), 1), modify_alpha(alpha[None], lam)).lengths
    assert int(got) == want


def test_exact_lambda_special_cases():
    ones = torch.ones(50)
    assert solve_exact_lambda(ones, 50) == 0.0  # target == T
    assert solve_exact_lambda(torch.rand(50), 80) == 0.0  # clipped to T
    for alpha in (ones, torch.zeros(50), torch.full((50,), 1e-4), torch.rand(50)):
        for k in (1, 2, 25, 49):
            lam = solve_exact_lambda(alpha, k)
            assert int(cif(torch.zeros(1, 50, 1), modify_alpha(alpha[None], lam)).lengths) == k
    lam = solve_exact_lambda(ones, 10)  # S == T: only the lam >= 1 branch reaches 10
    assert 1.0 <= lam < 2.0
    with pytest.raises(OfactlError, match="no output frame"):
        solve_exact_lambda(torch.zeros(0), 1)


def test_exact_lambdas_for_a_long_padded_batch():
    _, alphas = random_alphas(6, n=16, t_max=4000)
    lengths = torch.tensor([len(a) for a in alphas])
    padded = torch.zeros(16, int(lengths.max()))
    for b, a in enumerate(alphas):
        padded[b, : len(a)] = a
    durations = (lengths * 320 + 80) / 16000
    for period_ms in (20.0, 47.0, 333.0, 30000.0):
        targets = torch.tensor([exact_target_frames(float(d), period_ms, int(t)) for d, t in zip(durations, lengths)])
        lam = solve_exact_lambdas(padded, lengths, targets)
        got = cif(torch.zeros(*padded.shape, 1), modify_alpha(padded, lam, lengths), lengths).lengths
        assert torch.equal(got, targets), period_ms
        # the sum lands mid-interval, far from the floor boundary
        sums = modify_alpha(padded, lam, lengths).double().sum(dim=1)
        frac = sums - targets + FIRE_EPS
        assert bool(((frac > 0.4) | (targets == lengths)).all())


def test_exact_target_frames():
    assert exact_target_frames(1.0, 90.0, 49) == 11  # 11.11
    assert exact_target_frames(0.045, 90.0, 2) == 1  # 0.5 rounds half up
    assert exact_target_frames(0.01, 90.0, 0) == 0
    assert exact_target_frames(1.0, 5.0, 49) == 49  # clipped to T
    assert exact_target_frames(1.0, 1e6, 49) == 1  # at least one frame
