"""`ofactl data inspect` and `ofactl data synth` through the CLI, including a folder of bad files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layout_fixtures import N_FILES, make_librispeech, make_messy_folder
from ofactl.cli import app
from ofactl.data.inspect import inspect_corpus

runner = CliRunner()


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy_cli")
    return root, make_messy_folder(root)


def test_inspect_reports_every_bad_file_and_goes_on(messy):
    root, expected = messy
    result = runner.invoke(app, ["data", "inspect", str(root), "--json", "--deep"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    found = {Path(p["path"]).name: p["reason"] for p in report["problems"]}
    for name, reason in expected.items():
        assert found[name] == reason
    silent = {n for n, r in found.items() if r == "silent"}
    assert silent == {f"silent_{i}.wav" for i in range(6)}
    assert report["utterances"] == N_FILES - len(expected)
    assert report["sample_rates"] == {"16000": N_FILES - len(expected) - 6, "8000": 6}
    assert any("8000 Hz" in n for n in report["notes"]) and any("2 channels" in n for n in report["notes"])


def test_inspect_table_output_and_no_traceback(messy):
    root, expected = messy
    result = runner.invoke(app, ["data", "inspect", str(root), "--quiet"])
    assert result.exit_code == 0
    assert "layout generic" in result.output and f"problems: {len(expected)}" in result.output
    assert "Traceback" not in result.output


def test_inspect_librispeech_splits_and_labels(tmp_path):
    root = make_librispeech(tmp_path)
    report = inspect_corpus(root)
    assert report.layout == "librispeech"
    assert {s.name for s in report.splits} >= {"train-clean-100"}
    assert report.sequence_labels["text"]["utterances"] == report.utterances


@pytest.mark.parametrize("args", [["data", "inspect", "/no/such/dir"], ["data", "inspect", "."],
                                  ["data", "inspect", ".", "--layout", "nonsense"]])
def test_inspect_bad_arguments_are_one_line(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "ofactl", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[0].startswith("error:")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synth_then_inspect(tmp_path):
    out = tmp_path / "corpus"
    result = runner.invoke(app, ["data", "synth", str(out), "--speakers", "3", "--utterances", "12", "--quiet"])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["data", "synth", str(out), "--speakers", "3", "--utterances", "12", "--quiet"])
    assert "already there" in again.output
    other = runner.invoke(app, ["data", "synth", str(out), "--seed", "5", "--speakers", "3", "--utterances", "12"])
    assert other.exit_code != 0
    for sub, layout in [("LibriSpeech", "librispeech"), ("speech_commands_v0.01", "speech_commands"),
                        ("VoxCeleb1", "voxceleb1"), ("fluent_speech_commands_dataset", "fluent")]:
        report = json.loads(runner.invoke(app, ["data", "inspect", str(out / sub), "--json"]).output)
        assert report["layout"] == layout and report["utterances"] > 0
        assert report["problem_counts"] == {}, report["problems"][:3]


def test_the_id_from_hint_names_an_option_that_exists(tmp_path):
    """Repeated file stems: `data inspect` and `calibrate` refuse with a hint naming --id-from relpath, and both
    commands have that option (they did not), which makes the folder readable."""
    import numpy as np
    import soundfile as sf

    from ofactl.checkpoint import save_model
    from ofactl.model import OFAStudent, StudentConfig

    for spk in ("a", "b"):
        (tmp_path / "w" / spk).mkdir(parents=True)
        for i in range(2):
            sf.write(tmp_path / "w" / spk / f"utt{i}.wav", 0.1 * np.random.default_rng(i).standard_normal(8000), 16000)
    refused = runner.invoke(app, ["data", "inspect", str(tmp_path / "w")])
    assert refused.exit_code != 0 and "--id-from relpath" in refused.exception.hint
    ok = runner.invoke(app, ["data", "inspect", str(tmp_path / "w"), "--id-from", "relpath", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["splits"][0]["utterances"] == 4
    model = save_model(tmp_path / "m", OFAStudent(StudentConfig.preset("tiny")))
    cal = runner.invoke(app, ["calibrate", str(tmp_path / "w"), "--model", str(model), "--id-from", "relpath",
                              "--quiet"])
    assert cal.exit_code == 0, (cal.output, cal.exception)
    assert (tmp_path / "m" / "calibration.json").is_file()


def test_problem_paths_are_never_cut_in_a_narrow_pipe(tmp_path):
    """In a log or a pipe (80 columns) the problems table showed `.../badi…`: paths are relative to the corpus
    root and wrapped, never ellipsised."""
    from rich.console import Console

    from ofactl.cli.inspect_report import render

    root = tmp_path / "corpus"
    deep = root / "a_rather_long_folder_name_for_speaker_one" / "and_a_long_chapter_folder_name_too"
    deep.mkdir(parents=True)
    bad = deep / "badly_truncated_recording_with_a_long_name_0001.wav"
    bad.write_bytes(b"RIFF....WAVEfmt junk")
    import soundfile as sf
    import numpy as np

    sf.write(root / "fine.wav", np.zeros(8000, dtype=np.float32), 16000)
    report = inspect_corpus(root)
    console = Console(width=80, record=True, force_terminal=False)
    render(report, console)
    text = console.export_text()
    assert "…" not in text
    # the file column's wrapped pieces, joined back
    column = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.count("│") >= 3)
    assert bad.relative_to(root).as_posix() in column
