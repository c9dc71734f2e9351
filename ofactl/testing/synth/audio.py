"""Speaking and rendering: espeak-ng, the speaker's colour, noise, and the files written in threads."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

from ofactl.errors import OfactlError
from ofactl.progress import Progress
from ofactl.testing.synth.common import (
    _ESPEAK_VOICE,
    _SNR_DB,
    _STREAM_NOISE,
    PHONES,
    SAMPLE_RATE,
    _Job,
    _Plan,
    _rng,
    _Voice,
)

# --------------------------------------------------------------------------- audio


def _find_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise OfactlError(
            "espeak-ng was not found on PATH; the synthetic corpus is spoken by it",
            hint="install espeak-ng: apt-get install espeak-ng (macOS: brew install espeak-ng)",
        )
    return exe


def _espeak_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as err:
        raise OfactlError(f"cannot run {exe}: {err}", hint="reinstall espeak-ng: apt-get install espeak-ng") from err
    match = re.search(r"text-to-speech:\s*(\S+)", out.stdout)
    return match.group(1) if match else out.stdout.strip()[:40]


def _speak(exe: str, job: _Job, wav_path: Path) -> tuple[np.ndarray, int, list[str]]:
    """Speak ``job.text``; returns (samples float64, sample rate, phones)."""
    import soundfile as sf

    voice = job.voice
    assert voice is not None
    args = [
        exe,
        "-v", f"{_ESPEAK_VOICE}+{voice.variant}",
        "-p", str(job.pitch),
        "-s", str(job.speed),
        "-a", str(voice.amplitude),
        "-g", str(voice.word_gap),
        "-w", str(wav_path),
        "--ipa", "--sep=_",
        job.text,
    ]  # fmt: skip
    try:
        proc = subprocess.run(args, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise OfactlError(f"espeak-ng failed on {job.text!r}: {err}", hint="check the espeak-ng install") from err
    if proc.returncode != 0 or not wav_path.is_file():
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OfactlError(
            f"espeak-ng exited with {proc.returncode} on {job.text!r}: {detail[-1] if detail else 'no output'}",
            hint="check the espeak-ng install: `espeak-ng -v en-us+m1 hello` must work",
        )
    data, sr = sf.read(str(wav_path), dtype="int16", always_2d=False)
    wav_path.unlink()
    phones = []
    for token in proc.stdout.decode("utf-8").replace("_", " ").split():
        phone = token.replace("ˈ", "").replace("ˌ", "")
        if phone:
            if phone not in PHONES:
                raise OfactlError(
                    f"espeak-ng gave the phone {phone!r} for {job.text!r}, which is not in the phone inventory",
                    hint="use espeak-ng 1.51 (apt-get install espeak-ng), whose inventory ofactl.testing.synth.PHONES lists",
                )
            phones.append(phone)
    return data.astype(np.float64) / 32768.0, int(sr), phones


def _colour(x: np.ndarray, sr: int, voice: _Voice) -> np.ndarray:
    """The speaker's fixed spectral colour, then its vocal-tract warp and resampling to 16 kHz."""
    import torch
    import torchaudio.functional as AF

    with torch.no_grad():
        t = torch.from_numpy(x).to(torch.float64).unsqueeze(0)
        t = AF.equalizer_biquad(t, sr, voice.eq_hz, voice.eq_db, voice.eq_q)
        t = torch.cat([t[:, :1], t[:, 1:] - voice.tilt * t[:, :-1]], dim=1)
        # Claiming the audio was recorded at warp * sr and resampling it to 16 kHz scales
        # every frequency (formants and pitch) by warp and durations by 1 / warp.
        src = round(sr * voice.warp / 50.0) * 50
        t = AF.resample(t, src, SAMPLE_RATE)
    return t.squeeze(0).numpy()


def _fit(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``n`` samples: the loudest window of a long clip, or a short one at a random offset."""
    if len(x) >= n:
        energy = np.concatenate([[0.0], np.cumsum(x * x)])
        start = int(np.argmax(energy[n:] - energy[:-n]))
        return x[start : start + n].copy()
    out = np.zeros(n)
    offset = int(rng.integers(0, n - len(x) + 1))
    out[offset : offset + len(x)] = x
    return out


def _speech_power(x: np.ndarray) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest."""
    frame = SAMPLE_RATE // 50
    n = len(x) // frame
    if n == 0:
        return float(np.mean(x * x)) if len(x) else 0.0
    power = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    active = power[power >= power.max() * 1e-3]
    return float(active.mean())


def _noise(kind: str, n: int, rms_db: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = float(rng.choice([50.0, 60.0]))
        x = sum(
            (0.6**h) * np.sin(2 * np.pi * base * (h + 1) * t + rng.uniform(0, 2 * np.pi)) for h in range(6)
        ) + 0.05 * rng.standard_normal(n)
    else:  # pragma: no cover - plan only uses the three kinds
        raise ValueError(kind)
    x = x - x.mean()
    return x * (10 ** (rms_db / 20) / max(float(np.sqrt(np.mean(x * x))), 1e-12))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def _render(job: _Job, exe: str, stage: Path, seed: int) -> tuple[int, list[str]]:
    """Write one audio file; returns (samples written, phones)."""
    import soundfile as sf

    rng = _rng(seed, _STREAM_NOISE, job.index)
    phones: list[str] = []
    if job.noise is not None:
        y = _noise(job.noise.removesuffix("_noise"), int(job.seconds * SAMPLE_RATE), job.noise_rms_db, rng)
    else:
        assert job.voice is not None
        x, sr, phones = _speak(exe, job, stage / ".work" / f"{job.index}.wav")
        y = _colour(x, sr, job.voice)
        if job.fixed_samples is not None:
            y = _fit(y, job.fixed_samples, rng)
        snr_db = rng.uniform(*_SNR_DB)
        y = y + rng.standard_normal(len(y)) * math.sqrt(_speech_power(y) / 10 ** (snr_db / 10))
        level = job.voice.level_db + rng.uniform(-1.0, 1.0)
        y = y * (10 ** (level / 20) / max(float(np.abs(y).max()), 1e-9))
    path = stage / job.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mp3":  # Common Voice's format (libsndfile 1.1+ writes it)
        sf.write(str(path), _to_int16(y), SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III")
    else:
        fmt = "FLAC" if path.suffix == ".flac" else "WAV"
        sf.write(str(path), _to_int16(y), SAMPLE_RATE, subtype="PCM_16", format=fmt)
    return len(y), phones


def _render_all(
    plan: _Plan, exe: str, stage: Path, seed: int, progress: Progress | None, workers: int
) -> list[tuple[int, list[str]]]:
    import torch  # noqa: F401  (imported once here, not concurrently in the workers)
    import torchaudio.functional  # noqa: F401

    (stage / ".work").mkdir()
    total = len(plan.jobs)
    results: list[tuple[int, list[str]] | None] = [None] * total
    if progress is not None:
        progress(0, total, "")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ofactl-synth")
    try:
        futures = {pool.submit(_render, job, exe, stage, seed): job.index for job in plan.jobs}
        pending = set(futures)
        done = 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for fut in finished:
                err = fut.exception()
                if err is not None:
                    raise err
                results[futures[fut]] = fut.result()
                done += 1
            if progress is not None:
                progress(done, total, "")
    finally:  # on an error or Ctrl-C: drop the queued jobs, let the running ones end
        pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(stage / ".work")
    return results  # type: ignore[return-value]
