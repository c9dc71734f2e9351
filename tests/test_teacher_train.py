"""`ofactl teacher train`: a small teacher trained on phone labels, loadable as a --teacher."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from ofactl.cli import app
from ofactl.errors import OfactlError
from probe_fixtures import DATA

runner = CliRunner()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_phone_error_rate_against_hand_counts():
    from ofactl.teacher_train import phone_error_rate

    # one substitution + one deletion over 5 reference phones; one insertion over 2
    assert phone_error_rate([["a", "x", "c", "d"], ["a", "b", "c"]], [["a", "b", "c", "d", "e"], ["a", "b"]]) == 3 / 7
    assert phone_error_rate([["a"]], [["a"]]) == 0.0


def test_trained_teacher_loads_learns_and_is_deterministic(synth_corpus, tmp_path):
    from ofactl.teacher import load_teacher
    from ofactl.teacher_train import default_config, train_teacher

    data = synth_corpus / DATA["pr"]
    result = train_teacher(data, tmp_path / "a", steps=40, max_batch_s=8.0)
    assert result.path.name == "teacher.pth" and result.train_speakers == 4
    assert result.last_loss["ctc"] < 0.75 * result.first_loss["ctc"]   # it learns (steps 21-40 vs 1-20)
    assert result.last_loss["speaker"] < result.first_loss["speaker"]
    assert 0.0 <= result.dev_per <= 1.5 and result.dev_utterances > 0
    phones = (tmp_path / "a" / "phones.txt").read_text(encoding="utf-8").split()
    assert phones == result.phones and len(phones) > 20
    log = (tmp_path / "a" / "train_log.csv").read_text().splitlines()
    assert log[0] == "step,ctc,speaker,lr" and len(log) == 41

    teacher = load_teacher(result.path)                   # the CTC head (aux) is dropped on loading
    assert teacher.config == default_config()
    state = torch.load(result.path, weights_only=True)
    assert state["aux.weight"].shape == (len(phones) + 1, teacher.config.embed_dim)
    assert not any(k.startswith("speaker.") for k in state)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, state[key]), key
    out = teacher(torch.randn(2, 16000), torch.tensor([16000, 9000]))
    assert len(out.hidden_states) == teacher.config.num_layers + 1 and out.lengths.tolist() == [49, 27]



def test_teacher_training_is_deterministic_per_seed(synth_corpus, tmp_path):
    from ofactl.teacher_train import train_teacher

    data = synth_corpus / DATA["pr"]
    kwargs = dict(steps=2, max_batch_s=6.0, dev_split=None)
    a, b = train_teacher(data, tmp_path / "a", **kwargs), train_teacher(data, tmp_path / "b", **kwargs)
    assert _digest(a.path) == _digest(b.path)
    c = train_teacher(data, tmp_path / "c", seed=1, **kwargs)
    assert _digest(c.path) != _digest(a.path)


def test_teacher_needs_phone_labels(synth_corpus, tmp_path):
    from ofactl.teacher_train import train_teacher

    with pytest.raises(OfactlError, match="no utterances with phone labels"):
        train_teacher(synth_corpus / DATA["sid"], tmp_path / "t", split="train", steps=1)
    result = runner.invoke(app, ["teacher", "train", str(synth_corpus / DATA["sid"]), "--out", str(tmp_path / "t"),
                                 "--split", "train", "--steps", "1", "--quiet"])
    assert result.exit_code != 0 and isinstance(result.exception, OfactlError)
    assert not (tmp_path / "t" / "teacher.pth").exists()


def test_cli_teacher_train_and_info(synth_corpus, tmp_path):
    out = tmp_path / "teacher"
    result = runner.invoke(app, ["teacher", "train", str(synth_corpus / DATA["pr"]), "--out", str(out),
                                 "--steps", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 steps" in result.output and "dev PER" in result.output
    info = runner.invoke(app, ["teacher", "info", str(out / "teacher.pth"), "--json"])
    assert info.exit_code == 0, info.output
    data = json.loads(info.output)
    assert data["num_layers"] == 6 and data["layer_norm_first"] is True and data["hop_ms"] == 20.0
    assert data["training"]["steps"] == 3
    tiny = runner.invoke(app, ["teacher", "info", "tiny-random"])
    assert tiny.exit_code == 0 and "embed_dim" in tiny.output
