"""ofactl.data.audio: formats, rates, channels, PCM scaling, and one typed error per bad file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from ofactl.data.audio import AudioError, audio_info, is_silent, load_audio


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * math.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("fmt", "subtype", "ext"), [("WAV", "PCM_16", "wav"), ("WAV", "PCM_24", "wav"),
                                                      ("WAV", "FLOAT", "wav"), ("FLAC", "PCM_16", "flac"),
                                                      ("OGG", "VORBIS", "ogg")])
def test_formats_round_trip(tmp_path, fmt, subtype, ext):
    x = sine(440, 16000, 0.5)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == torch.float32 and y.ndim == 1 and y.shape[0] == x.shape[0]
    tol = 5e-2 if subtype == "VORBIS" else 1e-3
    assert float((y - torch.from_numpy(x)).abs().max()) < tol


def test_mp3_where_supported(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no mp3")
    path = tmp_path / "a.mp3"
    sf.write(path, sine(440, 16000, 1.0), 16000, format="MP3")
    y = load_audio(path)
    assert abs(y.shape[0] - 16000) < 2000 and y.abs().max() > 0.3


def test_mp3_without_mp3_support_is_one_line_saying_so(tmp_path, monkeypatch):
    """An older libsndfile (before 1.1) cannot read Common Voice's mp3: the error says that, not 'corrupt'."""
    from ofactl.data.audio import AudioError

    path = tmp_path / "common_voice_en_1.mp3"
    path.write_bytes(b"ID3\x03\x00\x00\x00" + bytes(range(256)) * 8)  # an mp3 header this libsndfile refuses
    monkeypatch.setattr(sf, "available_formats", lambda: {"WAV": "WAV", "FLAC": "FLAC"})
    monkeypatch.setattr(sf, "info", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Format not recognised.")))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert err.value.reason == "unreadable" and "is mp3, which this libsndfile" in str(err.value)
    assert "pip install -U soundfile" in err.value.hint


def test_int_pcm_is_scaled(tmp_path):
    path = tmp_path / "int.wav"
    sf.write(path, np.full(1000, 16384, dtype=np.int16), 16000, subtype="PCM_16")
    y = load_audio(path)
    assert torch.allclose(y, torch.full((1000,), 0.5))


def test_resampling_and_downmix_match_a_native_16k_signal(tmp_path):
    # 8 kHz stereo: left = sine, right = same sine -> mono sine; resampled to 16 kHz
    x8 = sine(440, 8000, 1.0)
    path = tmp_path / "stereo8k.wav"
    sf.write(path, np.stack([x8, x8], axis=1), 8000, subtype="FLOAT")
    y = load_audio(path)
    assert y.shape[0] == 16000
    ref = torch.from_numpy(sine(440, 16000, 1.0))
    # away from the edges the resampled sine equals the native one
    assert float((y[400:-400] - ref[400:-400]).abs().max()) < 2e-2
    # opposite channels cancel
    sf.write(path, np.stack([x8, -x8], axis=1), 8000, subtype="FLOAT")
    assert float(load_audio(path).abs().max()) < 1e-6


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_odd_rates(tmp_path, sr):
    path = tmp_path / "odd.flac"
    sf.write(path, sine(300, sr, 0.75), sr)
    y = load_audio(path)
    assert abs(y.shape[0] - 12000) <= 1


def test_offset_and_duration(tmp_path):
    x = np.arange(16000, dtype=np.float32) / 16000
    path = tmp_path / "ramp.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    y = load_audio(path, start_s=0.25, duration_s=0.5)
    assert y.shape[0] == 8000
    assert torch.allclose(y, torch.from_numpy(x[4000:12000]))
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 16000)
    assert info.duration_s == pytest.approx(1.0)


def bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio\njust a note\n")
    rng = np.random.default_rng(0)
    (tmp_path / "garbage.flac").write_bytes(rng.integers(1, 255, 5000, dtype=np.uint8).tobytes())
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "noframes.wav", np.zeros(0, dtype=np.float32), 16000)
    return {
        "missing.wav": "missing",
        "empty.wav": "empty",
        "text.wav": "not_audio",
        "garbage.flac": "unreadable",
        "nan.wav": "non_finite",
        "noframes.wav": "empty",
    }


def test_each_bad_file_has_one_typed_error(tmp_path):
    for name, reason in bad_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load_audio(tmp_path / name)
        err = info.value
        assert err.reason == reason, (name, err.reason, str(err))
        assert name in str(err) and "\n" not in str(err)
        if reason != "non_finite":  # header reads find all but the NaNs
            with pytest.raises(AudioError) as info2:
                audio_info(tmp_path / name)
            assert info2.value.reason == reason


def test_silence_is_detected_not_an_error(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 16000)
    assert is_silent(load_audio(path))
    sf.write(path, sine(440, 16000, 0.1), 16000)
    assert not is_silent(load_audio(path))


def test_errors_survive_pickling(tmp_path):
    """DataLoader workers send errors back to the main process by pickle."""
    import pickle

    err = AudioError(tmp_path / "x.wav", "not_audio", "is a text file", hint="remove it")
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.reason, again.detail, again.hint, str(again)) == (err.path, err.reason, err.detail,
                                                                               err.hint, str(err))


def test_links_and_permissions_get_their_own_reasons(tmp_path, monkeypatch):
    """A symlink loop was reported as `missing`, an unreadable (permission-denied) file as `cannot be decoded as
    audio`: each now says what it is."""
    import builtins

    from ofactl.data import audio
    from ofactl.data.audio import AudioError, audio_info

    loop = tmp_path / "loop.wav"
    loop.symlink_to(tmp_path / "loop.wav")
    with pytest.raises(AudioError) as info:
        audio_info(loop)
    assert info.value.reason == "unreadable" and "symbolic link loop" in str(info.value)
    dangling = tmp_path / "gone.wav"
    dangling.symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(AudioError) as info:
        audio_info(dangling)
    assert info.value.reason == "missing" and "symbolic link to a missing file" in str(info.value)
    locked = tmp_path / "locked.wav"
    locked.write_bytes(b"RIFF" + b"\x00" * 60)
    real_open = builtins.open

    def denied(file, *args, **kwargs):  # root reads any file: the refusal is injected
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(audio, "open", denied, raising=False)
    with pytest.raises(AudioError) as info:
        audio_info(locked)
    assert info.value.reason == "unreadable" and "permission denied" in str(info.value)
