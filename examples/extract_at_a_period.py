"""Calibrate a model, then extract features at 90 ms: the Python API end to end.

Uses a randomly initialised tiny student and a folder of generated audio so
it runs anywhere in seconds; with a pretrained model directory and real
speech the calls are the same.

Run: python examples/extract_at_a_period.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import ofactl
from ofactl.checkpoint import save_model
from ofactl.calibrate import measure_calibration
from ofactl.extract import extract_features
from ofactl.features import read, read_attrs
from ofactl.model import OFAStudent, StudentConfig


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
        wavs = tmp / "wavs"
        wavs.mkdir()
        for i in range(12):  # 1-4 s of amplitude-modulated noise, 16 kHz
            n = int(16000 * rng.uniform(1.0, 4.0))
            envelope = 0.5 + 0.5 * np.sin(np.arange(n) / 16000 * 2 * np.pi * rng.uniform(2, 6))
            sf.write(wavs / f"utt{i:02d}.wav", (0.1 * envelope * rng.standard_normal(n)).astype(np.float32), 16000)

        cal = measure_calibration(ofactl.load_model(model_dir), wavs, num_workers=0).calibration
        print(f"calibrated range {cal.range_text()}; 90 ms needs lambda {cal.lam_for(90.0):.3f}")

        out = tmp / "feats-90ms.h5"
        result = extract_features(wavs, out, model=ofactl.load_model(model_dir), period="90ms", num_workers=0)
        print(f"{result.n_utterances} utterances, measured period {result.measured_period_ms:.1f} ms")
        for utt_id, feats, times in read(out):
            print(f"  {utt_id}: features {tuple(feats.shape)} {feats.dtype}, first frame at {times[0]:.3f} s")
            break
        print(f"file attributes: layer {read_attrs(out)['layer']}, lambda {read_attrs(out)['lambda']:.3f}")

        model = ofactl.load_model(model_dir)
        wave, sr = sf.read(wavs / "utt00.wav", dtype="float32")
        exact = model.extract(torch.from_numpy(wave), sr, period="90ms", exact=True)
        print(f"exact: {len(wave) / sr:.2f} s -> {exact.features.shape[0]} frames "
              f"(round({len(wave) / sr:.2f} / 0.09) = {round(len(wave) / sr / 0.09)}) at lambda {exact.lam:.3f}")


if __name__ == "__main__":
    main()
