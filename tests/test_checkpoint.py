"""Model directories: save -> load round trip, atomic writes, and one-line errors for bad files."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from ofactl.checkpoint import (
    CALIBRATION_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    KIND,
    MODEL_FILE,
    describe_model,
    load_student,
    read_checkpoint,
    save_model,
    unwrap_state_dict,
)
from ofactl.cli import main
from ofactl.errors import OfactlError
from ofactl.model import OFAStudent, StudentConfig


@pytest.fixture()
def tiny() -> OFAStudent:
    torch.manual_seed(0)
    return OFAStudent(StudentConfig.preset("tiny")).eval()


@pytest.fixture()
def saved(tmp_path: Path, tiny: OFAStudent) -> Path:
    return save_model(tmp_path / "model", tiny, training={"step": 1000, "lambda_max": 2.0, "teacher": {"path": Path("/ckpt/hubert.pt")}})


def _audio() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(2, 8000, generator=generator)
    return audio, torch.tensor([8000, 5000])


# ----------------------------------------------------------------------------- round trip


def test_round_trip_gives_identical_weights_and_outputs(saved: Path, tiny: OFAStudent) -> None:
    loaded = load_student(saved)
    assert not loaded.training
    assert loaded.config == tiny.config
    original, restored = tiny.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    audio, lengths = _audio()
    with torch.no_grad():
        for lam in (0.0, 1.5):
            a = tiny(audio, lengths, lam=lam)
            b = loaded(audio, lengths, lam=lam)
            assert torch.equal(a.lengths, b.lengths)
            assert torch.equal(a.hidden_states[-1], b.hidden_states[-1])
            assert torch.equal(a.predictions, b.predictions)


def test_saved_files_and_metadata(saved: Path, tiny: OFAStudent) -> None:
    assert sorted(os.listdir(saved)) == [CONFIG_FILE, MODEL_FILE]  # no temporary files left
    assert yaml.safe_load((saved / CONFIG_FILE).read_text()) == tiny.config.to_dict()
    ckpt = read_checkpoint(saved / MODEL_FILE)
    assert ckpt.path == saved / MODEL_FILE and ckpt.directory == saved
    assert ckpt.format_version == FORMAT_VERSION
    assert StudentConfig.from_dict(ckpt.config) == tiny.config
    assert ckpt.training == {"step": 1000, "lambda_max": 2.0, "teacher": {"path": "/ckpt/hubert.pt"}}
    assert {"ofactl_version", "torch_version", "python_version", "platform", "hostname", "created_at"} <= set(ckpt.env)
    created = dt.datetime.fromisoformat(ckpt.env["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert ckpt.calibration_file is None
    raw = torch.load(saved / MODEL_FILE, map_location="cpu", weights_only=True)
    assert raw["kind"] == KIND and set(raw) == {"format_version", "kind", "config", "state_dict", "training", "env"}


def test_loaded_model_carries_checkpoint_without_weights(saved: Path) -> None:
    loaded = load_student(saved)
    assert loaded.checkpoint.state_dict == {}
    assert loaded.checkpoint.training["step"] == 1000


def test_wrappers_are_unwrapped(tmp_path: Path, tiny: OFAStudent) -> None:
    wrapped = torch.compile(nn.DataParallel(tiny))  # keys would be "_orig_mod.module.*"
    directory = save_model(tmp_path / "wrapped", wrapped)
    keys = set(read_checkpoint(directory).state_dict)
    assert keys == set(tiny.state_dict())
    load_student(directory)


def test_unwrap_state_dict() -> None:
    t = torch.zeros(1)
    assert unwrap_state_dict({"module._orig_mod.a.b": t, "module.c": t}) == {"a.b": t, "c": t}
    assert unwrap_state_dict({"encoder._orig_mod.x": t}) == {"encoder.x": t}
    # "module" is only a wrapper prefix when every key has it.
    assert set(unwrap_state_dict({"module.a": t, "b": t})) == {"module.a", "b"}
    with pytest.raises(ValueError, match="collide"):
        unwrap_state_dict({"_orig_mod.a": t, "a": t})


def test_training_must_be_plain_data(tmp_path: Path, tiny: OFAStudent) -> None:
    with pytest.raises(TypeError, match="training"):
        save_model(tmp_path / "m", tiny, training={"args": argparse.Namespace(lr=1.0)})
    assert not (tmp_path / "m" / MODEL_FILE).exists()


def test_failed_save_keeps_the_previous_checkpoint(saved: Path, tiny: OFAStudent, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (saved / MODEL_FILE).read_bytes()

    def crash(obj: object, f: object) -> None:
        f.write(b"PK\x03\x04 partial")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OfactlError, match="No space left"):
        save_model(saved, tiny, training={"step": 2000})
    assert (saved / MODEL_FILE).read_bytes() == before
    assert sorted(os.listdir(saved)) == [CONFIG_FILE, MODEL_FILE]


# ----------------------------------------------------------------------------- bad files


def _truncated(model_pt: Path, target: Path) -> None:
    data = model_pt.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def _random_bytes(model_pt: Path, target: Path) -> None:
    target.write_bytes(random.Random(0).randbytes(4096))


def _text(model_pt: Path, target: Path) -> None:
    target.write_text("model: distilhubert\nthis is not a checkpoint\n")


def _empty(model_pt: Path, target: Path) -> None:
    target.write_bytes(b"")


def _plain_state_dict(model_pt: Path, target: Path) -> None:
    torch.save(torch.load(model_pt, weights_only=True)["state_dict"], target)


def _future_format(model_pt: Path, target: Path) -> None:
    raw = torch.load(model_pt, weights_only=True)
    raw["format_version"] = 999
    torch.save(raw, target)


def _foreign_dict(model_pt: Path, target: Path) -> None:
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}, "net": {"fc.weight": torch.zeros(2, 2)}}, target)


def _hubert_like(model_pt: Path, target: Path) -> None:
    weights = {"feature_extractor.conv_layers.0.conv.weight": torch.zeros(2), "encoder.transformer.layers.0.attention.k_proj.weight": torch.zeros(2)}
    torch.save(weights, target)


def _pickled_objects(model_pt: Path, target: Path) -> None:
    # fairseq-style: arbitrary objects that must never be unpickled by weights_only loading.
    torch.save({"args": argparse.Namespace(arch="hubert"), "model": {}}, target)


BAD_FILES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "truncated": (_truncated, "truncated"),
    "random bytes": (_random_bytes, "not a PyTorch checkpoint"),
    "text": (_text, "text file"),
    "empty": (_empty, "empty"),
    "plain state dict": (_plain_state_dict, "not an ofactl model"),
    "format 999": (_future_format, "format version 999"),
    "foreign dict": (_foreign_dict, "not an ofactl model"),
    "hubert-like": (_hubert_like, "HuBERT"),
    "pickled objects": (_pickled_objects, "argparse.Namespace"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_one_line_errors(case: str, saved: Path, tmp_path: Path) -> None:
    make, expected = BAD_FILES[case]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    make(saved / MODEL_FILE, bad_dir / MODEL_FILE)
    for path in (bad_dir, bad_dir / MODEL_FILE):
        with pytest.raises(OfactlError) as info:
            read_checkpoint(path)
        assert str(bad_dir / MODEL_FILE) in info.value.message
        assert expected in info.value.message
        assert "\n" not in str(info.value)
    with pytest.raises(OfactlError):
        load_student(bad_dir)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_through_the_cli(case: str, saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OFACTL_DEBUG", raising=False)
    make, _ = BAD_FILES[case]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    make(saved / MODEL_FILE, bad_dir / MODEL_FILE)
    with pytest.raises(SystemExit) as exit_info:
        main(["info", str(bad_dir)])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("error: ") and str(bad_dir / MODEL_FILE) in lines[0]
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines)
    assert "Traceback" not in err


def test_teacher_checkpoints_get_the_teacher_hint(saved: Path, tmp_path: Path) -> None:
    for make in (_hubert_like, _pickled_objects):
        target = tmp_path / "hubert.pt"
        make(saved / MODEL_FILE, target)
        with pytest.raises(OfactlError) as info:
            read_checkpoint(target)
        assert "--teacher" in (info.value.hint or "")


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(OfactlError, match="does not exist"):
        read_checkpoint(tmp_path / "nope")
    with pytest.raises(OfactlError, match="no model.pt"):
        read_checkpoint(tmp_path)


def _edit_checkpoint(directory: Path, edit: Callable[[dict], None]) -> None:
    raw = torch.load(directory / MODEL_FILE, weights_only=True)
    edit(raw)
    torch.save(raw, directory / MODEL_FILE)


def test_weights_that_do_not_match_the_config(saved: Path) -> None:
    _edit_checkpoint(saved, lambda raw: raw["config"].update(num_layers=3))
    with pytest.raises(OfactlError, match=r"do not match the stored config: \d+ missing \(e\.g\. encoder\.transformer\.layers\.2"):
        load_student(saved)


def test_weights_with_other_shapes(saved: Path) -> None:
    _edit_checkpoint(saved, lambda raw: raw["config"].update(ffn_dim=256))
    with pytest.raises(OfactlError, match="with another shape"):
        load_student(saved)


def test_unknown_config_key_names_the_file(saved: Path) -> None:
    _edit_checkpoint(saved, lambda raw: raw["config"].update(colour="blue"))
    with pytest.raises(OfactlError) as info:
        load_student(saved)
    assert str(saved / MODEL_FILE) in info.value.message and "colour" in info.value.message


def test_damaged_checkpoint_fields(saved: Path) -> None:
    _edit_checkpoint(saved, lambda raw: raw.pop("state_dict"))
    with pytest.raises(OfactlError, match="damaged ofactl checkpoint: 'state_dict'"):
        read_checkpoint(saved)


# ----------------------------------------------------------------------------- describe_model


def test_describe_counts_parameters_per_component(tmp_path: Path, tiny: OFAStudent) -> None:
    directory = save_model(tmp_path / "m", tiny)
    info = describe_model(directory)
    parameters = info["parameters"]
    assert parameters["total"] == sum(p.numel() for p in tiny.parameters())
    assert set(parameters["by_component"]) == {"feature_extractor", "alpha_module", "encoder", "heads"}
    assert sum(parameters["by_component"].values()) == parameters["total"]
    assert parameters["by_component"]["alpha_module"] == sum(p.numel() for p in tiny.alpha_module.parameters())
    assert info["training"] == {"trained": False, "status": "untrained (random init)", "state": {}}
    assert info["calibration"]["calibrated"] is False and "ofactl calibrate" in info["calibration"]["status"]
    assert info["model_dir"] == str(directory)
    json.dumps(info)  # plain data only


def test_describe_reads_calibration_generically(saved: Path) -> None:
    table = [{"lambda": i / 10, "period_ms": 20 + i} for i in range(20)]
    (saved / CALIBRATION_FILE).write_text(json.dumps({"lambda_range": [0.0, 1.99], "period_range_ms": [20.0, 960.0], "table": table}))
    calibration = describe_model(saved)["calibration"]
    assert calibration["calibrated"] is True
    assert "lambda_range [0, 1.99]" in calibration["status"] and "period_range_ms [20, 960]" in calibration["status"]
    assert "table" not in calibration["summary"]  # long entries are left out of the summary


def test_describe_survives_a_broken_calibration_file(saved: Path) -> None:
    (saved / CALIBRATION_FILE).write_text("{not json")
    calibration = describe_model(saved)["calibration"]
    assert calibration["calibrated"] is False and "unreadable" in calibration["status"]
