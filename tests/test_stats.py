"""Bootstrap intervals and paired comparisons (ofactl.stats) and per-utterance outcome files (ofactl.outcomes).

Checked against closed forms (the Wilson interval of a proportion), against
explicit resampling (replicating utterances and recomputing the task's metric
with the plain functions), and by coverage on simulated experiments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.errors import OfactlError
from ofactl.outcomes import Outcomes, load_outcomes, save_outcomes
from ofactl.stats import interval, metric_values, paired_difference, resample_counts


def accuracy_run(correct, ids=None, task="ks") -> Outcomes:
    correct = np.asarray(correct, dtype=float)
    ids = ids if ids is not None else [f"u{i:05d}" for i in range(len(correct))]
    return Outcomes(task, ids, {"correct": correct, "n": np.ones(len(correct))})


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_resample_counts_rows_sum_to_n_and_are_deterministic():
    counts = resample_counts(37, 200, seed=3)
    assert counts.shape == (200, 37) and (counts.sum(axis=1) == 37).all() and counts.min() >= 0
    assert np.array_equal(counts, resample_counts(37, 200, seed=3))
    assert not np.array_equal(counts, resample_counts(37, 200, seed=4))
    # each utterance is drawn once per replicate on average
    assert abs(counts.mean() - 1.0) < 1e-12 and 0.9 < counts.var() < 1.1


@pytest.mark.parametrize("p", [0.5, 0.8, 0.95])
def test_proportion_interval_matches_the_wilson_width_at_n_500(p):
    n = 500
    k = round(p * n)
    run = accuracy_run([1] * k + [0] * (n - k))
    ci = interval(run, "accuracy")
    lo, hi = wilson(k, n)
    assert ci.value == pytest.approx(k / n)
    assert ci.low <= k / n <= ci.high
    assert abs((ci.high - ci.low) / (hi - lo) - 1) < 0.2, (ci, (lo, hi))
    assert ci.n == n and ci.n_seeds == 1 and ci.n_resamples == 1000


def test_interval_covers_the_true_accuracy_in_about_95_percent_of_experiments():
    rng = np.random.default_rng(123)
    true_p, n, hits = 0.72, 300, 0
    for experiment in range(200):
        run = accuracy_run(rng.random(n) < true_p)
        ci = interval(run, "accuracy", seed=experiment)
        hits += ci.low <= true_p <= ci.high
    assert 0.90 <= hits / 200 <= 0.985, hits


def test_interval_of_a_corpus_level_error_rate_covers_its_true_value():
    """PER-like: errors / reference length with utterances of varied length (a ratio, not a mean of ratios)."""
    rng = np.random.default_rng(7)
    rate, hits = 0.3, 0
    for experiment in range(200):
        ref = rng.integers(5, 60, size=250).astype(float)
        errors = rng.binomial(ref.astype(int), rate).astype(float)
        run = Outcomes("pr", [f"u{i}" for i in range(250)], {"errors": errors, "ref": ref})
        ci = interval(run, "per", seed=experiment)
        hits += ci.low <= rate <= ci.high
    assert 0.90 <= hits / 200 <= 0.985, hits


def test_weighted_totals_equal_explicit_resampling_for_error_rates_and_slot_filling():
    rng = np.random.default_rng(0)
    n = 40
    pr = Outcomes("pr", [f"u{i}" for i in range(n)], {"errors": rng.integers(0, 9, n), "ref": rng.integers(1, 20, n)})
    sf = Outcomes("sf", [f"u{i}" for i in range(n)], {"f1_sum": rng.random(n), "n": np.ones(n),
                                                      "value_errors": rng.integers(0, 5, n),
                                                      "value_chars": rng.integers(0, 12, n)})
    counts = resample_counts(n, 5, seed=1)
    for row in counts:
        picked = np.repeat(np.arange(n), row)
        expected = pr.stats["errors"][picked].sum() / pr.stats["ref"][picked].sum()
        assert metric_values(pr, "per", row[None])[0] == pytest.approx(expected)
        f1 = sf.stats["f1_sum"][picked].mean()
        cer = sf.stats["value_errors"][picked].sum() / sf.stats["value_chars"][picked].sum()
        assert metric_values(sf, "slot_type_f1", row[None])[0] == pytest.approx(f1)
        assert metric_values(sf, "slot_value_cer", row[None])[0] == pytest.approx(cer)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 7), st.integers(3, 12), st.integers(0, 2**31 - 1))
def test_qbe_query_resampling_equals_mtwv_on_the_replicated_queries(n_queries, n_docs, seed):
    """Resampling per-query TWV terms and taking the best threshold == twv.mtwv on the resampled score rows."""
    from ofactl.twv import candidate_thresholds, mtwv, query_terms, twv

    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=(n_queries, n_docs)), 1)  # ties on purpose
    truth = rng.random((n_queries, n_docs)) < 0.3
    truth[0, 0] = True
    curve, scored = query_terms(scores, truth, candidate_thresholds(scores, truth))
    at, _ = query_terms(scores, truth, [0.05])
    run = Outcomes("qbe", [f"q{i}" for i in range(int(scored.sum()))],
                   {"twv_curve": curve, "twv_at_dev": at[:, 0], "n": np.ones(int(scored.sum()))})
    assert metric_values(run, "mtwv")[0] == pytest.approx(mtwv(scores, truth)[0], abs=1e-12)
    assert metric_values(run, "atwv")[0] == pytest.approx(twv(scores, truth, 0.05), abs=1e-12)
    kept_s, kept_t = scores[scored], truth[scored]
    for row in resample_counts(len(run), 4, seed=seed % 1000):
        picked = np.repeat(np.arange(len(run)), row)
        assert metric_values(run, "mtwv", row[None])[0] == pytest.approx(mtwv(kept_s[picked], kept_t[picked])[0],
                                                                         abs=1e-12)


def test_identical_runs_differ_by_exactly_zero():
    rng = np.random.default_rng(1)
    run = accuracy_run(rng.random(200) < 0.6)
    d = paired_difference(run, run, "accuracy")
    assert d.diff == 0 and d.low == 0 and d.high == 0 and d.better == ""
    assert d.verdict() == "no difference at 95%"


def test_a_clearly_better_run_is_called_better_and_direction_follows_the_metric():
    rng = np.random.default_rng(2)
    truth = rng.random(500)
    good, poor = accuracy_run(truth < 0.9), accuracy_run(truth < 0.6)  # good is right wherever poor is
    d = paired_difference(good, poor, "accuracy")
    assert d.better == "a" and d.low > 0 and d.verdict("OFA", "fixed") == "OFA better"
    assert paired_difference(poor, good, "accuracy").verdict() == "B better"
    ids = [f"u{i}" for i in range(300)]
    ref = np.full(300, 20.0)
    low_err = Outcomes("pr", ids, {"errors": rng.binomial(20, 0.1, 300).astype(float), "ref": ref})
    high_err = Outcomes("pr", ids, {"errors": rng.binomial(20, 0.4, 300).astype(float), "ref": ref})
    d = paired_difference(low_err, high_err, "per")  # lower PER is better: A better with a negative difference
    assert d.diff < 0 and d.high < 0 and d.better == "a"


def test_paired_comparison_of_equal_systems_calls_a_difference_about_5_percent_of_the_time():
    rng = np.random.default_rng(11)
    wrong = 0
    for experiment in range(200):
        a, b = accuracy_run(rng.random(300) < 0.75), accuracy_run(rng.random(300) < 0.75)
        wrong += paired_difference(a, b, "accuracy", seed=experiment).better != ""
    assert wrong / 200 <= 0.10, wrong


def test_pairing_narrows_the_interval_when_runs_are_correlated():
    rng = np.random.default_rng(5)
    difficulty = rng.random(400)
    a = accuracy_run(difficulty < 0.70)
    b = accuracy_run(difficulty < 0.66)  # the same hard utterances, 4 points apart
    d = paired_difference(a, b, "accuracy")
    ia, ib = interval(a, "accuracy"), interval(b, "accuracy")
    assert d.better == "a"  # not visible from the two intervals, which overlap
    assert ia.low < ib.high and (d.high - d.low) < 0.6 * (ia.high - ia.low)


def test_equivalence_margin():
    rng = np.random.default_rng(3)
    base = rng.random(600) < 0.8
    other = base.copy()
    other[:6] = ~other[:6]
    d = paired_difference(accuracy_run(base), accuracy_run(other), "accuracy", margin=0.05)
    assert d.equivalent is True and "equivalent within ±0.05" in d.verdict()
    assert paired_difference(accuracy_run(base), accuracy_run(other), "accuracy").equivalent is None


def test_seeds_pool_into_the_interval_of_their_mean():
    rng = np.random.default_rng(4)
    truth = rng.random(300)
    run = accuracy_run(truth < 0.7)
    one, same = interval(run, "accuracy"), interval([run, run], "accuracy")
    assert (same.value, same.low, same.high) == (one.value, one.low, one.high) and same.n_seeds == 2
    a, b = accuracy_run(truth < 0.6), accuracy_run(truth < 0.8)
    pooled = interval([a, b], "accuracy")
    assert pooled.value == pytest.approx(0.5 * (a.stats["correct"].mean() + b.stats["correct"].mean()))
    # the seeds disagree by 20 points: resampling them widens the interval beyond the test-set noise alone
    assert pooled.high - pooled.low > 1.5 * (one.high - one.low)


def test_only_shared_utterances_are_compared_and_bad_pairs_are_one_line_errors():
    a = accuracy_run([1, 1, 0, 1], ids=["a", "b", "c", "d"])
    b = accuracy_run([0, 0, 1], ids=["b", "c", "e"])
    d = paired_difference(a, b, "accuracy")
    assert d.n == 2 and d.a == 0.5 and d.b == 0.0
    with pytest.raises(OfactlError, match="share no test utterance"):
        paired_difference(a, accuracy_run([1], ids=["zzz"]), "accuracy")
    with pytest.raises(OfactlError, match="different tasks"):
        paired_difference(a, accuracy_run([1, 1], ids=["a", "b"], task="sid"), "accuracy")
    with pytest.raises(OfactlError, match="no metric 'per'"):
        interval(a, "per")


def test_outcomes_round_trip_atomically_and_refuse_other_files(tmp_path):
    rng = np.random.default_rng(0)
    run = Outcomes("qbe", ["q1", "q2", "q3"], {"twv_curve": rng.random((3, 5)), "twv_at_dev": rng.random(3),
                                               "n": np.ones(3)}, {"model": "m", "seed": 2})
    path = save_outcomes(tmp_path / "deep" / "o.npz", run)
    back = load_outcomes(path)
    assert back.task == "qbe" and back.ids == run.ids and back.meta == {"model": "m", "seed": 2}
    assert all(np.array_equal(back.stats[k], run.stats[k]) for k in run.stats)
    assert [p.name for p in path.parent.iterdir()] == ["o.npz"]  # no temporary file left
    assert back.select(["q3", "q1"]).ids == ["q3", "q1"]
    assert list(accuracy_run([1, 0]).to_frame().columns) == ["id", "correct", "n"]
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(OfactlError, match="not an ofactl outcomes file"):
        load_outcomes(tmp_path / "junk.npz")
    with pytest.raises(OfactlError, match="not found"):
        load_outcomes(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="unique"):
        Outcomes("ks", ["a", "a"], {"correct": [1, 0], "n": [1, 1]})
