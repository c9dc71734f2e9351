"""Tasks: the registry, heads, metrics (IC all-slots hit, PER, CTC feasibility), the training loop's contracts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ofactl import load_model
from ofactl.errors import OfactlError
from ofactl.tasks import TASKS, get_task
from ofactl.tasks.base import ClassificationTask, Example
from ofactl.tasks.heads import LinearCTCHead, MeanPoolHead
from ofactl.tasks.loop import Standardize, evaluate, fit, pad


def test_registry_names_layouts_splits_and_metrics():
    assert set(TASKS) == {"ks", "ic", "sid", "er", "pr", "asr", "qbe", "sf", "st"}
    assert {n: t.layout for n, t in TASKS.items()} == {
        "ks": "speech_commands", "ic": "fluent", "sid": "voxceleb1", "er": "iemocap",
        "pr": "librispeech", "asr": "librispeech", "qbe": "quesst14", "sf": "snips", "st": "covost2"}
    assert TASKS["pr"].splits == ("train-clean-100", "dev-clean", "test-clean")
    assert TASKS["sid"].splits == ("train", "dev", "test")
    for name in ("ks", "ic", "sid", "er"):
        assert [(m.name, m.higher_is_better) for m in TASKS[name].metrics] == [("accuracy", True)]
    assert [(m.name, m.higher_is_better) for m in TASKS["pr"].metrics] == [("per", False)]
    assert [m.name for m in TASKS["asr"].metrics] == ["wer", "cer"]
    assert [(m.name, m.higher_is_better) for m in TASKS["qbe"].metrics] == [("mtwv", True), ("atwv", True)]
    assert TASKS["qbe"].splits == ("docs", "dev", "test")
    assert [n for n, t in TASKS.items() if not t.trainable] == ["qbe"]
    assert [(m.name, m.higher_is_better) for m in TASKS["st"].metrics] == [("bleu", True)]
    assert TASKS["st"].layout == "covost2" and TASKS["st"].trainable and not TASKS["st"].ctc
    with pytest.raises(OfactlError, match="unknown task"):
        get_task("nope")


class _Fixed(nn.Module):
    """A 'head' that returns fixed logits regardless of input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.sizes = None

    def forward(self, x, lengths):
        return self.logits


def test_ic_counts_a_hit_only_when_action_object_and_location_are_all_right():
    ic = TASKS["ic"]
    vocab = [["activate", "change"], ["lights", "music"], ["kitchen", "none"]]
    # utterance 0 predicts (activate, lights, none); utterance 1 predicts (change, music, kitchen)
    logits = torch.tensor([[5., 0., 5., 0., 0., 5.], [0., 5., 0., 5., 5., 0.]])
    targets = [ic.encode(("activate", "lights", "none"), vocab),     # all right
               ic.encode(("change", "music", "none"), vocab)]        # location wrong
    stats = ic.score(_Fixed(logits), torch.zeros(2, 1, 1), torch.ones(2, dtype=torch.long), targets, vocab)
    assert ic.finish(stats) == {"accuracy": 0.5}
    # a label never seen in training is always a miss
    assert ic.encode(("activate", "heat", "none"), vocab) == (0, -1, 1)


def test_pr_per_is_edit_distance_over_reference_length():
    pr = TASKS["pr"]
    vocab = ["a", "b", "c"]
    # greedy path "a a _ b b c" -> [a, b, c]; reference [a, c] -> 1 insertion / 2
    path = torch.tensor([1, 1, 0, 2, 2, 3])
    logits = nn.functional.one_hot(path, 4).float()[None] * 10
    stats = pr.score(_Fixed(logits), torch.zeros(1, 6, 1), torch.tensor([6]), [pr.encode(["a", "c"], vocab)], vocab)
    assert pr.finish(stats) == {"per": 0.5}
    # the same path cut to 2 valid frames decodes to [a]
    stats = pr.score(_Fixed(logits), torch.zeros(1, 6, 1), torch.tensor([2]), [pr.encode(["a", "c"], vocab)], vocab)
    assert pr.finish(stats) == {"per": 0.5}


def test_ctc_feasibility_counts_repeats():
    pr = TASKS["pr"]
    assert not pr.infeasible(Example("u", None, 3, [1, 2, 3]))
    assert pr.infeasible(Example("u", None, 2, [1, 2, 3]))
    assert pr.infeasible(Example("u", None, 3, [1, 1, 2]))        # a repeat needs a blank between
    assert not pr.infeasible(Example("u", None, 4, [1, 1, 2]))
    assert not TASKS["sid"].infeasible(Example("u", None, 1, (0,)))


def test_asr_wer_and_cer():
    asr = TASKS["asr"]
    vocab = asr.vocabulary(["AB C"])
    assert vocab == ["A", "B", "C", "|"]
    target = asr.encode("AB C", vocab)
    hyp = asr.encode("AB D", vocab)  # D unseen -> <unk>
    path = []
    for t in hyp:
        path += [t, 0]
    logits = nn.functional.one_hot(torch.tensor(path).clamp(max=len(vocab)), len(vocab) + 1).float()[None] * 10
    stats = asr.score(_Fixed(logits), torch.zeros(1, len(path), 1), torch.tensor([len(path)]), [target], vocab)
    out = asr.finish(stats)
    assert out["wer"] == pytest.approx(0.5) and out["cer"] == pytest.approx(0.25)


def test_mean_pool_head_ignores_padding():
    torch.manual_seed(0)
    head = MeanPoolHead(8, 3)
    a, b = torch.randn(5, 8), torch.randn(2, 8)
    x, lengths = pad([a, b])
    batched = head(x, lengths)
    assert torch.allclose(batched[1], head(b[None], torch.tensor([2]))[0], atol=1e-6)
    x_noisy = x.clone()
    x_noisy[1, 2:] = 100.0  # garbage in padding changes nothing
    assert torch.allclose(head(x_noisy, lengths), batched, atol=1e-6)
    assert LinearCTCHead(8, 4)(x, lengths).shape == (2, 5, 5)


def test_standardize_keeps_padding_zero_and_whitens():
    feats = [torch.randn(7, 4) * 3 + 10, torch.randn(3, 4) * 3 + 10]
    norm = Standardize.fit(feats)
    x, lengths = norm(feats)
    assert torch.all(x[1, 3:] == 0)
    valid = torch.cat([x[0, :7], x[1, :3]])
    assert valid.mean(0).abs().max() < 1e-4 and (valid.std(0, unbiased=False) - 1).abs().max() < 1e-3


def _blobs(n, seed, classes=3, dim=6):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * 2
    out = []
    for i in range(n):
        c = i % classes
        frames = 3 + int(torch.randint(0, 5, (1,), generator=g))
        out.append(Example(f"u{seed}-{i}", centres[c] + torch.randn(frames, dim, generator=g), frames, (c,)))
    return out


class _Blobs(ClassificationTask):
    name = "blobs"
    fields = ("c",)


def test_fit_is_deterministic_per_seed_learns_and_returns_the_dev_best():
    task = _Blobs()
    vocab = [["0", "1", "2"]]
    train, dev, test = _blobs(60, 1), _blobs(30, 2), _blobs(30, 3)
    a = fit(task, train, dev, vocab, 6, lr=1e-2, seed=3, max_epochs=15, patience=3)
    b = fit(task, train, dev, vocab, 6, lr=1e-2, seed=3, max_epochs=15, patience=3)
    for (ka, va), (kb, vb) in zip(a.head.state_dict().items(), b.head.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert a.history == b.history
    assert evaluate(task, a.head, test, vocab)["accuracy"] > 0.9
    # the returned head is the best epoch's: its dev score equals the recorded one
    assert evaluate(task, a.head, dev, vocab)["accuracy"] == a.dev["accuracy"]
    assert a.dev["accuracy"] == max(h["accuracy"] for h in a.history)
    assert a.epochs - a.best_epoch <= 3
    c = fit(task, train, dev, vocab, 6, lr=1e-2, seed=4, max_epochs=2, patience=3)
    assert not all(torch.equal(x, y) for x, y in zip(a.head.state_dict().values(), c.head.state_dict().values()))


def test_er_probe_on_an_iemocap_tree(tmp_path):
    """ER reads the IEMOCAP layout (SUPERB's 4 classes, fold 1) end to end."""
    from layout_fixtures import make_iemocap

    from ofactl.checkpoint import save_model
    from ofactl.model import OFAStudent, StudentConfig
    from ofactl.probe import run_probe

    root = make_iemocap(tmp_path)
    torch.manual_seed(0)
    model = save_model(tmp_path / "m", OFAStudent(StudentConfig.preset("tiny")))
    rows = run_probe("er", root, load_model(model), lam=0.0, features_dir=tmp_path / "f", max_epochs=3)
    test = [r for r in rows if r.split == "test"]
    assert [(r.task, r.metric, r.status) for r in test] == [("er", "accuracy", "ok")]
    assert 0.0 <= test[0].value <= 1.0 and test[0].n_utterances == 4
    assert test[0].lam == 0.0 and test[0].target_period_ms is None and 19 < test[0].measured_period_ms < 21
    assert not math.isnan(rows[-1].value) and rows[-1].split == "dev"
