"""The only place in ofactl that reads audio.

Everything goes through soundfile (libsndfile: wav, flac, ogg/vorbis, opus,
mp3 where the bundled libsndfile supports it) and comes out as a float32 mono
waveform at 16 kHz: integer PCM is scaled to [-1, 1), channels are averaged,
other sample rates are resampled with ``torchaudio.functional.resample``.

Each bad file raises :class:`AudioError` with a ``reason`` code (``missing``,
``unreadable``, ``not_audio``, ``empty``, ``non_finite``), one line naming the
file, so that long jobs can record the failure and go on.
"""

from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ofactl.data.problems import AUDIO_REASONS, Problem
from ofactl.errors import OfactlError
from ofactl.period import SAMPLE_RATE

#: Extensions treated as audio when scanning directories.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif")
#: Peak amplitude under which a file counts as silent (a warning, not an error).
SILENCE_PEAK = 1e-4

REASONS = AUDIO_REASONS


class AudioError(OfactlError):
    """A file that cannot be used as audio.  ``reason`` is one of :data:`REASONS`."""

    def __init__(self, path: str | Path, reason: str, detail: str, hint: str | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown audio error reason {reason!r}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{path}: {detail}", hint=hint)

    def problem(self, utt_id: str | None = None) -> Problem:
        """This error as the record a job keeps (:class:`ofactl.data.problems.Problem`)."""
        return Problem(self.path, self.reason, self.detail, utt_id)

    def __reduce__(self):  # picklable across DataLoader workers
        return (self.__class__, (self.path, self.reason, self.detail, self.hint))


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (nothing decoded)."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _looks_like_text(path: Path) -> bool:
    try:
        head = path.read_bytes()[:2048]
    except OSError:
        return False
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _reads_mp3() -> bool:
    """Whether soundfile's libsndfile decodes mp3 (1.1 and newer do; Common Voice and CoVoST 2 ship mp3)."""
    import soundfile as sf

    return "MP3" in sf.available_formats()


def _open_error(path: Path, exc: Exception) -> AudioError:
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return AudioError(path, "unreadable", "is a symbolic link loop", hint="fix or remove the link")
        if os.path.islink(path):
            return AudioError(path, "missing", f"is a symbolic link to a missing file ({os.readlink(path)})",
                              hint="fix or remove the link")
        return AudioError(path, "missing", "no such file", hint="check the path or the corpus layout")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return AudioError(path, "unreadable", "permission denied: it cannot be opened for reading",
                          hint="check the file's permissions (chmod a+r) or run as a user who may read it")
    except OSError:
        pass
    if path.is_dir():
        return AudioError(path, "unreadable", "is a directory, not an audio file")
    if path.stat().st_size == 0:
        return AudioError(path, "empty", "file is empty (0 bytes)", hint="re-download or remove it")
    if _looks_like_text(path):
        return AudioError(path, "not_audio", "is a text file, not audio, despite its extension",
                          hint="remove it or fix the manifest")
    if path.suffix.lower() == ".mp3" and not _reads_mp3():
        import soundfile as sf

        return AudioError(path, "unreadable", f"is mp3, which this libsndfile ({sf.__libsndfile_version__}) cannot read",
                          hint="pip install -U soundfile (its wheels bundle libsndfile 1.1 or newer, which reads mp3), "
                               "or convert the clips to flac")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return AudioError(path, "unreadable", f"cannot be decoded as audio ({first_line})",
                      hint="the file is corrupt or in a format libsndfile does not read; convert it to wav or flac")


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path``; raises :class:`AudioError` for a bad file."""
    import soundfile as sf

    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises several types; all mean "cannot open"
        raise _open_error(path, exc) from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(path, "empty", "contains no audio samples", hint="remove it from the corpus")
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def load_audio(
    path: str | Path,
    start_s: float = 0.0,
    duration_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
):
    """Read ``path`` as a float32 mono waveform at ``sample_rate``.

    Args:
        path: an audio file.
        start_s: offset into the file, in seconds.
        duration_s: seconds to read from ``start_s`` (None: to the end).
        sample_rate: output rate (16 kHz for every model in ofactl).

    Returns:
        ``torch.Tensor`` of shape ``(samples,)``, float32.

    Raises:
        AudioError: missing, unreadable, not audio, empty, or NaN/Inf samples.
    """
    import soundfile as sf
    import torch

    path = Path(path)
    try:
        with sf.SoundFile(str(path)) as f:
            sr = int(f.samplerate)
            start = int(round(start_s * sr))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration_s is None else int(round(duration_s * sr))
            data = f.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise _open_error(path, exc) from None
    if data.shape[0] == 0:
        raise AudioError(path, "empty", "contains no audio samples" if not start_s else
                         f"contains no samples after {start_s:g} s", hint="remove it from the corpus")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise AudioError(path, "non_finite", f"has {bad} NaN/Inf samples", hint="the file is corrupt; re-export it")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if sr != sample_rate:
        wave = resample(wave, sr, sample_rate)
    return wave


def resample(wave, orig_sr: int, new_sr: int):
    """Resample a ``(..., samples)`` tensor with torchaudio's windowed-sinc resampler."""
    import torchaudio.functional as AF

    if orig_sr == new_sr:
        return wave
    g = math.gcd(int(orig_sr), int(new_sr))
    return AF.resample(wave, int(orig_sr) // g, int(new_sr) // g)


def peak_amplitude(wave) -> float:
    """Largest absolute sample (0 for an empty waveform)."""
    return float(wave.abs().max()) if wave.numel() else 0.0


def is_silent(wave, threshold: float = SILENCE_PEAK) -> bool:
    """True when no sample exceeds ``threshold`` in magnitude."""
    return peak_amplitude(wave) < threshold
