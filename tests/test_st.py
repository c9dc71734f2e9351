"""Speech translation (st): BLEU against sacreBLEU, the text clean-up, the encoder-decoder and its beam search,
the synthetic CoVoST 2, a probe against a shuffled-target control, and a sweep over two periods."""

from __future__ import annotations

import itertools
import math
import random
import sys

import numpy as np
import pytest
import torch

from probe_fixtures import DATA as _DATA  # noqa: F401  (the session fixtures come from conftest)

from ofactl import load_model

SMALL = dict(d_model=64, ffn=128, heads=4, encoder_layers=2, decoder_layers=2, conv_channels=128)

HYPS = ["Der Hund sieht die Katze.", "heute sieht der Mann die Frau", "", "Das Kind ist klein .",
        "Die Frau ist müde.", "Der Lehrer ruft den Hund nicht."]
REFS = ["Der große Hund sieht die Katze.", "Heute sieht der Mann die Frau.", "Das Pferd ist alt.",
        "Das Kind ist klein.", "Die Frau ist müde.", "Der Lehrer ruft den Hund nicht."]


# ----------------------------------------------------------------------------- BLEU


def test_bleu_equals_sacrebleu_corpus_bleu():
    import sacrebleu

    from ofactl.tasks.bleu import corpus_bleu

    assert corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score, abs=1e-12)
    for k in range(1, len(HYPS)):  # every prefix, including single sentences that smoothing rescues
        assert corpus_bleu(HYPS[:k], REFS[:k]) == pytest.approx(sacrebleu.corpus_bleu(HYPS[:k], [REFS[:k]]).score,
                                                                abs=1e-12)
    assert corpus_bleu(REFS, REFS) == pytest.approx(100.0)


def test_bleu_of_resampled_statistics_equals_sacrebleu_on_the_resampled_sentences():
    """The bootstrap resamples per-utterance statistics: each replicate must be sacreBLEU of those sentences."""
    import sacrebleu

    from ofactl.tasks.bleu import bleu, sentence_stats

    stats = sentence_stats(HYPS, REFS)
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(HYPS), size=(5, len(HYPS)))
    counts = np.stack([np.bincount(d, minlength=len(HYPS)) for d in draws])  # (replicates, sentences)
    totals = {k: counts @ v for k, v in stats.items()}
    got = bleu(totals)
    for r, d in enumerate(draws):
        want = sacrebleu.corpus_bleu([HYPS[i] for i in d], [[REFS[i] for i in d]]).score
        assert got[r] == pytest.approx(want, abs=1e-9)


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    from ofactl.errors import OfactlError
    from ofactl.tasks import get_task

    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # import fails
    with pytest.raises(OfactlError, match="needs the Python package sacrebleu") as err:
        get_task("st").check_requirements()
    assert "pip install 'ofactl[st]'" in err.value.hint


# ----------------------------------------------------------------------------- text


def test_text_clean_up_follows_s3prls_recipe():
    from ofactl.tasks.st import keep_pair, normalise, normalise_source

    assert normalise("\u201eHeute regnet es\u201c , sagt er .", "de") == '"Heute regnet es", sagt er.'
    assert normalise_source("Hello, World! It's a well-known fact.", "en") == "hello world it's a well-known fact"
    assert keep_pair("one two three four five", "eins") and not keep_pair("a b c d e f", "eins")
    assert not keep_pair("", "eins") and not keep_pair("one", "")


def test_labels_leave_out_pairs_the_recipe_drops():
    from ofactl.data.corpora import Utterance
    from ofactl.tasks import get_task

    task = get_task("st")

    def utt(src, tgt):
        return Utterance("x", "/x.mp3", "train", labels={"sentence": src, "translation": tgt, "tgt_lang": "de"})

    assert task.label(utt("The dog sees the cat.", "Der Hund sieht die Katze .")) == "Der Hund sieht die Katze."
    assert task.label(utt("Yes.", "Ja, das ist ganz und gar richtig so.")) is None  # 1 word against 8
    assert task.label(utt("...", "Gut.")) is None  # no source word once punctuation is gone


def test_sentencepiece_targets_round_trip_and_are_deterministic():
    import pickle

    from ofactl.tasks.subwords import EOS, Subwords

    texts = [r for r in REFS if r]
    a, b = Subwords.train(texts), Subwords.train(texts)
    assert a.model == b.model and len(a) > 20
    for t in texts:
        ids = a.encode(t)
        assert min(ids) > EOS and a.decode(ids) == t
    assert a.max_target_len == max(len(a.encode(t)) for t in texts)
    c = pickle.loads(pickle.dumps(a))
    assert c.decode(c.encode(texts[0])) == texts[0]


# ----------------------------------------------------------------------------- the probe head


def _head(vocab_size=7, in_dim=5, seed=0, **kw):
    from ofactl.tasks.seq2seq import Seq2SeqConfig, Seq2SeqHead

    torch.manual_seed(seed)
    cfg = Seq2SeqConfig(**{**dict(d_model=16, ffn=32, heads=2, encoder_layers=1, decoder_layers=1,
                                  conv_channels=16, dropout=0.0), **kw})
    return Seq2SeqHead(in_dim, vocab_size, cfg).eval()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13])
def test_subsampler_lengths_match_the_convolutions(n):
    from ofactl.tasks.seq2seq import subsampled_lengths

    head = _head()
    out, lengths = head.subsample(torch.randn(1, n, 5), torch.tensor([n]))
    assert out.shape[1] == int(lengths[0]) == int(subsampled_lengths(torch.tensor([n]), 2)[0]) == math.ceil(n / 4)


def test_padding_does_not_change_an_utterances_output():
    from ofactl.tasks.seq2seq import teacher_forcing

    head = _head()
    torch.manual_seed(1)
    a, b = torch.randn(9, 5), torch.randn(21, 5)
    x = torch.zeros(2, 21, 5)
    x[0, :9], x[1] = a, b
    prefix, _ = teacher_forcing([[4, 5, 6], [4]])
    both = head(x, torch.tensor([9, 21]), prefix)
    alone = head(a[None], torch.tensor([9]), prefix[:1])
    assert torch.allclose(both[0], alone[0], atol=1e-5)


def _sequence_logprob(head, x, lengths, seq):
    from ofactl.tasks.subwords import BOS, EOS

    prefix = torch.tensor([[BOS, *seq]])
    memory, pad = head.encode(x, lengths)
    with torch.no_grad():
        logp = head.decode(prefix, memory, pad).log_softmax(-1)[0]
    return float(sum(logp[i, t] for i, t in enumerate([*seq, EOS])))


def test_beam_search_finds_the_best_length_normalised_hypothesis():
    """With enough beams the search is exhaustive: it must return the argmax over every sequence up to max_len."""
    from ofactl.tasks.seq2seq import beam_search
    from ofactl.tasks.subwords import EOS, UNK

    pieces = [UNK, EOS + 1, EOS + 2, EOS + 3]  # an unknown piece may be emitted (decoding drops it from the text)
    for seed in range(3):
        head = _head(seed=seed)
        x, lengths = torch.randn(1, 6, 5), torch.tensor([6])
        candidates = [list(s) for n in range(0, 4) for s in itertools.product(pieces, repeat=n)]
        scores = {tuple(c): _sequence_logprob(head, x, lengths, c) / (len(c) + 1) for c in candidates}
        best = max(scores, key=scores.get)
        got = beam_search(head, x, lengths, beam=100, max_len=3)[0]
        assert tuple(got) == best, (seed, got, best)


def test_beam_one_is_greedy_decoding_and_batches_decode_alone():
    from ofactl.tasks.seq2seq import beam_search
    from ofactl.tasks.subwords import BOS, EOS, PAD

    head = _head(vocab_size=9, seed=4)
    torch.manual_seed(2)
    x, lengths = torch.randn(3, 11, 5), torch.tensor([11, 4, 7])
    greedy = []
    for b in range(3):  # a plain loop
        seq = [BOS]
        memory, pad = head.encode(x[b:b + 1, : lengths[b]], lengths[b:b + 1])
        for _ in range(6):
            logp = head.decode(torch.tensor([seq]), memory, pad)[0, -1]
            logp[PAD] = logp[BOS] = -math.inf
            tok = int(logp.argmax())
            if tok == EOS:
                break
            seq.append(tok)
        greedy.append(seq[1:])
    assert beam_search(head, x, lengths, beam=1, max_len=6) == greedy
    batched = beam_search(head, x, lengths, beam=3, max_len=6)
    alone = [beam_search(head, x[b:b + 1, : lengths[b]], lengths[b:b + 1], beam=3, max_len=6)[0] for b in range(3)]
    assert batched == alone


def test_the_head_learns_to_translate_a_toy_code():
    """Frames carry one-hot symbols, four frames each; the target is the symbol sequence in reverse.
    A few hundred Adam steps must get most of it right through beam search (a probe that cannot learn fails)."""
    from ofactl.tasks.seq2seq import beam_search, teacher_forcing

    vocab = 10
    head = _head(vocab_size=vocab, in_dim=vocab, d_model=48, ffn=96, conv_channels=96).train()
    gen = torch.Generator().manual_seed(0)

    def batch(n):
        seqs = [torch.randint(4, vocab, (int(torch.randint(2, 5, (1,), generator=gen)),), generator=gen).tolist()
                for _ in range(n)]
        x = torch.zeros(n, 4 * max(map(len, seqs)), vocab)
        for i, s in enumerate(seqs):
            for j, c in enumerate(s):
                x[i, 4 * j: 4 * j + 4, c] = 1.0
        return x, torch.tensor([4 * len(s) for s in seqs]), [s[::-1] for s in seqs]

    opt = torch.optim.Adam(head.parameters(), lr=2e-3)
    for _ in range(350):
        x, lengths, targets = batch(32)
        prefix, gold = teacher_forcing(targets)
        loss = torch.nn.functional.cross_entropy(head(x, lengths, prefix).reshape(-1, vocab), gold.reshape(-1),
                                                 ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    x, lengths, targets = batch(40)
    hyps = beam_search(head, x, lengths, beam=4, max_len=8)
    assert sum(h == t for h, t in zip(hyps, targets)) >= 32


def test_the_schedule_warms_up_then_decays_with_the_inverse_square_root():
    from ofactl.tasks.st import SpeechTranslation

    task = SpeechTranslation(warmup_steps=10_000, warmup_epochs=4)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = task.schedule(opt, steps_per_epoch=5)  # warm-up: min(10000, 4 x 5) = 20 steps
    rates = []
    for _ in range(80):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[0] == pytest.approx(1 / 20) and rates[19] == pytest.approx(1.0)
    assert rates[79] == pytest.approx(math.sqrt(20 / 80))
    with pytest.raises(TypeError, match="no setting"):
        SpeechTranslation(beams=3)


# ----------------------------------------------------------------------------- synthetic CoVoST 2


def test_synthetic_pairs_agree_in_gender_and_case():
    from ofactl.testing.synth.covost import SHAPES, sentence_pair

    rng = np.random.default_rng(0)
    pairs = {shape: sentence_pair(rng, shape) for shape in SHAPES}
    assert [sentence_pair(np.random.default_rng(5)) for _ in range(2)] == \
        [sentence_pair(np.random.default_rng(5)) for _ in range(2)]
    for shape, (en, de) in pairs.items():
        assert en[0].isupper() and de[0].isupper() and en.endswith(".") and de.endswith(".")
    rng = np.random.default_rng(1)
    for _ in range(200):
        en, de = sentence_pair(rng, "adjectives")
        words = de.rstrip(".").split()
        # nominative subject: der/die/das + -e; accusative object: den + -en, die/das + -e
        assert (words[0], words[1][-1]) in {("Der", "e"), ("Die", "e"), ("Das", "e")}
        assert words[4] in ("den", "die", "das")
        assert words[5].endswith("en") == (words[4] == "den")
    assert pairs["today"][1].startswith("Heute ") and pairs["negation"][1].endswith(" nicht.")


def test_synthetic_covost_reads_back_with_speaker_disjoint_splits(synth_corpus):
    from ofactl.data.corpora import read_corpus
    from ofactl.tasks import get_task

    corpus = read_corpus(synth_corpus / "CoVoST2")
    assert corpus.layout == "covost2" and corpus.problems == []
    sizes = {s: len(corpus.by_split(s)) for s in ("train", "dev", "test")}
    total = sum(sizes.values())
    held = max(4, round(0.1 * total))
    assert sizes == {"train": total - 2 * held, "dev": held, "test": held}
    speakers = {s: {u.speaker for u in corpus.by_split(s)} for s in sizes}
    assert not (speakers["train"] & speakers["test"]) and not (speakers["dev"] & speakers["test"])
    task = get_task("st")
    assert all(task.label(u) == u.labels["translation"] for u in corpus)  # the clean-up keeps them as they are
    assert all(len(u.speaker) == 128 for u in corpus)


# ----------------------------------------------------------------------------- probes on the synthetic set


def test_probe_beats_a_shuffled_target_control(synth_corpus):
    """The probe on log-mel features of the synthetic CoVoST 2 against the same probe trained on shuffled targets.

    Filter banks stand in for good speech features here: the tiny random model of the other tests keeps too
    little of the words for a translation probe (see the sweep test below, which only checks the rows).
    Measured: test BLEU 40.4 against 3.7 for the control (8 epochs, 576 training pairs, 72 test pairs)."""
    import torchaudio

    from dataclasses import replace

    from ofactl.data.audio import load_audio
    from ofactl.data.corpora import read_corpus
    from ofactl.tasks.base import Example
    from ofactl.tasks.loop import Standardize, fit, score_examples
    from ofactl.tasks.seq2seq import Seq2SeqConfig
    from ofactl.tasks.st import SpeechTranslation

    task = SpeechTranslation(Seq2SeqConfig(**SMALL), beam=1)  # greedy: the comparison, not the search, is tested
    corpus = read_corpus(synth_corpus / "CoVoST2")
    labels = {s: [(u, task.label(u)) for u in corpus.by_split(s)] for s in ("train", "dev", "test")}
    vocab = task.vocabulary([lab for _, lab in labels["train"]])
    examples = {}
    for split, pairs in labels.items():
        examples[split] = []
        for u, lab in pairs:
            wave = torch.as_tensor(load_audio(u.path)).float()[None] * 32768
            feats = torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=40)[::2]  # 20 ms frames
            examples[split].append(Example(u.id, feats, feats.shape[0], task.encode(lab, vocab)))
    upstream = Standardize.fit(e.inputs for e in examples["train"])

    def bleu_of(train):
        result = fit(task, train, examples["dev"], vocab, 40, lr=2e-3, max_epochs=8, patience=8, upstream=upstream)
        outcomes, _ = score_examples(task, result.head, examples["test"], vocab, upstream)
        return outcomes.metrics()["bleu"]

    train = examples["train"]
    order = list(range(len(train)))
    random.Random(0).shuffle(order)
    shuffled = [replace(e, target=train[j].target) for e, j in zip(train, order)]
    real, control = bleu_of(train), bleu_of(shuffled)
    assert real > 20 and real > 4 * control, (real, control)


def test_sweep_over_two_periods_writes_bleu_rows(synth_corpus, calibrated_model, tmp_path, monkeypatch):
    from ofactl import tasks
    from ofactl.results import read_results
    from ofactl.sweep import run_sweep
    from ofactl.tasks.seq2seq import Seq2SeqConfig
    from ofactl.tasks.st import SpeechTranslation

    monkeypatch.setitem(tasks.TASKS, "st", SpeechTranslation(Seq2SeqConfig(**SMALL), beam=2))
    results = tmp_path / "results.csv"
    # SUPERB's weighted sum of the layers (the sweep extracts every layer once per period)
    summary = run_sweep("st", synth_corpus / "CoVoST2", load_model(calibrated_model), results=results,
                        periods=["20ms", "400ms"], lrs=[1e-3], max_epochs=1, features_dir=tmp_path / "f",
                        layer="weighted")
    table = read_results(results)
    rows = table[table["task"] == "st"]
    assert sorted(rows["target_period_ms"].unique()) == [20.0, 400.0], summary
    assert set(rows["metric"]) == {"bleu"} and set(rows["status"]) == {"ok"} and set(rows["layer"]) == {"weighted"}
    assert rows[rows["split"] == "test"]["note"].str.contains("layer weights").all()
    test = rows[rows["split"] == "test"]
    assert len(test) == 2 and (test["value"] >= 0).all() and (test["n_utterances"] > 0).all()


def test_learn_lambda_trains_theta_through_the_translation_loss(synth_corpus, calibrated_model, tmp_path,
                                                                monkeypatch):
    from ofactl import tasks
    from ofactl.adaptive import run_adaptive
    from ofactl.tasks.seq2seq import Seq2SeqConfig
    from ofactl.tasks.st import SpeechTranslation

    monkeypatch.setitem(tasks.TASKS, "st", SpeechTranslation(Seq2SeqConfig(**SMALL), beam=1))
    seen = []
    rows = run_adaptive("st", synth_corpus / "CoVoST2", load_model(calibrated_model), lam_init=0.5, lambda_lr=0.05, max_epochs=2,
                        patience=2, features_dir=tmp_path, on_epoch=lambda epoch, lam, scores: seen.append(lam))
    assert len(seen) == 2 and len(set(seen)) == 2 and 0.5 not in seen
    assert rows[0].metric == "bleu" and rows[0].status == "ok" and rows[0].lam in seen


def test_incremental_steps_give_the_full_decoders_logits():
    from ofactl.tasks.seq2seq import teacher_forcing

    head = _head(vocab_size=9, seed=3, decoder_layers=2)
    torch.manual_seed(5)
    x, lengths = torch.randn(2, 13, 5), torch.tensor([13, 6])
    prefix, _ = teacher_forcing([[4, 5, 6, 7, 8], [8, 7, 6, 5, 4]])
    with torch.no_grad():
        memory, pad = head.encode(x, lengths)
        full = head.decode(prefix, memory, pad)
        state = head.start(memory, pad)
        steps = torch.stack([head.step(state, prefix[:, i]) for i in range(prefix.shape[1])], dim=1)
    assert torch.allclose(steps, full, atol=1e-5), (steps - full).abs().max()
