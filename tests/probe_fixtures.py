"""Session fixtures shared by the probe, sweep and adaptive-lambda tests: a synthetic corpus and a
calibrated tiny random model (built once per test process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ofactl import load_model

# 6 speakers: 6 SID test utterances (chance 1/6), one KS test speaker (14 clips, 12 classes)
SPEAKERS, UTTERANCES = 6, 240


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from ofactl.testing.synth import synthesize_corpus

    # one folder per test process, shared by every module that uses the fixture
    out = tmp_path_factory.getbasetemp() / "probe_synth"
    synthesize_corpus(out, speakers=SPEAKERS, utterances=UTTERANCES, seed=0)  # returns early when done
    return out


@pytest.fixture(scope="session")
def calibrated_model(synth_corpus, tmp_path_factory) -> Path:
    """A tiny random student, calibrated on the synthetic LibriSpeech train split."""
    from ofactl.checkpoint import save_model
    from ofactl.calibrate import measure_calibration
    from ofactl.model import OFAStudent, StudentConfig

    directory = tmp_path_factory.getbasetemp() / "probe_model" / "tiny"
    if (directory / "calibration.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    directory = save_model(directory, OFAStudent(StudentConfig.preset("tiny")))
    measure_calibration(load_model(directory), synth_corpus / "LibriSpeech", split="train-clean-100", num_workers=0)
    return directory


DATA = {"ks": "speech_commands_v0.01", "sid": "VoxCeleb1", "ic": "fluent_speech_commands_dataset",
        "pr": "LibriSpeech", "asr": "LibriSpeech", "qbe": "quesst14Database", "sf": "SNIPS"}
