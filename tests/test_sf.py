"""Slot filling (``sf``): the target text, s3prl's slot_type_f1 / slot_value_cer, and `ofactl probe --task sf`."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ofactl import load_model
from ofactl.cli import app
from ofactl.data.layouts.base import Utterance
from ofactl.results import read_results
from ofactl.tasks import get_task
from ofactl.tasks.sf import Target, slot_type_f1, slot_value_cer, to_text
from ofactl.workspace import MODEL_ENV_VAR
from probe_fixtures import DATA, UTTERANCES

runner = CliRunner()


# ----------------------------------------------------------------------------- a plain reference
def _levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _reference(hyps: list[str], refs: list[str]) -> tuple[float, float]:
    """s3prl downstream/ctc/metric.py (slot_type_f1, slot_value_cer), written out step by step."""

    def clean(text):
        return re.sub(r" E\-(\S+)", "", re.sub(r"B\-(\S+) ", "", text))

    def slot_dict(text, do_clean):
        pattern = re.compile(r"B\-(\S+) (.+?) E\-\1")
        pairs = pattern.findall(re.sub(r" +", " ", text))
        joined = ";".join(":".join([clean(v) if do_clean else v, k]) for k, v in pairs)
        out = {}
        if joined:
            for item in joined.split(";"):
                v, k = item.split(":")
                out.setdefault(k, []).append(v)
        return out

    f1s, errors, chars = [], 0, 0
    for p, t in zip(hyps, refs):
        ref_d, hyp_d = slot_dict(t, False), slot_dict(p, True)
        if not hyp_d and not ref_d:
            f1 = 1.0
        elif not hyp_d or not ref_d:
            f1 = 0.0
        else:
            r = sum(1 for s in ref_d if s in hyp_d) / len(ref_d)
            pr = sum(1 for s in hyp_d if s in ref_d) / len(hyp_d)
            f1 = 2 * pr * r / (pr + r) if pr + r > 0 else 0.0
        f1s.append(f1)
        for slot, values in ref_d.items():
            for ref_v in values:
                best, best_cer = "", 100.0
                for hyp_v in hyp_d.get(slot, []):
                    c = _levenshtein(hyp_v, ref_v) / len(ref_v)
                    if best_cer > c:
                        best, best_cer = hyp_v, c
                errors += _levenshtein(best, ref_v)
                chars += len(ref_v)
    return sum(f1s) / len(f1s), errors / chars if chars else math.nan


REF = "PLAY B-artist THE BEATLES E-artist ON B-service SPOTIFY E-service"


@pytest.mark.parametrize("hyp, f1, cer", [
    (REF, 1.0, 0.0),
    # artist found (1 substitution in 11 characters), service missing (7 deletions): P 1, R 1/2
    ("PLAY B-artist THE BEETLES E-artist ON SPOTIFY", 2 / 3, (1 + 7) / 18),
    # no slot at all: F1 0, every value character deleted
    ("PLAY THE BEATLES ON SPOTIFY", 0.0, 1.0),
    # an extra slot type: P 2/3, R 1 -> F1 0.8; the values are right
    ("B-city PLAY E-city B-artist THE BEATLES E-artist B-service SPOTIFY E-service", 0.8, 0.0),
    # two hypothesis values of one type: the closer one is scored; nested tags are cleaned from values
    ("B-artist ADELE E-artist B-artist THE B-x BEATLES E-artist B-service SPOTIFY E-service", 1.0, 0.0),
    # an unclosed tag is no slot; runs of spaces are collapsed
    ("B-artist THE  BEATLES E-artist B-service SPOTIFY", 2 / 3, 7 / 18),
])
def test_metrics_on_hand_computed_cases(hyp, f1, cer):
    assert slot_type_f1([hyp], [REF]) == pytest.approx(f1)
    assert slot_value_cer([hyp], [REF]) == pytest.approx(cer)
    assert (slot_type_f1([hyp], [REF]), slot_value_cer([hyp], [REF])) == pytest.approx(_reference([hyp], [REF]))


def test_value_cer_follows_s3prls_start_value_of_100():
    # s3prl starts its search at CER 100: a value 101 times too long is never chosen, "" is scored instead
    hyp = "B-a " + "Y" * 101 + " E-a"
    assert slot_value_cer([hyp], ["B-a X E-a"]) == 1.0 == _reference([hyp], ["B-a X E-a"])[1]
    hyp = "B-a " + "Y" * 99 + " E-a"
    assert slot_value_cer([hyp], ["B-a X E-a"]) == 99.0 == _reference([hyp], ["B-a X E-a"])[1]


def test_metrics_average_f1_over_utterances_and_pool_cer_over_characters():
    refs = [REF, "WHAT IS THE WEATHER", "IN B-city PARIS E-city"]
    hyps = [REF, "WHAT IS THE WEATHER", "IN B-city PARIS E-city B-timeRange NOW E-timeRange"]
    # per utterance: 1, 1 (no slots on either side), 2/3 -> mean 8/9; CER pooled: 0 errors in 23 characters
    assert slot_type_f1(hyps, refs) == pytest.approx(8 / 9)
    assert slot_value_cer(hyps, refs) == 0.0
    assert slot_type_f1(["B-city X E-city"], ["WHAT"]) == 0.0  # slots where the reference has none
    assert math.isnan(slot_value_cer(["X"], ["WHAT"]))  # no reference value: nothing to score


_words = st.lists(st.sampled_from(["A", "AB", "BA", "C", "B-a", "E-a", "B-b", "E-b", "B-c", "E-c"]), max_size=10)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_words, _words), min_size=1, max_size=4), st.sampled_from([" ", "  "]))
def test_metrics_match_the_reference_implementation(pairs, gap):
    hyps = [gap.join(h) for h, _ in pairs]
    refs = [" ".join(r) for _, r in pairs]
    f1, cer = _reference(hyps, refs)
    assert slot_type_f1(hyps, refs) == pytest.approx(f1)
    got = slot_value_cer(hyps, refs)
    assert (math.isnan(got) and math.isnan(cer)) or got == pytest.approx(cer)


# ----------------------------------------------------------------------------- the task
def _utt(words: str, slots: str) -> Utterance:
    return Utterance("u", "/x.wav", "train", labels={"words": words.split(), "slots": slots.split()})


def test_tokens_are_characters_boundaries_and_one_token_per_tag():
    task = get_task("sf")
    assert task.layout == "snips" and task.splits == ("train", "valid", "test") and task.ctc
    assert [(m.name, m.higher_is_better) for m in task.metrics] == [("slot_type_f1", True), ("slot_value_cer", False)]
    label = task.label(_utt("ON SPOTIFY", "O service"))
    assert list(label) == ["O", "N", "|", "B-service", *"SPOTIFY", "E-service"]
    assert to_text(list(label)) == "ON B-service SPOTIFY E-service"
    assert task.label(_utt("A B", "O")) is None  # words and tags disagree: left out
    vocab = task.vocabulary([label])
    target = task.encode(label, vocab)
    assert isinstance(target, Target) and len(target) == len(label) and target.text == "ON B-service SPOTIFY E-service"
    assert task.units(list(target), vocab) == list(label)


def test_task_scores_a_perfect_and_an_empty_prediction():
    task = get_task("sf")
    labels = [task.label(_utt("PLAY ADELE", "O artist")), task.label(_utt("HI", "O"))]
    vocab = task.vocabulary(labels)
    targets = [task.encode(lab, vocab) for lab in labels]
    n_frames = 2 * max(len(t) for t in targets) + 1
    logits = torch.full((2, n_frames, len(vocab) + 1), -10.0)
    for b, t in enumerate(targets):  # token, blank, token, blank, ...
        logits[b, :, 0] = 10.0
        for i, tok in enumerate(t):
            logits[b, 2 * i, tok], logits[b, 2 * i, 0] = 10.0, -10.0
    lengths = torch.tensor([n_frames, n_frames])
    head = lambda x, lengths: logits  # noqa: E731
    perfect = task.finish(task.score(head, None, lengths, targets, vocab))
    assert perfect == {"slot_type_f1": 1.0, "slot_value_cer": 0.0}
    blank = lambda x, lengths: torch.zeros_like(logits).index_fill_(-1, torch.tensor([0]), 10.0)  # noqa: E731
    empty = task.finish(task.score(blank, None, lengths, targets, vocab))
    assert empty == {"slot_type_f1": 0.5, "slot_value_cer": 1.0}  # the slot-free utterance scores F1 1


def test_synthetic_snips_labels_round_trip(synth_corpus):
    from ofactl.data.corpora import read_corpus

    corpus = read_corpus(synth_corpus / DATA["sf"])
    task = get_task("sf")
    assert not corpus.problems and {u.split for u in corpus} == {"train", "valid", "test"}
    for u in corpus:
        assert to_text(list(task.label(u))) == u.labels["slot_text"]
        assert slot_type_f1([u.labels["slot_text"]], [u.labels["slot_text"]]) == 1.0
    train_tags = {t for u in corpus.by_split("train") for t in task.label(u) if len(t) > 1}
    assert {t for u in corpus for t in task.label(u) if len(t) > 1} <= train_tags  # tags seen in train


# ----------------------------------------------------------------------------- probe
@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    return tmp_path


def test_cli_probe_sf_writes_both_metrics_and_the_dev_primary(synth_corpus, calibrated_model, in_tmp):
    result = runner.invoke(app, ["probe", "--task", "sf", "--period", "20ms", "--model", str(calibrated_model),
                                 "--data", str(synth_corpus / DATA["sf"]), "--max-epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    df = read_results(in_tmp / "results.csv")
    got = list(zip(df["split"], df["metric"], df["higher_is_better"], df["status"]))
    assert got == [("test", "slot_type_f1", True, "ok"), ("test", "slot_value_cer", False, "ok"),
                   ("dev", "slot_type_f1", True, "ok")]
    assert (df["task"] == "sf").all() and (df["target_period_ms"] == 20.0).all()
    f1, cer = df["value"].iloc[0], df["value"].iloc[1]
    assert 0.0 <= f1 <= 1.0 and cer >= 0.0
    n_test = max(2, round(0.15 * round(0.3 * UTTERANCES)))  # the synthetic corpus's documented split sizes
    assert set(df["n_utterances"]) == {n_test}


def test_sf_at_a_long_period_is_infeasible_not_a_crash(synth_corpus, calibrated_model, tmp_path):
    from ofactl.probe import run_probe

    rows = run_probe("sf", synth_corpus / DATA["sf"], load_model(calibrated_model), period="400ms", features_dir=tmp_path)
    assert [(r.split, r.metric) for r in rows] == [("test", "slot_type_f1"), ("test", "slot_value_cer"),
                                                   ("dev", "slot_type_f1")]
    assert {r.status for r in rows} == {"infeasible"} and all(math.isnan(r.value) for r in rows)
    assert "fewer frames than labels" in rows[0].note
