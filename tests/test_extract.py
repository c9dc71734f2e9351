"""Calibrate and extract: target periods, exact counts, long audio, crashes, bad input, torchrun shards, Python API."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

import ofactl
from ofactl.calibrate import Calibration
from ofactl.period import exact_target_frames
from ofactl.checkpoint import save_model
from ofactl.errors import OfactlError
from ofactl.calibrate import measure_calibration
from ofactl.extract import extract_features
from ofactl.features import read, read_attrs
from ofactl.inference import OFAModel, load_model
from ofactl.model import OFAStudent, StudentConfig


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from ofactl.testing.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, speakers=4, utterances=36, seed=2)
    return out / "LibriSpeech"


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny model pretrained briefly on the synthetic corpus, calibrated on its train split."""
    from ofactl.pretrain_config import load_pretrain_config
    from ofactl.train import pretrain

    root = tmp_path_factory.mktemp("model")
    cfg = root / "c.yaml"
    cfg.write_text(textwrap.dedent(f"""
        out: {root / 'm'}
        student: tiny
        teacher: tiny-random
        steps: 15
        save_every: 15
        data: {{path: {corpus}, crop_s: 2.0, max_batch_s: 12.0, num_workers: 0}}
    """))
    cwd = os.getcwd()
    os.chdir(root)  # pretrain records the workspace default in ./ofactl.toml
    try:
        pretrain(load_pretrain_config(cfg))
    finally:
        os.chdir(cwd)
    measure_calibration(load_model(root / "m"), corpus, split="train-clean-100", num_workers=0)
    return root / "m"


def held_out(corpus: Path, tmp_path: Path) -> Path:
    """The dev and test utterances (not used for calibration) as a folder of audio."""
    out = tmp_path / "held_out"
    for split in ("dev-clean", "test-clean"):
        for f in (corpus / split).rglob("*.flac"):
            (out / f.name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, out / f.name)
    return out


def contents(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {i: (f, t) for i, f, t in read(path)}


# ----------------------------------------------------------------------------- periods


def test_calibrated_90ms_lands_within_10_percent_on_held_out_utterances(trained, corpus, tmp_path):
    cal = Calibration.load(trained)
    assert cal.min_period_ms < 25 and cal.max_period_ms > 500
    wavs = held_out(corpus, tmp_path)
    result = extract_features(wavs, tmp_path / "f90.h5", model=load_model(trained), period="90ms", num_workers=0)
    assert result.n_utterances == len(list(wavs.iterdir()))
    assert abs(result.measured_period_ms - 90) / 90 < 0.10, result.measured_period_ms
    attrs = read_attrs(tmp_path / "f90.h5")
    assert attrs["target_period_ms"] == 90 and attrs["lambda"] == pytest.approx(cal.lam_for(90.0))
    assert attrs["model_sha256"] == load_model(trained).model_sha256
    for key in ("measured_period_ms", "layer", "ofactl_version", "created_at"):
        assert key in attrs
    with h5py.File(tmp_path / "f90.h5") as f:
        g = f[sorted(f.keys())[0]]
        assert g["features"].dtype == np.float16 and g["features"].shape[1] == 64
        assert g["frame_times_s"].shape == (g["features"].shape[0],)
        assert set(g.attrs) >= {"duration_s", "lambda"}


def test_exact_gives_the_promised_counts(trained, corpus, tmp_path):
    wavs = held_out(corpus, tmp_path)
    for period in (40.0, 160.0):
        out = tmp_path / f"exact{period:g}.h5"
        extract_features(wavs, out, model=load_model(trained), period=f"{period:g}ms", exact=True, num_workers=0)
        assert read_attrs(out)["exact"]
        with h5py.File(out) as f:
            for utt in f:
                duration = float(f[utt].attrs["duration_s"])
                t = int(np.floor((duration * 16000 - 400) / 320) + 1)
                assert f[utt]["features"].shape[0] == exact_target_frames(duration, period, t)


def test_frame_times_are_increasing_and_inside_the_audio(trained, corpus, tmp_path):
    out = tmp_path / "t.h5"
    extract_features(held_out(corpus, tmp_path), out, model=load_model(trained), lam=1.0, num_workers=0)
    with h5py.File(out) as f:
        for utt in f:
            times = f[utt]["frame_times_s"][:]
            assert np.all(np.diff(times) > 0)
            assert times[0] >= 0.0125 - 1e-9 and times[-1] <= f[utt].attrs["duration_s"]


def test_period_errors_name_the_range(trained, corpus, tmp_path):
    with pytest.raises(OfactlError, match="below 20ms"):
        extract_features(corpus, tmp_path / "x.h5", model=load_model(trained), period="10ms")
    with pytest.raises(OfactlError, match="calibrated range"):
        extract_features(corpus, tmp_path / "x.h5", model=load_model(trained), period="30s")
    untrained = tmp_path / "raw"
    save_model(untrained, OFAStudent(StudentConfig.preset("tiny")))
    with pytest.raises(OfactlError, match="calibrate"):
        extract_features(corpus, tmp_path / "x.h5", model=load_model(untrained), period="90ms")


def test_many_lambdas_in_one_pass_equal_separate_runs(trained, corpus, tmp_path):
    """extract_lambdas: the CNN once, each lambda's file identical to extract_features' (which then has nothing
    to do), a file already complete left alone, bad files recorded in every output."""
    from ofactl.extract import extract_lambdas

    wavs = held_out(corpus, tmp_path)
    (wavs / "broken.wav").write_bytes(b"RIFF....not audio")
    lams = {tmp_path / f"many{lam:g}.h5": lam for lam in (0.0, 0.7, 1.5)}
    done = tmp_path / "many0.7.h5"
    extract_features(wavs, done, model=load_model(trained), lam=0.7, num_workers=0)
    stamp = done.stat().st_mtime_ns
    results = extract_lambdas(wavs, lams, model=load_model(trained), num_workers=0)
    assert sorted(r.lam for r in results) == [0.0, 1.5] and done.stat().st_mtime_ns == stamp
    for out, lam in lams.items():
        ref = tmp_path / f"ref{lam:g}.h5"
        extract_features(wavs, ref, model=load_model(trained), lam=lam, num_workers=0)
        want, got = contents(ref), contents(out)
        assert sorted(got) == sorted(want) and len(got) == len(list(wavs.iterdir())) - 1
        for utt in want:
            np.testing.assert_array_equal(got[utt][0], want[utt][0])
            np.testing.assert_array_equal(got[utt][1], want[utt][1])
        assert [s["id"] for s in read_attrs(out)["skipped"]] == ["broken"]
        again = extract_features(wavs, out, model=load_model(trained), lam=lam, num_workers=0)
        assert again.warnings and "already complete" in again.warnings[0]


def test_uniform_pooling_inside_the_model(trained, corpus, tmp_path):
    """Fixed-length pooling: floor(T * 20 / P) frames (at least one), the CIF at equal weights; at 20 ms it is the
    model at lambda 0; the one-pass and the single extraction agree; the file says pooling=uniform."""
    from ofactl.extract import Uniform, extract_lambdas

    m = load_model(trained)
    torch.manual_seed(0)
    audio = torch.randn(3, 24000) * 0.1
    lengths = torch.tensor([24000, 16000, 1000])
    front = m.encode_front(audio, lengths)
    frames = front[1].tolist()
    for period in (40.0, 90.0, 300.0):
        out = m.encode_back(front, lengths, layer="last", uniform_period_ms=period)
        assert [e.features.shape[0] for e in out] == [max(1, int(t * 20.0 / period + 1e-4)) for t in frames]
    same = m.encode_back(front, lengths, uniform_period_ms=20.0)
    plain = m.encode_back(front, lengths, lam=0.0)
    for a, b in zip(same, plain):
        torch.testing.assert_close(a.features, b.features)
    with pytest.raises(OfactlError, match="below 20ms"):
        m.encode_back(front, lengths, uniform_period_ms=10.0)

    wavs = held_out(corpus, tmp_path)
    single = tmp_path / "u_single.h5"
    extract_features(wavs, single, model=load_model(trained), period="90ms", pooling="uniform", num_workers=0)
    extract_lambdas(wavs, {tmp_path / "u_many.h5": Uniform(90.0), tmp_path / "c_many.h5": 1.0}, model=load_model(trained),
                    num_workers=0)
    want, got = contents(single), contents(tmp_path / "u_many.h5")
    assert sorted(got) == sorted(want)
    for utt in want:
        np.testing.assert_array_equal(got[utt][0], want[utt][0])
    attrs = read_attrs(single)
    assert attrs["pooling"] == "uniform" and attrs["target_period_ms"] == 90.0
    assert 80 < attrs["measured_period_ms"] < 100
    with pytest.raises(OfactlError, match="needs --period"):
        extract_features(wavs, tmp_path / "x.h5", model=load_model(trained), lam=1.0, pooling="uniform")


# ----------------------------------------------------------------------------- long audio


def test_long_audio_in_chunks_matches_one_pass():
    torch.manual_seed(0)
    m = OFAModel(OFAStudent(StudentConfig.preset("tiny")).eval(), Path("."), "x", None, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(60 * 16000, generator=g) * 0.1 + torch.sin(torch.arange(60 * 16000) / 40.0) * 0.3
    feats, frames, alpha = m.student.front(wave[None], None)
    feats_c, alpha_c = m.front_long(wave, chunk_s=7.3)
    torch.testing.assert_close(feats_c, feats, rtol=1e-4, atol=1e-4)  # the 20 ms part is exact
    torch.testing.assert_close(alpha_c, alpha, rtol=1e-4, atol=1e-5)
    for lam in (0.0, 1.0, 1.7):
        one = m.encode_batch(wave[None], torch.tensor([wave.shape[0]]), lam)[0]
        chunked = m.encode_long(wave, lam, chunk_s=7.3, context_s=2.0)
        assert chunked.features.shape == one.features.shape
        torch.testing.assert_close(chunked.frame_times_s, one.frame_times_s, rtol=0, atol=1e-4)
        rel = (chunked.features - one.features).norm() / one.features.norm()
        assert rel < 0.05, float(rel)
    exact_one = m.encode_batch(wave[None], torch.tensor([wave.shape[0]]), None, exact_period_ms=90.0)[0]
    exact_chunked = m.encode_long(wave, None, exact_period_ms=90.0, chunk_s=7.3)
    assert exact_one.features.shape[0] == exact_chunked.features.shape[0] == round(60_000 / 90)


def test_long_files_go_through_the_chunked_path(tmp_path):
    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "w"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    sf.write(wavs / "long.wav", (0.1 * rng.standard_normal(16000 * 25)).astype(np.float32), 16000)
    sf.write(wavs / "short.wav", (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32), 16000)
    res = extract_features(wavs, tmp_path / "o.h5", model=load_model(model_dir), lam=0.0, chunk_s=10.0, num_workers=0)
    got = contents(tmp_path / "o.h5")
    assert res.n_utterances == 2
    assert got["long"][0].shape[0] == (16000 * 25 - 400) // 320 + 1  # lam = 0 keeps every 20 ms frame


# ----------------------------------------------------------------------------- robustness


def make_messy(tmp_path: Path) -> Path:
    wavs = tmp_path / "messy"
    wavs.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        sf.write(wavs / f"ok{i}.wav", (0.1 * rng.standard_normal(8000 + 4000 * i)).astype(np.float32), 16000)
    sf.write(wavs / "stereo8k.wav", (0.1 * rng.standard_normal((12000, 2))).astype(np.float32), 8000)
    (wavs / "empty.wav").write_bytes(b"")
    (wavs / "notes.wav").write_text("not audio at all\n")
    (wavs / "garbage.flac").write_bytes(os.urandom(3000))
    sf.write(wavs / "nan.wav", np.array([0.1, np.nan] * 4000, dtype=np.float32), 16000, subtype="FLOAT")
    return wavs


def test_bad_files_are_skipped_and_recorded(tmp_path):
    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = make_messy(tmp_path)
    res = extract_features(wavs, tmp_path / "o.h5", model=load_model(model_dir), lam=1.0, num_workers=1)
    assert res.n_utterances == 7
    skipped = {s.id: f"{s.reason}: {s.detail}" for s in res.skipped}
    assert set(skipped) == {"empty", "notes", "garbage", "nan"}
    assert skipped["notes"].startswith("not_audio") and skipped["nan"].startswith("non_finite")
    attrs = read_attrs(tmp_path / "o.h5")
    assert {s["id"] for s in attrs["skipped"]} == set(skipped)
    # the CLI: exit 0 with a warning, non-zero with --strict, never a traceback
    env = {**os.environ, "OFACTL_MODEL": str(model_dir)}
    ok = subprocess.run([sys.executable, "-m", "ofactl", "extract", "--lambda", "1.0", str(wavs),
                         str(tmp_path / "c.h5"), "--quiet", "--workers", "0"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "4 file(s) skipped" in ok.stderr and "Traceback" not in ok.stderr
    strict = subprocess.run([sys.executable, "-m", "ofactl", "extract", "--lambda", "1.0", str(wavs),
                             str(tmp_path / "s.h5"), "--quiet", "--strict", "--workers", "0"],
                            capture_output=True, text=True, env=env)
    assert strict.returncode != 0 and "Traceback" not in strict.stderr


def test_kill9_then_rerun_gives_the_same_file(tmp_path):
    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "w"
    wavs.mkdir()
    rng = np.random.default_rng(5)
    for i in range(120):
        sf.write(wavs / f"u{i:03d}.wav", (0.1 * rng.standard_normal(16000 + 400 * i)).astype(np.float32), 16000)
    ref = tmp_path / "ref.h5"
    # the command line's default precision is auto (bf16 on a CPU with AVX512-BF16 or AMX): the same here
    extract_features(wavs, ref, model=load_model(model_dir), lam=1.2, max_batch_s=4.0, num_workers=0, part_mb=0)
    want = contents(ref)

    out = tmp_path / "out.h5"
    parts = tmp_path / "out.h5.parts"
    cmd = [sys.executable, "-m", "ofactl", "extract", "--lambda", "1.2", str(wavs), str(out), "--model",
           str(model_dir), "--batch-seconds", "4", "--part-mb", "0", "--workers", "0", "--quiet"]
    rng_kill = random.Random(1)
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = len(list(parts.rglob("*.h5"))) if parts.exists() else 0
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:  # wait until this run wrote parts of its own
            if parts.exists() and len(list(parts.rglob("*.h5"))) > before + attempt:
                break
            time.sleep(0.02)
        time.sleep(rng_kill.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        if out.exists():  # a file that exists is always complete
            assert read_attrs(out)["complete"]
            break
    assert kills >= 2, "the runs finished before they could be killed"
    final = subprocess.run(cmd, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    got = contents(out)
    assert sorted(got) == sorted(want)
    for utt in want:
        np.testing.assert_array_equal(got[utt][0], want[utt][0])
        np.testing.assert_array_equal(got[utt][1], want[utt][1])
    again = subprocess.run(cmd, capture_output=True, text=True)  # the same command once more: nothing to do
    assert again.returncode == 0 and "already complete" in again.stderr


def test_torchrun_shards_equal_one_process(tmp_path):
    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "w"
    wavs.mkdir()
    rng = np.random.default_rng(6)
    for i in range(9):
        sf.write(wavs / f"u{i}.wav", (0.1 * rng.standard_normal(12000 + 1600 * i)).astype(np.float32), 16000)
    (wavs / "bad.wav").write_text("text")
    one = tmp_path / "one.h5"
    extract_features(wavs, one, model=load_model(model_dir), lam=0.7, num_workers=0)
    two = tmp_path / "two.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(30500 + os.getpid() % 1000), "-m", "ofactl", "extract",
                           "--lambda", "0.7", str(wavs), str(two), "--model", str(model_dir), "--quiet",
                           "--workers", "0", "--precision", "fp32"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = contents(one), contents(two)
    assert sorted(a) == sorted(b) and len(a) == 9
    for utt in a:
        np.testing.assert_allclose(a[utt][0].astype(np.float32), b[utt][0].astype(np.float32), atol=2e-3)
    assert read_attrs(two)["skipped"][0]["id"] == "bad"
    assert read_attrs(two)["measured_period_ms"] == pytest.approx(read_attrs(one)["measured_period_ms"])


# ----------------------------------------------------------------------------- Python API


def test_python_api(trained, corpus):
    model = ofactl.load_model(trained)
    wav = next(corpus.rglob("*.flac"))
    wave, sr = sf.read(wav, dtype="float32")
    at_90 = model.extract(torch.from_numpy(wave), sr, period="90ms")
    at_lam = model.extract(torch.from_numpy(wave), sr, lam=at_90.lam)
    assert torch.equal(at_90.features, at_lam.features)
    assert at_90.features.shape[0] == at_90.frame_times_s.shape[0]
    exact = model.extract(torch.from_numpy(wave), sr, period="200ms", exact=True)
    assert exact.features.shape[0] == max(1, round(len(wave) / sr / 0.2))
    # resampled input: 8 kHz stereo gives about the same number of frames
    import torchaudio.functional as AF

    wave8 = AF.resample(torch.from_numpy(wave), 16000, 8000)
    stereo = torch.stack([wave8, wave8])
    low = model.extract(stereo, 8000, lam=0.0)
    assert abs(low.features.shape[0] - model.extract(torch.from_numpy(wave), sr, lam=0.0).features.shape[0]) <= 1
    all_layers = model.extract(torch.from_numpy(wave), sr, lam=1.0, layer="all")
    assert all_layers.features.shape[0] == 3  # transformer input + 2 layers


def test_calibrate_cli_reports_bad_files_and_goes_on(tmp_path):
    from typer.testing import CliRunner

    from ofactl.cli import app

    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = make_messy(tmp_path)
    result = CliRunner().invoke(app, ["calibrate", str(wavs), "--model", str(model_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "4 file(s) left out" in result.output
    for name in ("empty.wav", "notes.wav", "garbage.flac", "nan.wav"):
        assert name in result.output
    cal = Calibration.load(model_dir)
    assert cal.n_utterances == 7


@pytest.mark.parametrize("window", ["merge:marked", "merge:replaced"])
def test_a_kill_in_the_merge_s_last_windows_then_the_same_command_exits_0_and_leaves_no_parts(tmp_path, window):
    """Killed after the merge's final mark (before the rename) or after the rename (before the clean-up): the
    same command finishes the file, exits 0, and no parts folder is left behind (OFACTL_FAULT kills there)."""
    from ofactl.faults import ENV

    model_dir, wavs = _tiny_corpus(tmp_path)
    out = tmp_path / "out.h5"
    cmd = [sys.executable, "-m", "ofactl", "extract", "--lambda", "1.0", str(wavs), str(out), "--model",
           str(model_dir), "--workers", "0", "--quiet"]
    killed = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, ENV: f"features-{window}"})
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "out.h5.parts").exists()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert read_attrs(out)["complete"] and read_attrs(out)["n_utterances"] == 6
    assert not (tmp_path / "out.h5.parts").exists() and not (tmp_path / "out.h5.tmp").exists()


@pytest.mark.parametrize("errno_, words", [(30, "Read-only file system"), (13, "Permission denied")])
def test_a_read_only_or_forbidden_output_folder_is_one_line(tmp_path, monkeypatch, capsys, errno_, words):
    """As root a chmod does not stop writes, so the folder's refusal is injected where the writer creates its
    parts folder: the CLI says what and where in one line (it said `internal error: OSError`)."""
    import pathlib

    from ofactl.cli import main

    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "w"
    wavs.mkdir()
    sf.write(wavs / "a.wav", np.zeros(8000, dtype=np.float32), 16000)
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    real_mkdir = pathlib.Path.mkdir

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(out_dir)):
            raise OSError(errno_, os.strerror(errno_), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    with pytest.raises(SystemExit) as info:
        main(["extract", "--lambda", "1.0", str(wavs), str(out_dir / "out.h5"), "--model", str(model_dir),
              "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "internal error" not in err
    assert f"cannot write in {out_dir}" in err and words in err and err.count("error:") == 1


def test_extract_takes_a_single_audio_file(tmp_path):
    """`ofactl extract --lambda 1 utt.flac out.h5`: one file is a corpus of one utterance (it was refused with a
    hint listing every layout)."""
    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    utt = tmp_path / "utt.flac"
    sf.write(utt, (0.1 * np.random.default_rng(3).standard_normal(24000)).astype(np.float32), 16000)
    out = tmp_path / "out.h5"
    proc = subprocess.run([sys.executable, "-m", "ofactl", "extract", "--lambda", "1.0", str(utt), str(out),
                           "--model", str(model_dir), "--workers", "0", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = contents(out)
    assert list(got) == ["utt"] and read_attrs(out)["n_utterances"] == 1


def _tiny_corpus(tmp_path):
    model_dir = tmp_path / "m"
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "w"
    wavs.mkdir()
    rng = np.random.default_rng(11)
    for i in range(6):
        sf.write(wavs / f"u{i}.wav", (0.1 * rng.standard_normal(8000 + 800 * i)).astype(np.float32), 16000)
    return model_dir, wavs


@pytest.mark.parametrize("where", ["part", "merge"])
def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path, monkeypatch, capsys, where):
    """ENOSPC injected while a part is written, or a disk too full for the merge: one line (it was a segfault
    with dozens of h5py tracebacks), exit 2, the parts already written kept; with space again the same command
    finishes the file."""
    import builtins
    import errno as errno_mod
    from collections import namedtuple

    from ofactl.cli import main
    from ofactl.features import merging, writer

    model_dir, wavs = _tiny_corpus(tmp_path)
    out = tmp_path / "out.h5"
    argv = ["extract", "--lambda", "1.0", str(wavs), str(out), "--model", str(model_dir), "--workers", "0",
            "--part-mb", "0", "--batch-seconds", "1", "--quiet"]
    real_open, writes = builtins.open, []
    if where == "part":
        def full_open(file, mode="r", *args, **kwargs):
            if "w" in mode and str(file).endswith(".h5.tmp") and ".parts" in str(file):
                writes.append(file)
                if len(writes) > 2:  # two parts fit, the third does not
                    raise OSError(errno_mod.ENOSPC, "No space left on device", str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(writer, "open", full_open, raising=False)  # where the parts are written
    else:
        Usage = namedtuple("Usage", "total used free")
        monkeypatch.setattr(merging.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("error:") == 1 and "no space left on device" in err, err
    assert "Traceback" not in err and "re-run the same command" in err
    kept = list((tmp_path / "out.h5.parts").rglob("0*.h5"))
    assert len(kept) == (2 if where == "part" else 6) and not out.exists()
    monkeypatch.undo()
    again = subprocess.run([sys.executable, "-m", "ofactl", *argv], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert read_attrs(out)["n_utterances"] == 6 and not (tmp_path / "out.h5.parts").exists()


def test_a_full_disk_on_a_real_tmpfs_is_one_line(tmp_path):
    """The same on a 400 kB tmpfs, where the machine allows mounting one (root: CI does)."""
    import shutil as sh

    if os.geteuid() != 0 or sh.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("tmpfs cannot be mounted here")
    try:
        model_dir, wavs = _tiny_corpus(tmp_path)
        big = wavs / "big.wav"
        sf.write(big, (0.1 * np.random.default_rng(1).standard_normal(16000 * 60)).astype(np.float32), 16000)
        proc = subprocess.run([sys.executable, "-m", "ofactl", "extract", "--lambda", "0.3", str(wavs),
                               str(mnt / "out.h5"), "--model", str(model_dir), "--workers", "0", "--quiet"],
                              capture_output=True, text=True)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
        assert proc.stderr.count("error:") == 1 and "no space left on device" in proc.stderr, proc.stderr[-2000:]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_all_silent_files_are_extracted_with_one_warning(tmp_path):
    """Issue 17 #9: an all-silent file passed calibrate and extract without a word. It is still measured and
    written (like any utterance), but both commands name it, on the batched and on the long-file path."""
    from typer.testing import CliRunner

    from ofactl.cli import app

    model_dir, wavs = _tiny_corpus(tmp_path)
    sf.write(wavs / "hush.wav", np.zeros(9000, dtype=np.float32), 16000)
    sf.write(wavs / "faint.wav", np.full(9000, 5e-5, dtype=np.float32), 16000)  # below the 1e-4 threshold
    res = extract_features(wavs, tmp_path / "o.h5", model=load_model(model_dir), lam=1.0, num_workers=0)
    assert res.n_utterances == 8
    (line,) = [w for w in res.warnings if "silent" in w]
    assert line.startswith("2 of 8 utterance(s) are all silent (no sample above 0.0001): faint, hush;")
    long = extract_features(wavs, tmp_path / "l.h5", model=load_model(model_dir), lam=1.0, num_workers=0, chunk_s=0.3)
    assert any(w.startswith("2 of 8 utterance(s) are all silent") for w in long.warnings)  # every file is "long"
    loud = tmp_path / "loud"
    shutil.copytree(wavs, loud)
    (loud / "hush.wav").unlink()
    (loud / "faint.wav").unlink()
    assert not any("silent" in w for w in extract_features(loud, tmp_path / "q.h5", model=load_model(model_dir), lam=1.0,
                                                          num_workers=0).warnings)
    result = CliRunner().invoke(app, ["calibrate", str(wavs), "--model", str(model_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning: 2 of 8 utterance(s) are all silent (no sample above 0.0001): faint, hush;" in result.output
    result = CliRunner().invoke(app, ["extract", "--lambda", "1", str(wavs), str(tmp_path / "c.h5"),
                                      "--model", str(model_dir), "--quiet", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "warning: 2 of 8 utterance(s) are all silent" in result.output
