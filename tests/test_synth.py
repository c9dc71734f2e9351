"""The synthetic corpus: exact public layouts, sane audio, distinct speakers, determinism, `.done`.

One small corpus (4 speakers, 24 LibriSpeech utterances) is built per module and
shared; the determinism and overwrite tests build tiny ones of their own.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.testing.synth import common
from ofactl.testing.synth import plan as synth
from ofactl.testing.synth import (
    AUXILIARY_WORDS,
    KEYWORDS,
    LAYOUT_ROOTS,
    PHONES,
    SAMPLE_RATE,
    SynthReport,
    synthesize_corpus,
)
from ofactl.errors import OfactlError

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed (apt-get install espeak-ng)")

N_SPEAKERS, N_UTTERANCES = 4, 24
FSC_ACTIONS = {"activate", "deactivate", "increase", "decrease", "change language", "bring"}
FSC_OBJECTS = {
    "lights", "heat", "music", "volume", "lamp", "newspaper", "juice", "socks", "shoes",
    "Chinese", "Korean", "English", "German", "none",
}  # fmt: skip
FSC_LOCATIONS = {"kitchen", "bedroom", "washroom", "none"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[SynthReport, list[tuple[int, int]]]:
    if not HAVE_ESPEAK:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("synth") / "corpus"
    calls: list[tuple[int, int]] = []
    report = synthesize_corpus(
        out, speakers=N_SPEAKERS, utterances=N_UTTERANCES, seed=0, progress=lambda d, t, _desc: calls.append((d, t))
    )
    return report, calls


@pytest.fixture(scope="module")
def report(built) -> SynthReport:
    return built[0]


def audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".wav", ".flac", ".mp3"))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != common.DONE_FILE
    }


def quesst14_files(utterances: int) -> int:
    """The documented rule: Q dev + Q eval queries, max(4Q + 4, min(400, round(U / 4))) documents."""
    q = min(30, max(2, round(utterances / 20)))
    return 2 * q + max(4 * q + 4, min(400, round(utterances / 4)))


def snips_files(utterances: int) -> int:
    """The documented rule for Audio SNIPS: max(12, min(1000, round(0.3 U)))."""
    return max(12, min(1000, round(0.3 * utterances)))


def which_set(name: str) -> str:
    """TensorFlow's speech_commands which_set(), written out independently of ofactl."""
    speaker = re.sub(r"_nohash_.*$", "", name)
    digest = hashlib.sha1(speaker.encode("utf-8")).hexdigest()
    percent = (int(digest, 16) % (2**27)) * (100.0 / (2**27 - 1))
    return "validation" if percent < 10 else "testing" if percent < 20 else "training"


# --------------------------------------------------------------------------- report


@needs_espeak
def test_report_counts_follow_the_documented_rule(built):
    report, calls = built
    n_held = max(1, round(N_SPEAKERS / 10))
    reps = max(1, round(N_UTTERANCES / (25 * N_SPEAKERS)))
    assert report.counts == {
        "librispeech": N_UTTERANCES,
        "speech_commands": N_SPEAKERS * reps * (len(KEYWORDS) + 4),
        "background_noise": 3,
        "speech_commands_test": n_held * (len(KEYWORDS) + 2 + 2),
        "voxceleb1": N_SPEAKERS * max(3, round(N_UTTERANCES / N_SPEAKERS / 4)),
        "fluent_commands": N_SPEAKERS * max(2, round(N_UTTERANCES / N_SPEAKERS / 3)),
        "quesst14": quesst14_files(N_UTTERANCES),
        "snips": snips_files(N_UTTERANCES),
        "covost2": max(30, min(2000, 3 * N_UTTERANCES)),
    }
    assert report.n_files == sum(report.counts.values()) == len(audio_files(report.out_dir))
    assert not report.reused
    assert (report.seed, report.speakers, report.utterances) == (0, N_SPEAKERS, N_UTTERANCES)
    for key, name in LAYOUT_ROOTS.items():
        assert getattr(report, key) == report.out_dir / name and (report.out_dir / name).is_dir()
    seconds = sum(sf.info(str(p)).frames for p in audio_files(report.out_dir)) / SAMPLE_RATE
    assert report.total_hours == pytest.approx(seconds / 3600, abs=1e-5)
    # progress: starts at 0, ends at total, never goes back
    assert calls[0] == (0, report.n_files) and calls[-1] == (report.n_files, report.n_files)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert not list(report.out_dir.glob(".synth-tmp-*"))
    record = json.loads((report.out_dir / ".done").read_text())
    assert record["seed"] == 0 and record["counts"] == report.counts


# --------------------------------------------------------------------------- layouts


@needs_espeak
def test_librispeech_layout(report):
    root = report.librispeech
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["dev-clean", "test-clean", "train-clean-100"]
    speakers_by_subset = {}
    n_utts = 0
    for subset in ("train-clean-100", "dev-clean", "test-clean"):
        speakers_by_subset[subset] = {p.name for p in (root / subset).iterdir()}
        for chapter in (root / subset).glob("*/*"):
            spk, chap = chapter.parent.name, chapter.name
            assert spk.isdigit() and chap.isdigit()
            flacs = sorted(p.name for p in chapter.glob("*.flac"))
            assert all(re.fullmatch(rf"{spk}-{chap}-\d{{4}}\.flac", f) for f in flacs)
            assert sorted(p.name for p in chapter.iterdir()) == sorted(
                [*flacs, f"{spk}-{chap}.trans.txt", f"{spk}-{chap}.phones.txt"]
            )
            trans = (chapter / f"{spk}-{chap}.trans.txt").read_text().splitlines()
            phones = (chapter / f"{spk}-{chap}.phones.txt").read_text().splitlines()
            ids = [line.split(" ", 1)[0] for line in trans]
            assert ids == [f.removesuffix(".flac") for f in flacs] == [line.split(" ", 1)[0] for line in phones]
            for t_line, p_line in zip(trans, phones):
                words = t_line.split()[1:]
                phs = p_line.split()[1:]
                assert 4 <= len(words) <= 14
                assert all(re.fullmatch(r"[A-Z]+", w) for w in words)
                assert set(phs) <= set(PHONES)
                assert len(words) < len(phs) < 12 * len(words)
            n_utts += len(flacs)
    assert n_utts == N_UTTERANCES
    subsets = list(speakers_by_subset.values())
    assert all(s for s in subsets)
    assert not (subsets[0] & subsets[1]) and not (subsets[0] & subsets[2]) and not (subsets[1] & subsets[2])
    lines = (root / "SPEAKERS.TXT").read_text().splitlines()
    assert ";ID  |SEX| SUBSET           |MINUTES| NAME" in lines
    rows = [[c.strip() for c in line.split("|")] for line in lines if not line.startswith(";")]
    assert {r[0]: r[2] for r in rows} == {s: sub for sub, spks in speakers_by_subset.items() for s in spks}
    assert all(r[1] in ("F", "M") and float(r[3]) > 0 for r in rows)


@needs_espeak
def test_phones_are_espeak_phones_of_the_transcript(report):
    trans = min(report.librispeech.rglob("*.trans.txt"))
    first = trans.read_text().splitlines()[0].split()
    phones = trans.with_name(trans.name.replace(".trans.", ".phones.")).read_text().splitlines()[0].split()
    assert first[0] == phones[0]
    out = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-q", "--ipa", "--sep=_", " ".join(first[1:]).lower()],
        capture_output=True,
        check=True,
    ).stdout.decode()
    expected = [t.replace("ˈ", "").replace("ˌ", "") for t in out.replace("_", " ").split()]
    assert phones[1:] == [t for t in expected if t]


@needs_espeak
def test_speech_commands_layout(report):
    root = report.speech_commands
    dirs = {p.name for p in root.iterdir() if p.is_dir()}
    assert set(KEYWORDS) <= dirs and "_background_noise_" in dirs
    assert dirs - set(KEYWORDS) - {"_background_noise_"} <= set(AUXILIARY_WORDS)
    assert len(dirs - set(KEYWORDS) - {"_background_noise_"}) >= 1  # words for _unknown_
    files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.wav") if p.parent.name != "_background_noise_")
    assert all(re.fullmatch(r"[a-z]+/[0-9a-f]{8}_nohash_\d+\.wav", f) for f in files)
    lists = {}
    for name in ("validation_list.txt", "testing_list.txt"):
        lists[name] = (root / name).read_text().splitlines()
        assert lists[name] and all((root / line).is_file() for line in lists[name])
    # the list files and the hash rule (what s3prl's KS reader uses) agree
    for f in files:
        bucket = which_set(Path(f).name)
        assert (f in lists["validation_list.txt"]) == (bucket == "validation")
        assert (f in lists["testing_list.txt"]) == (bucket == "testing")
    noise = sorted(p.name for p in (root / "_background_noise_").iterdir())
    assert noise == ["hum.wav", "pink_noise.wav", "white_noise.wav"]
    for p in (root / "_background_noise_").iterdir():
        assert sf.info(str(p)).frames >= 10 * SAMPLE_RATE
    for p in root.glob("*/*_nohash_*.wav"):
        assert sf.info(str(p)).frames == SAMPLE_RATE

    test = report.speech_commands_test
    assert {p.name for p in test.iterdir()} == {*KEYWORDS, "_unknown_", "_silence_"}
    for p in test.rglob("*.wav"):
        assert sf.info(str(p)).frames == SAMPLE_RATE
    unknown = [p.name for p in (test / "_unknown_").iterdir()]
    assert unknown and all(re.fullmatch(r"([a-z]+)_[0-9a-f]{8}_nohash_\d+\.wav\.wav", n) for n in unknown)
    assert {n.split("_")[0] for n in unknown} <= set(AUXILIARY_WORDS)
    assert all(re.fullmatch(r"[0-9a-f]{8}_nohash_\d+\.wav", p.name) for p in (test / "_silence_").iterdir())


@needs_espeak
def test_voxceleb1_layout(report):
    root = report.voxceleb1
    assert sorted(p.name for p in root.iterdir()) == ["iden_split.txt", "wav"]
    on_disk = sorted(str(p.relative_to(root / "wav")) for p in (root / "wav").rglob("*.wav"))
    assert all(re.fullmatch(r"id1\d{4}/[A-Za-z0-9_-]{11}/\d{5}\.wav", f) for f in on_disk)
    lines = (root / "iden_split.txt").read_text().splitlines()
    assert all(re.fullmatch(r"[123] id1\d{4}/[A-Za-z0-9_-]{11}/\d{5}\.wav", line) for line in lines)
    assert sorted(line.split()[1] for line in lines) == on_disk
    splits = defaultdict(set)
    for line in lines:
        split, path = line.split()
        splits[path.split("/")[0]].add(split)
    assert sorted(splits) == [f"id{10001 + k}" for k in range(N_SPEAKERS)]
    assert all(s == {"1", "2", "3"} for s in splits.values())  # closed-set identification


@needs_espeak
def test_fluent_speech_commands_layout(report):
    root = report.fluent_commands
    assert sorted(p.name for p in (root / "data").iterdir()) == ["test_data.csv", "train_data.csv", "valid_data.csv"]
    speakers, values = {}, {}
    listed = []
    for split in ("train", "valid", "test"):
        text = (root / "data" / f"{split}_data.csv").read_text()
        assert text.splitlines()[0] == ",path,speakerId,transcription,action,object,location"
        rows = list(csv.DictReader(text.splitlines()))
        assert rows and [int(r[""]) for r in rows] == list(range(len(rows)))
        for r in rows:
            assert re.fullmatch(
                rf"wavs/speakers/{r['speakerId']}/[0-9a-f]{{8}}(-[0-9a-f]{{4}}){{3}}-[0-9a-f]{{12}}\.wav", r["path"]
            )
            assert (root / r["path"]).is_file()
            assert r["action"] in FSC_ACTIONS and r["object"] in FSC_OBJECTS and r["location"] in FSC_LOCATIONS
            words = r["transcription"].lower()
            if r["object"] != "none":
                assert r["object"].lower() in words
            if r["location"] != "none":
                assert r["location"] in words
            listed.append(r["path"])
        speakers[split] = {r["speakerId"] for r in rows}
        values[split] = {(slot, r[slot]) for r in rows for slot in ("action", "object", "location")}
    assert not (speakers["train"] & speakers["valid"]) and not (speakers["train"] & speakers["test"])
    assert not (speakers["valid"] & speakers["test"])
    # s3prl's IC reader builds its label maps from train: valid/test values must occur there
    assert values["valid"] <= values["train"] and values["test"] <= values["train"]
    assert sorted(listed) == sorted(str(p.relative_to(root)) for p in (root / "wavs").rglob("*.wav"))


@needs_espeak
def test_snips_layout(report):
    from ofactl.data.corpora import read_corpus
    from ofactl.data.layouts.snips import SUPERB_SPEAKERS

    root = report.snips
    lines = (root / "all.iob.snips.txt").read_text().splitlines()
    assert len(lines) == report.counts["snips"]
    for line in lines:
        text, iob = line.split("\t")
        uid, *words = text.split(" ")
        tags = iob.split(" ")
        speaker, snips, split, n = uid.split("-")
        assert snips == "snips" and n.isdigit() and speaker in SUPERB_SPEAKERS[split]
        assert words[0] == "BOS" and words[-1] == "EOS" and len(tags) == len(words) and tags[0] == "O"
        assert all(w.isupper() for w in words[1:-1]) and tags[-1][0].isupper()
        assert (root / split / f"{uid}.wav").is_file()
    slots = (root / "slots.txt").read_text().split("\n")
    assert slots[0] == "O" and len(slots) > 1 and len(set(slots)) == len(slots)
    corpus = read_corpus(root, "snips")
    assert not corpus.problems and len(corpus) == len(lines)
    assert {u.split for u in corpus} == {"train", "valid", "test"}


@pytest.mark.parametrize("layout", ["_plan_covost", "_plan_snips"])
def test_the_last_layouts_leave_the_others_unchanged(monkeypatch, layout):
    """SNIPS and then CoVoST 2 draw from their own generators and come last: the jobs before them are as
    without them."""
    if layout == "_plan_snips":
        monkeypatch.setattr(synth, "_plan_covost", lambda *a, **k: None)
    with_it = synth._plan(5, 40, 3)
    monkeypatch.setattr(synth, layout, lambda *a, **k: None)
    without = synth._plan(5, 40, 3)
    assert len(with_it.jobs) > len(without.jobs)
    assert with_it.jobs[: len(without.jobs)] == without.jobs


@needs_espeak
def test_torchaudio_dataset_readers_accept_the_layouts(report):
    datasets = pytest.importorskip("torchaudio.datasets")
    out = report.out_dir
    n_ls = sum(len(datasets.LIBRISPEECH(out, url=u)) for u in ("train-clean-100", "dev-clean", "test-clean"))
    assert n_ls == N_UTTERANCES
    meta = datasets.LIBRISPEECH(out, url="dev-clean").get_metadata(0)
    assert meta[1] == SAMPLE_RATE and meta[2].isupper()
    sc = {s: datasets.SPEECHCOMMANDS(out, url="speech_commands_v0.01", folder_in_archive="", subset=s) for s in
          ("training", "validation", "testing")}  # fmt: skip
    assert sum(len(d) for d in sc.values()) == report.counts["speech_commands"]
    assert sc["validation"].get_metadata(0)[2] in (*KEYWORDS, *AUXILIARY_WORDS)
    vox = {s: datasets.VoxCeleb1Identification(report.voxceleb1, subset=s) for s in ("train", "dev", "test")}
    assert sum(len(d) for d in vox.values()) == report.counts["voxceleb1"]
    assert vox["test"].get_metadata(0)[2] == 1  # speaker label of id10001
    fsc = {s: datasets.FluentSpeechCommands(out, subset=s) for s in ("train", "valid", "test")}
    assert sum(len(d) for d in fsc.values()) == report.counts["fluent_commands"]
    path = fsc["train"].get_metadata(0)[0]
    assert (report.fluent_commands / path).is_file()
    quesst = {s: datasets.QUESST14(out, subset=s) for s in ("docs", "dev", "eval")}
    assert sum(len(d) for d in quesst.values()) == report.counts["quesst14"]
    assert quesst["dev"].get_metadata(0)[2] == "quesst14_dev_0001"
    assert (report.quesst14 / quesst["docs"].get_metadata(0)[0]).is_file()


# --------------------------------------------------------------------------- audio


@needs_espeak
def test_audio_is_16k_mono_pcm16_finite_and_audible(report):
    for path in audio_files(report.out_dir):
        info = sf.info(str(path))
        subtype = "MPEG_LAYER_III" if path.suffix == ".mp3" else "PCM_16"  # CoVoST 2: Common Voice's mp3
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, subtype), path
        assert info.format == {".flac": "FLAC", ".mp3": "MP3"}.get(path.suffix, "WAV"), path
        x, _ = sf.read(str(path))
        assert np.isfinite(x).all()
        if "_silence_" in path.parts or "_background_noise_" in path.parts:  # noise, not speech
            assert 1e-4 < np.sqrt(np.mean(x**2)) < 0.1, path
        else:
            assert np.abs(x).max() > 0.1, path
            assert np.sqrt(np.mean(x**2)) > 0.005, path


@needs_espeak
def test_durations_are_plausible(report):
    for trans in report.librispeech.rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt, *words = line.split()
            seconds = sf.info(str(trans.parent / f"{utt}.flac")).frames / SAMPLE_RATE
            assert 0.15 * len(words) < seconds < 1.0 * len(words) + 1.0, (utt, seconds, len(words))
    for path in (report.voxceleb1 / "wav").rglob("*.wav"):
        assert 1.0 < sf.info(str(path)).frames / SAMPLE_RATE < 20.0
    for path in (report.fluent_commands / "wavs").rglob("*.wav"):
        assert 0.4 < sf.info(str(path)).frames / SAMPLE_RATE < 6.0


def _band_energies(x: np.ndarray) -> np.ndarray:
    """Mean log energy in 24 log-spaced bands over the frames with speech."""
    n, hop = 512, 256
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(axis=1)
    power = power[energy > energy.max() * 1e-3]
    edges = np.geomspace(2, n // 2 + 1, 25).astype(int)
    return np.log(np.stack([power[:, a:b].sum(axis=1) for a, b in itertools.pairwise(edges)], axis=1) + 1e-10).mean(0)


@needs_espeak
def test_speakers_are_acoustically_distinct(report):
    """Leave-one-out nearest-centroid speaker id on LibriSpeech utterances beats chance by far."""
    feats, labels = [], []
    for path in sorted(report.librispeech.rglob("*.flac")):
        x, _ = sf.read(str(path))
        feats.append(_band_energies(x))
        labels.append(path.name.split("-")[0])
    X = np.array(feats)
    X = (X - X.mean(0)) / (X.std(0) + 1e-9)
    y = np.array(labels)
    assert len(set(labels)) == N_SPEAKERS
    correct = 0
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        centroids = {s: X[keep & (y == s)].mean(0) for s in set(labels)}
        correct += min(centroids, key=lambda s: np.linalg.norm(X[i] - centroids[s])) == y[i]
    accuracy = correct / len(X)
    assert accuracy >= 0.9, f"speaker id accuracy {accuracy:.2f} (chance {1 / N_SPEAKERS:.2f})"


# --------------------------------------------------------------------------- determinism and .done


@needs_espeak
def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    a = synthesize_corpus(tmp_path / "a", speakers=3, utterances=6, seed=5, workers=1)
    b = synthesize_corpus(tmp_path / "b", speakers=3, utterances=6, seed=5, workers=3)
    c = synthesize_corpus(tmp_path / "c", speakers=3, utterances=6, seed=6)
    files_a, files_b, files_c = (tree_bytes(r.out_dir) for r in (a, b, c))
    assert len(files_a) > 50
    assert files_a.keys() == files_b.keys()
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert files_a.keys() != files_c.keys()  # ids are drawn from the seed too
    audio_a = sorted(v for k, v in files_a.items() if k.endswith((".wav", ".flac")))
    audio_c = sorted(v for k, v in files_c.items() if k.endswith((".wav", ".flac")))
    assert not set(audio_a) & set(audio_c)


@needs_espeak
def test_second_call_is_a_no_op(report):
    before = {p: p.stat().st_mtime_ns for p in audio_files(report.out_dir)}
    calls = []
    again = synthesize_corpus(
        report.out_dir, speakers=N_SPEAKERS, utterances=N_UTTERANCES, seed=0, progress=lambda d, t, _desc: calls.append(d)
    )
    assert again.reused and calls == []
    assert again.counts == report.counts and again.n_files == report.n_files
    assert {p: p.stat().st_mtime_ns for p in audio_files(report.out_dir)} == before


@needs_espeak
def test_other_arguments_into_a_built_dir_fail_unless_overwritten(tmp_path):
    first = synthesize_corpus(tmp_path, speakers=3, utterances=3, seed=0)
    old = tree_bytes(tmp_path)
    with pytest.raises(OfactlError, match=r"seed=0.*seed=1") as err:
        synthesize_corpus(tmp_path, speakers=3, utterances=3, seed=1)
    assert "overwrite" in err.value.hint
    assert tree_bytes(tmp_path) == old
    with pytest.raises(OfactlError, match="utterances=3.*utterances=4"):
        synthesize_corpus(tmp_path, speakers=3, utterances=4, seed=0)
    second = synthesize_corpus(tmp_path, speakers=3, utterances=3, seed=1, overwrite=True)
    assert not second.reused and second.seed == 1
    assert json.loads((tmp_path / ".done").read_text())["seed"] == 1
    assert tree_bytes(tmp_path) != old
    assert first.n_files == second.n_files == len(audio_files(tmp_path))  # nothing of the old build left
    assert not list(tmp_path.glob(".synth-tmp-*"))


def test_foreign_layout_folders_are_not_replaced(tmp_path):
    (tmp_path / "LibriSpeech").mkdir()
    (tmp_path / "LibriSpeech" / "README.TXT").write_text("the real one")
    with pytest.raises(OfactlError, match="LibriSpeech.*not written by"):
        synthesize_corpus(tmp_path, speakers=3, utterances=3)
    assert (tmp_path / "LibriSpeech" / "README.TXT").read_text() == "the real one"


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"speakers": 2}, "speakers must be between 3"),
        ({"speakers": 8, "utterances": 7}, "utterances must be between 8"),
        ({"speakers": "8"}, "speakers must be a whole number"),
        ({"seed": -1}, "seed must be between 0"),
        ({"speakers": True}, "speakers must be a whole number"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, kwargs, pattern):
    with pytest.raises(OfactlError, match=pattern):
        synthesize_corpus(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OfactlError, match="espeak-ng") as err:
        synthesize_corpus(tmp_path / "out", speakers=3, utterances=3)
    assert "apt-get install espeak-ng" in err.value.hint


# --------------------------------------------------------------------------- the plan (no audio)


@settings(max_examples=30, deadline=None)
@given(speakers=st.integers(3, 40), per_speaker=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_plan_roles_ids_and_sizes(speakers, per_speaker, seed):
    utterances = speakers * per_speaker
    plan = synth._plan(speakers, utterances, seed)
    roles = Counter(s.role for s in plan.speakers)
    held = max(1, round(speakers / 10))
    assert roles == {"train": speakers - 2 * held, "dev": held, "test": held}
    for spk in plan.speakers:  # Speech Commands hashes land in the bucket of the speaker's role
        assert which_set(spk.sc_hash) == {"train": "training", "dev": "validation", "test": "testing"}[spk.role]
    for attr in ("ls_id", "ls_chapter", "sc_hash", "vox_id", "fsc_id"):
        assert len({getattr(s, attr) for s in plan.speakers}) == speakers
    paths = [job.relpath for job in plan.jobs]
    assert len(paths) == len(set(paths))
    counts = Counter(job.layout for job in plan.jobs)
    assert counts["librispeech"] == utterances
    assert counts["voxceleb1"] == speakers * max(3, round(per_speaker / 4))
    assert counts["fluent_commands"] == speakers * max(2, round(per_speaker / 3))
    assert counts["quesst14"] == quesst14_files(utterances)
    assert counts["snips"] == snips_files(utterances)
    # SNIPS: train/valid/test voices are the train/dev/test speakers, named as SUPERB's split lists
    from ofactl.data.layouts.snips import SUPERB_SPEAKERS

    role_of = {s.voice: s.role for s in plan.speakers}
    folder_role = {"train": "train", "valid": "dev", "test": "test"}
    for j in (j for j in plan.jobs if j.layout == "snips"):
        folder, name = j.relpath.split("/")[1:]
        assert role_of[j.voice] == folder_role[folder] and name.split("-")[0] in SUPERB_SPEAKERS[folder]
    assert Counter(r[1] for r in plan.snips_rows)["valid"] == max(2, round(0.15 * snips_files(utterances)))
    # QUESST: every term in exactly two documents, query and document voices disjoint
    docs = {doc_id: term for doc_id, _, _, term, _ in plan.quesst_docs}
    terms = [term for part in ("dev", "eval") for _, term in plan.quesst_queries[part]]
    assert Counter(t for t in docs.values() if t is not None) == {t: 2 for t in terms}
    voices = {j.relpath.split("/")[1]: set() for j in plan.jobs if j.layout == "quesst14"}
    for j in (j for j in plan.jobs if j.layout == "quesst14"):
        voices[j.relpath.split("/")[1]].add(j.voice)
    assert not voices["Audio"] & (voices["dev_queries"] | voices["eval_queries"])
    texts = [job.text for job in synth._plan(speakers, utterances, seed).jobs]
    assert texts == [job.text for job in plan.jobs]  # the plan is a function of the arguments


@settings(max_examples=25, deadline=None)
@given(speakers=st.integers(7, 60), held=st.integers(1, 12), dev=st.integers(1, 300), test=st.integers(1, 700),
       seed=st.integers(0, 2**32))
def test_held_out_sizes_reach_the_asked_dev_and_test_counts(speakers, held, dev, test, seed):
    """--held-out-speakers / --dev-utterances / --test-utterances: every task's dev and test split reaches its size,
    the training splits keep theirs, ids stay unique."""
    held = min(held, (speakers - 1) // 2)
    utterances = 10 * speakers
    base = synth._plan(speakers, utterances, seed, common._Sizes(held_out_speakers=held))
    plan = synth._plan(speakers, utterances, seed, common._Sizes(held, dev, test))
    roles = Counter(s.role for s in plan.speakers)
    assert roles == {"train": speakers - 2 * held, "dev": held, "test": held}
    paths = [job.relpath for job in plan.jobs]
    assert len(paths) == len(set(paths))
    ls = Counter(j.relpath.split("/")[1] for j in plan.jobs if j.layout == "librispeech")
    assert ls["dev-clean"] >= dev and ls["test-clean"] >= test
    assert ls["train-clean-100"] == Counter(j.relpath.split("/")[1] for j in base.jobs
                                            if j.layout == "librispeech")["train-clean-100"]
    vox = Counter(split for split, _ in plan.vox_rows)
    assert vox[2] >= dev and vox[3] >= test and vox[1] == Counter(s for s, _ in base.vox_rows)[1]
    assert len(plan.fsc_rows["dev"]) >= dev and len(plan.fsc_rows["test"]) >= test
    assert len(plan.fsc_rows["train"]) == len(base.fsc_rows["train"])
    assert len(plan.sc_lists["dev"]) >= dev
    assert sum(j.layout == "speech_commands_test" for j in plan.jobs) >= test


def test_default_sizes_leave_the_plan_unchanged():
    """Corpora built before the size options existed are planned file for file as before (digests of 0.1's plans;
    CoVoST 2, added later, comes last and is left out of the digest)."""
    import hashlib

    for args, digest in (((16, 1000, 0), "5a044226a411f70b"), ((6, 240, 0), "1f53ec81ea139172"),
                         ((5, 60, 3), "46c05ec67e144cc7")):
        jobs = [(j.relpath, j.text, j.pitch, j.speed, j.noise, j.noise_rms_db) for j in synth._plan(*args).jobs
                if j.layout != "covost2"]
        assert hashlib.sha256(repr(jobs).encode()).hexdigest()[:16] == digest, args
