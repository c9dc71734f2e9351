"""Query by example (qbe): subsequence DTW against a plain double loop, MTWV against brute force and hand cases,
the synthetic QUESST 2014 tree, and `ofactl probe/sweep --task qbe` on it."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ofactl import load_model
from ofactl.cli import app
from ofactl.dtw import search, subsequence_dtw
from ofactl.errors import OfactlError
from ofactl.results import read_results
from ofactl.twv import BETA, mtwv, twv
from ofactl.workspace import MODEL_ENV_VAR
from probe_fixtures import DATA

runner = CliRunner()


# ----------------------------------------------------------------------------- subsequence DTW


def loop_dtw(d: np.ndarray) -> float:
    """Open-begin, open-end asymmetric DTW written as the textbook double loop (no vectorisation)."""
    n, m = d.shape
    g = [[math.inf] * m for _ in range(n)]
    for j in range(m):
        g[0][j] = d[0][j]
    for i in range(1, n):
        for j in range(m):
            best = g[i - 1][j]
            if j >= 1:
                best = min(best, g[i - 1][j - 1])
            if j >= 2:
                best = min(best, g[i - 1][j - 2])
            g[i][j] = d[i][j] + best
    return min(g[n - 1]) / n


def cosine_distances(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return 1.0 - qn @ xn.T


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 9), m=st.integers(1, 14), seed=st.integers(0, 2**31))
def test_subsequence_dtw_matches_the_double_loop(n, m, seed):
    d = np.random.default_rng(seed).uniform(0, 2, size=(n, m))
    assert float(subsequence_dtw(torch.from_numpy(d))) == pytest.approx(loop_dtw(d), abs=1e-9)


def test_search_matches_the_double_loop_on_random_features():
    rng = np.random.default_rng(0)
    queries = [rng.standard_normal((n, 7)) for n in (1, 2, 5, 9)]
    docs = [rng.standard_normal((m, 7)) for m in (1, 3, 4, 12, 30)]
    got = search([torch.from_numpy(q) for q in queries], [torch.from_numpy(x) for x in docs])
    want = np.array([[loop_dtw(cosine_distances(q, x)) for x in docs] for q in queries])
    assert got.shape == (4, 5)
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    # a 1-frame document: every query frame sits on it
    assert got[3, 0] == pytest.approx(cosine_distances(queries[3], docs[0]).mean(), abs=1e-6)


def test_search_finds_a_planted_query_and_no_path_crosses_documents():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((6, 16))
    noise = [rng.standard_normal((m, 16)) for m in (20, 20, 20)]
    planted = noise[1].copy()
    planted[7:13] = q  # an exact copy inside document 1
    costs = search([torch.from_numpy(q)], [torch.from_numpy(x) for x in (noise[0], planted, noise[2])])[0]
    assert costs[1] == pytest.approx(0.0, abs=1e-6) and costs[0] > 0.3 and costs[2] > 0.3
    # split the copy over the end of one document and the start of the next: no match across the gap
    a, b = noise[0].copy(), noise[2].copy()
    a[-3:], b[:3] = q[:3], q[3:]
    split = search([torch.from_numpy(q)], [torch.from_numpy(a), torch.from_numpy(b)])[0]
    assert split.min() > 0.2
    # time-stretched copy (each frame twice): still found, the path uses 0-steps
    stretched = noise[2].copy()
    stretched[2:14] = np.repeat(q, 2, axis=0)
    assert search([torch.from_numpy(q)], [torch.from_numpy(stretched)])[0, 0] < 0.1


def test_search_refuses_empty_inputs():
    with pytest.raises(ValueError, match="query 0 has no frames"):
        search([torch.zeros(0, 4)], [torch.ones(3, 4)])
    with pytest.raises(ValueError, match="document 1 has no frames"):
        search([torch.ones(2, 4)], [torch.ones(3, 4), torch.zeros(0, 4)])


# ----------------------------------------------------------------------------- TWV / MTWV


def brute_twv(scores, truth, theta, beta=BETA) -> float:
    """TWV(theta) = 1 - mean over queries with a target of (P_miss + beta * P_fa), trial by trial."""
    total, n = 0.0, 0
    for s_row, t_row in zip(scores, truth):
        n_target = sum(bool(t) for t in t_row)
        if n_target == 0:
            continue
        n_non = len(t_row) - n_target
        hits = sum(1 for s, t in zip(s_row, t_row) if t and s >= theta)
        fas = sum(1 for s, t in zip(s_row, t_row) if not t and s >= theta)
        p_miss = 1 - hits / n_target
        p_fa = fas / n_non if n_non else 0.0
        total += p_miss + beta * p_fa
        n += 1
    return 1 - total / n


def test_quesst_2014_constants():
    from ofactl import twv as module

    assert (module.P_TARGET, module.C_MISS, module.C_FA) == (0.0008, 100.0, 1.0)
    assert BETA == pytest.approx(12.49)
    # the effective prior score-TWV-Cnxe.sh hands to the scoring jar (bc, scale=7, truncates)
    prior = module.C_MISS * module.P_TARGET / (module.C_MISS * module.P_TARGET + module.C_FA * (1 - module.P_TARGET))
    assert math.floor(prior * 1e7) / 1e7 == 0.0741289


@settings(max_examples=60, deadline=None)
@given(q=st.integers(1, 5), d=st.integers(1, 8), seed=st.integers(0, 2**31), beta=st.sampled_from([BETA, 1.0, 999.9]),
       levels=st.integers(2, 6))
def test_mtwv_is_the_brute_force_maximum(q, d, seed, beta, levels):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(q, d)).astype(float)  # few levels: many ties
    truth = rng.random((q, d)) < 0.4
    value, threshold = mtwv(scores, truth, beta)
    if not truth.any():
        assert math.isnan(value) and math.isnan(twv(scores, truth, 0.0))
        return
    candidates = sorted(set(scores.ravel())) + [math.inf]
    brute = max(brute_twv(scores, truth, th, beta) for th in candidates)
    assert value == pytest.approx(max(brute, 0.0), abs=1e-12)
    assert twv(scores, truth, threshold, beta) == pytest.approx(value, abs=1e-12)
    for th in candidates:
        assert twv(scores, truth, th, beta) == pytest.approx(brute_twv(scores, truth, th, beta), abs=1e-12)


def test_twv_hand_cases():
    truth = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)  # the third query occurs nowhere
    perfect = np.where(truth, 1.0, 0.0)
    assert mtwv(perfect, truth) == (1.0, 1.0)
    assert twv(perfect, truth, math.inf) == 0.0  # no detections
    assert mtwv(np.zeros((3, 4)), truth) == (0.0, math.inf)  # one score for all: yes-to-all costs more than it gains
    # query 1 finds one of its two targets and one false alarm; query 0 finds its target
    scores = np.array([[0.9, 0.1, 0.1, 0.1], [0.1, 0.9, 0.1, 0.9], [0.9, 0.9, 0.9, 0.9]])
    expected = 1 - ((0 + 0) + (0.5 + BETA * 1 / 2)) / 2
    assert twv(scores, truth, 0.5) == pytest.approx(expected)
    assert expected < 0 and mtwv(scores, truth)[0] == 0.0
    # a detector worse than chance on every query: MTWV stays 0 (detect nothing)
    inverted = np.where(truth, 0.0, 1.0)
    assert mtwv(inverted, truth) == (0.0, math.inf)
    # yes to everything for a query whose documents are all targets: no false alarm possible
    assert mtwv(np.ones((1, 3)), np.ones((1, 3), dtype=bool)) == (pytest.approx(1.0), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        mtwv(np.array([[np.nan]]), np.array([[True]]))


def test_twv_follows_beta():
    truth = np.array([[1, 0, 0, 0, 0]], dtype=bool)
    scores = np.array([[0.5, 0.9, 0.1, 0.1, 0.1]])  # the target ranks second, after one false alarm
    assert twv(scores, truth, 0.5, beta=BETA) == pytest.approx(1 - BETA / 4)
    assert mtwv(scores, truth, beta=1.0) == (pytest.approx(0.75), 0.5)
    assert mtwv(scores, truth, beta=BETA) == (0.0, math.inf)


# ----------------------------------------------------------------------------- the synthetic QUESST 2014 tree


def test_synthetic_quesst14_tree_reads_and_its_ground_truth_is_consistent(synth_corpus):
    from ofactl.data.corpora import read_corpus
    from ofactl.testing.synth.plan import _plan
    from probe_fixtures import SPEAKERS, UTTERANCES

    root = synth_corpus / DATA["qbe"]
    corpus = read_corpus(root)  # detected
    assert corpus.layout == "quesst14" and not corpus.problems
    by = {s: [u for u in corpus.utterances if u.split == s] for s in ("docs", "dev", "test")}
    assert [len(by[s]) for s in ("docs", "dev", "test")] == [60, 12, 12]
    assert all(u.labels["role"] == "document" for u in by["docs"])
    assert all(u.id.startswith("quesst14_dev_") for u in by["dev"]) and by["test"][0].id == "quesst14_eval_0001"
    doc_ids = {u.id for u in by["docs"]}
    plan = _plan(SPEAKERS, UTTERANCES, 0)
    texts = {doc_id: " ".join(words) for doc_id, _, words, _, _ in plan.quesst_docs}
    terms = {q: term for part in ("dev", "eval") for q, term in plan.quesst_queries[part]}
    for u in by["dev"] + by["test"]:
        matches = u.labels["matches"]
        assert len(matches) == 2 and set(matches) <= doc_ids
        # the documents the RTTM names are the ones whose text holds the term, and only those
        assert sorted(d for d, t in texts.items() if f" {terms[u.id]} " in f" {t} ") == matches
    rttm = (root / "scoring" / "groundtruth_quesst14_dev" / "quesst14_dev.rttm").read_text().splitlines()
    fields = rttm[0].split()
    assert fields[0] == "LEXEME" and fields[2] == "1" and fields[6:] == ["lex", "<NA>", "<NA>"]
    assert 0 <= float(fields[3]) and 0.2 < float(fields[4]) < 3.0
    assert (root / "scoring" / "language_key_eval.lst").read_text().splitlines()[0] == \
        "quesst14Database/eval_queries/quesst14_eval_0001.wav nnenglish"


def test_qbe_on_mfccs_of_the_synthetic_tree_finds_the_queries(synth_corpus):
    """The corpus is searchable: DTW on plain MFCCs (across voices) scores well above 0 (a wrong ground truth: ~0)."""
    import torchaudio

    from ofactl.data.audio import load_audio
    from ofactl.data.corpora import read_corpus
    from ofactl.tasks import TASKS
    from ofactl.tasks.base import Example
    from ofactl.tasks.loop import Standardize

    mfcc = torchaudio.transforms.MFCC(16000, n_mfcc=20, melkwargs={"n_fft": 400, "hop_length": 320, "n_mels": 40})
    task = TASKS["qbe"]
    corpus = read_corpus(synth_corpus / DATA["qbe"])
    examples = {}
    for role, split in zip(("train", "dev", "test"), task.splits):
        examples[role] = [Example(u.id, mfcc(load_audio(u.path)).T[:, 1:], 0, task.encode(task.label(u), None))
                          for u in corpus.utterances if u.split == split]
    dev, test, _ = task.score_splits(examples, Standardize.fit(e.inputs for e in examples["train"]))
    # measured: 0.21 dev, 0.30 test; with the targets shuffled both are 0.00
    assert dev["mtwv"] > 0.1 and test["mtwv"] > 0.1, (dev, test)
    assert -BETA <= test["atwv"] <= test["mtwv"] + 1e-12


# ----------------------------------------------------------------------------- probe, sweep, errors


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    return tmp_path


def test_cli_probe_qbe_writes_dev_and_test_rows(synth_corpus, calibrated_model, in_tmp):
    args = ["probe", "--task", "qbe", "--period", "20ms", "--model", str(calibrated_model), "--data",
            str(synth_corpus / DATA["qbe"]), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    df = read_results(in_tmp / "results.csv")
    assert list(zip(df["split"], df["metric"])) == [("test", "mtwv"), ("test", "atwv"), ("dev", "mtwv")]
    assert (df["status"] == "ok").all() and df["lr"].isna().all() and (df["task"] == "qbe").all()
    assert (df["target_period_ms"] == 20.0).all() and df["lambda"].notna().all() and df["higher_is_better"].all()
    assert (df["n_utterances"] == 12).all() and (df["macs_per_second"] > 0).all()
    mtwv_values = df[df["metric"] == "mtwv"]["value"]
    assert ((mtwv_values >= 0) & (mtwv_values <= 1)).all()
    assert -BETA <= df[df["metric"] == "atwv"]["value"].iloc[0] <= 1
    features = sorted(p.name for p in (in_tmp / "features").rglob("*.h5"))
    assert features == ["dev-20ms.h5", "docs-20ms.h5", "test-20ms.h5"]
    # the average-pooling baseline falls out of the same path
    result = runner.invoke(app, args[:4] + ["80ms"] + args[5:] + ["--pooling", "avg"])
    assert result.exit_code == 0, result.output
    df = read_results(in_tmp / "results.csv")
    assert set(df[df["model"] == "tiny+avgpool"]["split"]) == {"dev", "test"}


def test_sweep_qbe_over_two_periods(synth_corpus, calibrated_model, tmp_path):
    from ofactl.sweep import run_sweep

    results = tmp_path / "results.csv"
    summary = run_sweep("qbe", synth_corpus / DATA["qbe"], load_model(calibrated_model), results=results,
                        periods=["40ms", "160ms"], lrs=[1e-3, 1e-2], seeds=[0, 1])
    assert summary.scored == [("40ms", 0), ("160ms", 0)] and not summary.failed and not summary.chosen
    df = read_results(results)
    assert sorted(zip(df["target_period_ms"], df["split"], df["metric"])) == [
        (40.0, "dev", "mtwv"), (40.0, "test", "atwv"), (40.0, "test", "mtwv"),
        (160.0, "dev", "mtwv"), (160.0, "test", "atwv"), (160.0, "test", "mtwv")]
    assert (df["seed"] == 0).all() and df["lr"].isna().all() and (df["status"] == "ok").all()
    measured = df.groupby("target_period_ms")["measured_period_ms"].first()
    assert measured[160.0] > 3 * measured[40.0]
    again = run_sweep("qbe", synth_corpus / DATA["qbe"], load_model(calibrated_model), results=results, periods=["40ms", "160ms"])
    assert again.skipped == [("40ms", 0), ("160ms", 0)] and again.written == 0


def test_learn_lambda_with_qbe_is_one_error_line(synth_corpus, calibrated_model, in_tmp):
    result = runner.invoke(app, ["probe", "--task", "qbe", "--learn-lambda", "--model", str(calibrated_model),
                                 "--data", str(synth_corpus / DATA["qbe"]), "--quiet"])
    assert result.exit_code != 0 and isinstance(result.exception, OfactlError)
    assert "trains nothing" in str(result.exception) and "\n" not in str(result.exception)
    assert "--period" in result.exception.hint
    from ofactl.adaptive import run_adaptive

    with pytest.raises(OfactlError, match="trains nothing"):
        run_adaptive("qbe", synth_corpus / DATA["qbe"], load_model(calibrated_model))


def test_missing_ground_truth_is_one_error_line(synth_corpus, calibrated_model, tmp_path):
    from ofactl.probe import run_probe

    copy = tmp_path / "quesst14Database"
    shutil.copytree(synth_corpus / DATA["qbe"], copy)
    shutil.rmtree(copy / "scoring" / "groundtruth_quesst14_dev")
    with pytest.raises(OfactlError, match=r"no ground truth for the dev queries .*quesst14_dev\.rttm not found") as err:
        run_probe("qbe", copy, load_model(calibrated_model), period="40ms", features_dir=tmp_path / "f")
    assert "scoring" in err.value.hint and "\n" not in str(err.value)


def test_a_query_without_frames_is_one_error_line():
    from ofactl.tasks import TASKS
    from ofactl.tasks.base import Example

    docs = [Example("quesst14_00001", torch.ones(5, 3), 5, ())]
    queries = [Example("quesst14_dev_0001", torch.zeros(0, 3), 0, ("quesst14_00001",))]
    with pytest.raises(OfactlError, match="query quesst14_dev_0001 has no feature frames"):
        TASKS["qbe"].score_splits({"train": docs, "dev": queries, "test": queries})
    with pytest.raises(OfactlError, match="document quesst14_00001 has no feature frames"):
        TASKS["qbe"].score_splits({"train": [Example("quesst14_00001", torch.zeros(0, 3), 0, ())],
                                   "dev": [Example("quesst14_dev_0001", torch.ones(2, 3), 2, ("quesst14_00001",))],
                                   "test": [Example("quesst14_eval_0001", torch.ones(2, 3), 2, ("quesst14_00001",))]})
