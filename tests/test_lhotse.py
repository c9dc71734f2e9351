"""lhotse manifests in and features out (issue 15 #4, #5): CutSets built with lhotse's own API."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

lhotse = pytest.importorskip("lhotse", reason="lhotse is not installed (make setup installs it)")

from ofactl import load_model
from ofactl.checkpoint import save_model  # noqa: E402
from ofactl.data.audio import load_audio  # noqa: E402
from ofactl.data.corpora import probe, read_corpus  # noqa: E402
from ofactl.features import read  # noqa: E402
from ofactl.model import OFAStudent, StudentConfig  # noqa: E402

from probe_fixtures import DATA  # noqa: E402

SR = 16000


def _cut(path: Path, cut_id: str, start: float, duration: float, rec_id: str | None = None, **sup) -> "lhotse.MonoCut":
    rec = lhotse.Recording.from_file(path, recording_id=rec_id or cut_id)
    supervision = lhotse.SupervisionSegment(id=cut_id, recording_id=rec.id, start=start, duration=duration, **sup)
    return lhotse.MonoCut(id=cut_id, start=start, duration=duration, channel=0, recording=rec,
                          supervisions=[supervision])


@pytest.fixture
def cuts(tmp_path):
    """Two stand-alone files, three cuts inside one long recording, and three bad cuts."""
    rng = np.random.default_rng(0)
    pieces = [(0.1 * rng.standard_normal(int(SR * s))).astype(np.float32) for s in (1.1, 1.4, 0.9, 1.2, 1.6)]
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in (0, 1):
        sf.write(audio / f"u{i}.wav", pieces[i], SR)
    gap = np.zeros(SR // 2, dtype=np.float32)
    long = np.concatenate([gap, pieces[2], gap, pieces[3], gap, pieces[4], gap])
    sf.write(audio / "long.flac", long, SR)
    cut_list = [_cut(audio / f"u{i}.wav", f"u{i}", 0.0, len(pieces[i]) / SR, speaker=f"spk{i}", text=f"utt {i}",
                     custom={"phones": "a b c", "keyword": "yes"}) for i in (0, 1)]
    offset = 0.5
    for i in (2, 3, 4):
        cut_list.append(_cut(audio / "long.flac", f"seg{i}", offset, len(pieces[i]) / SR, rec_id="long",
                             speaker="spk9"))
        offset += len(pieces[i]) / SR + 0.5
    cut_list.append(replace(_cut(audio / "u0.wav", "too_long", 0.0, 1.1), duration=5.0))  # past its 1.1 s recording
    sf.write(audio / "gone.wav", pieces[0], SR)
    cut_list.append(_cut(audio / "gone.wav", "gone", 0.0, 1.1))
    (audio / "gone.wav").unlink()  # listed but absent
    cut_list.append(_cut(audio / "u1.wav", "u0", 0.0, 0.5))  # a second cut with the id u0
    path = tmp_path / "cuts_train.jsonl.gz"
    _write_with_duplicates(cut_list, path)
    return path, pieces


def _write_with_duplicates(cut_list, path: Path) -> None:
    """CutSet refuses duplicate ids; a manifest on disk can still have them (concatenated files): write lines."""
    import gzip
    import json

    with gzip.open(path, "wt") as f:
        for cut in cut_list:
            f.write(json.dumps(cut.to_dict()) + "\n")


def test_a_cutset_is_a_corpus_with_offsets_labels_and_problems_by_cut(cuts):
    path, pieces = cuts
    corpus = probe(read_corpus(path))
    assert corpus.layout == "lhotse"
    by_id = {u.id: u for u in corpus}
    assert sorted(by_id) == ["seg2", "seg3", "seg4", "u0", "u1"] and {u.split for u in corpus} == {"train"}
    u0 = by_id["u0"]
    assert u0.speaker == "spk0" and u0.labels["text"] == "utt 0" and u0.labels["phones"] == ["a", "b", "c"]
    assert u0.labels["keyword"] == "yes"
    seg = by_id["seg3"]
    assert seg.offset_s == pytest.approx(0.5 + 0.9 + 0.5) and seg.duration_s == pytest.approx(1.2)
    whole, _ = sf.read(seg.path, dtype="float32")  # the FLAC's 16-bit samples
    start = int(round(seg.offset_s * SR))
    np.testing.assert_array_equal(load_audio(seg.path, start_s=seg.offset_s, duration_s=seg.duration_s).numpy(),
                                  whole[start:start + len(pieces[3])])  # a cut inside a recording: exactly its samples
    problems = {(p.id, p.reason) for p in corpus.problems}
    assert ("too_long", "bad_entry") in problems and ("gone", "missing") in problems
    assert ("u0", "duplicate_id") in problems
    detail = next(p.detail for p in corpus.problems if p.id == "too_long")
    assert detail == "cut too_long ends at 5 s, after its recording (1.1 s)"


def test_extract_writes_features_that_lhotse_loads(cuts, tmp_path):
    path, _ = cuts
    model = tmp_path / "m"
    torch.manual_seed(0)
    save_model(model, OFAStudent(StudentConfig.preset("tiny")))
    out, manifest = tmp_path / "f.h5", tmp_path / "cuts_feats.jsonl.gz"
    cmd = [sys.executable, "-m", "ofactl", "extract", "--period", "60ms", "--exact", str(path), str(out),
           "--model", str(model), "--lhotse-manifest", str(manifest), "--workers", "0", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"{manifest}: 5 cuts with features in {out}" in done.stdout
    ours = {i: f for i, f, _ in read(out)}
    loaded = lhotse.CutSet.from_file(manifest)
    assert sorted(c.id for c in loaded) == sorted(ours)
    for cut in loaded:  # lhotse's own reader
        feats = cut.load_features()
        np.testing.assert_array_equal(feats, ours[cut.id])
        assert cut.features.frame_shift == pytest.approx(0.06) and cut.num_frames == len(ours[cut.id])
        assert feats.shape[0] == round(cut.duration / 0.06)
    assert {c.id: c.supervisions[0].speaker for c in loaded}["seg2"] == "spk9"  # the input's cuts, labels kept
    refused = subprocess.run([sys.executable, "-m", "ofactl", "extract", "--period", "60ms", str(path),
                              str(tmp_path / "g.h5"), "--model", str(model), "--lhotse-manifest", str(manifest)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "--lhotse-manifest needs --exact" in refused.stderr


def test_every_command_reads_a_cutset(cuts, tmp_path):
    """data inspect, calibrate, segment and pretrain take the manifest (probes: the next test)."""
    path, _ = cuts
    env = {**os.environ}
    inspect = subprocess.run([sys.executable, "-m", "ofactl", "data", "inspect", str(path)], capture_output=True,
                             text=True, env=env)
    assert inspect.returncode == 0 and "lhotse" in inspect.stdout and "too_long" in inspect.stdout
    from ofactl.calibrate import measure_calibration

    model = tmp_path / "m"
    torch.manual_seed(0)
    save_model(model, OFAStudent(StudentConfig.preset("tiny")))
    cal = measure_calibration(load_model(model), path, num_workers=0).calibration
    assert cal.n_utterances == 5
    seg = subprocess.run([sys.executable, "-m", "ofactl", "segment", str(path), "--teacher", "tiny-random", "--layer",
                          "2", "--clusters", "2", "--out", str(tmp_path / "s.tsv"), "--quiet"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert seg.returncode == 0, seg.stderr
    assert "5 utterances" in seg.stdout
    from ofactl.pretrain_config import load_pretrain_config
    from ofactl.train import pretrain

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'p'}\nstudent: tiny\nteacher: tiny-random\nsteps: 1\nsave_every: 1\n"
                   f"data: {{path: {path}, crop_s: 1.0, max_batch_s: 4.0, num_workers: 0}}\n")
    assert pretrain(load_pretrain_config(cfg)).finished


def test_a_probe_on_lhotse_manifests_equals_the_probe_on_the_corpus(synth_corpus, calibrated_model, tmp_path):
    """The synthetic VoxCeleb1 as one CutSet per split (ids, files and speakers carried over): sid gives the same
    rows read either way."""
    from ofactl.probe import run_probe

    vox = synth_corpus / DATA["sid"]
    corpus = read_corpus(vox)
    folder = tmp_path / "vox_lhotse"
    folder.mkdir()
    for split in corpus.splits():
        cut_list = [_cut(Path(u.path), u.id, 0.0, lhotse.Recording.from_file(u.path).duration,
                         speaker=u.labels["speaker"]) for u in corpus if u.split == split]
        lhotse.CutSet.from_cuts(cut_list).to_file(folder / f"voxceleb1_cuts_{split}.jsonl.gz")
    kwargs = dict(period="40ms", features_dir=tmp_path / "features", max_epochs=2, seed=0)
    theirs = run_probe("sid", vox, load_model(calibrated_model), **kwargs)
    ours = run_probe("sid", folder, load_model(calibrated_model), **kwargs)
    assert [(r.split, r.metric, r.status, r.n_utterances) for r in ours] == \
        [(r.split, r.metric, r.status, r.n_utterances) for r in theirs]
    for a, b in zip(ours, theirs):
        assert a.value == pytest.approx(b.value, abs=1e-6)
    plan = subprocess.run([sys.executable, "-m", "ofactl", "sweep", "--task", "sid", "--data", str(folder), "--model",
                           str(calibrated_model), "--periods", "40ms,80ms", "--results", str(tmp_path / "r.csv"),
                           "--features-dir", str(tmp_path / "features"), "--dry-run"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr  # the sweep plans over the manifests (40 ms is already cached)


def test_lhotse_computes_and_stores_features_with_the_ofactl_extractor(cuts, tmp_path):
    """CutSet.compute_and_store_features(OfactlExtractor(...)): exact-rate features, frame shift the period, equal to
    the model's own extraction of the cut's audio."""
    from ofactl.inference import load_model
    from ofactl.lhotse_extractor import OfactlExtractor, OfactlExtractorConfig

    path, _ = cuts
    model_dir = tmp_path / "m"
    torch.manual_seed(0)
    save_model(model_dir, OFAStudent(StudentConfig.preset("tiny")))
    good = [c for c in lhotse.CutSet.from_file(path) if c.id in ("u1", "seg2", "seg3")]
    extractor = OfactlExtractor(OfactlExtractorConfig(model=str(model_dir), period_ms=60.0))
    assert extractor.frame_shift == pytest.approx(0.06) and extractor.feature_dim(16000) == 64
    computed = lhotse.CutSet.from_cuts(good).compute_and_store_features(extractor, storage_path=tmp_path / "lf",
                                                                       num_jobs=1)
    model = load_model(model_dir, precision="fp32")
    for cut in computed:
        feats = cut.load_features()
        assert feats.shape == (round(cut.duration / 0.06), 64) and cut.features.type == "ofactl"
        audio = torch.as_tensor(cut.load_audio()[0])
        want = model.extract(audio, 16000, period="60ms", exact=True).features.numpy()
        np.testing.assert_allclose(feats, want, atol=1e-5)
