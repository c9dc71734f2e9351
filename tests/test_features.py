"""HDF5 features: layout round trip, crash safety (SIGKILL at random points), ranks, refusals."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofactl import features
from ofactl.errors import OfactlError
from ofactl.features import FeatureWriter, Record

# One source for the child process and the in-process runs: a deterministic
# stream of records (ids ending in 7 are "unreadable" and get skipped).
STREAM = textwrap.dedent(
    '''
    import os, sys, time, zlib
    import numpy as np
    from ofactl import features
    from ofactl.data.problems import Problem

    ATTRS = {"layer": 2, "lambda": 1.25, "model_sha256": "ab" * 32, "target_period_ms": 90.0,
             "data": "/corpus", "split": "dev"}
    IDS = [f"spk{i % 3}/utt{i:03d}" for i in range(40)]

    def record(utt_id, lam=1.25):
        rng = np.random.default_rng(zlib.crc32(utt_id.encode()))
        n = int(rng.integers(0, 12))
        feats = rng.standard_normal((n, 8)).astype(np.float32)
        times = np.sort(rng.uniform(0.0, 3.0, n))
        return features.Record(utt_id, feats, times, float(rng.uniform(0.5, 3.0)), lam)

    def run(out, ids=IDS, sleep=0.0, batch=2, attrs=ATTRS, **kw):
        with features.FeatureWriter(out, attrs, part_bytes=0, **kw) as w:
            todo = [u for u in ids if u not in w.done_ids]
            for k in range(0, len(todo), batch):
                records = []
                for u in todo[k:k + batch]:
                    if u.endswith("7"):
                        w.skip(Problem(f"/corpus/{u}.flac", "unreadable", "truncated file", u))
                    else:
                        records.append(record(u, attrs.get("lambda", 0.3)))
                w.write(records)
                if sleep:
                    time.sleep(sleep)
            return w

    if __name__ == "__main__":
        out, crash_at, sleep = sys.argv[1], sys.argv[2], float(sys.argv[3])
        if crash_at != "-":
            features.files._stage = lambda name: os._exit(9) if name == crash_at else None
        print("ready", flush=True)
        run(out, sleep=sleep)
    '''
)
_ns: dict = {}
exec(compile(STREAM, "<stream>", "exec"), _ns)
ATTRS, IDS, record, run = _ns["ATTRS"], _ns["IDS"], _ns["record"], _ns["run"]


def content(path: Path) -> dict:
    """Everything in a features file except created_at, as comparable Python data."""
    attrs = features.read_attrs(path)
    attrs.pop("created_at")
    utts = {}
    with features.open_features(path) as f:
        for utt_id in features.utterance_ids(f):
            g = f[utt_id]
            utts[utt_id] = (g["features"][()], g["frame_times_s"][()], dict(g.attrs))
    return {"attrs": attrs, "utts": utts}


def assert_same(a: dict, b: dict) -> None:
    assert a["attrs"] == b["attrs"]
    assert list(a["utts"]) == list(b["utts"])
    for key in a["utts"]:
        fa, ta, ga = a["utts"][key]
        fb, tb, gb = b["utts"][key]
        assert fa.dtype == fb.dtype and np.array_equal(fa, fb)
        assert np.array_equal(ta, tb)
        assert ga == gb


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "feats.h5"
    run(out)
    return content(out)


@pytest.fixture(scope="module")
def child_script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("child") / "stream_child.py"
    path.write_text(STREAM)
    return path


def start_child(script: Path, out: Path, crash_at: str = "-", sleep: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(out), crash_at, str(sleep)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def resume(out: Path) -> None:
    """The same command again: resumes, or finds the file already complete."""
    try:
        run(out)
    except OfactlError as err:
        assert "already holds complete features with these settings" in str(err)
    assert not features.parts_dir(out).exists()
    assert not Path(str(out) + ".tmp").exists()


def assert_never_partial(out: Path, reference: dict) -> None:
    """OUT.h5 is absent or complete with the final content; nothing else is readable as complete."""
    if out.exists():
        assert_same(content(out), reference)
    else:
        with pytest.raises(OfactlError, match="interrupted|does not exist"):
            features.open_features(out)
    for part in features.parts_dir(out).rglob("*.h5"):
        with pytest.raises(OfactlError, match="part of an unfinished"):
            features.open_features(part)


# --------------------------------------------------------------------------- layout


def test_layout_and_attrs(tmp_path, reference):
    out = tmp_path / "feats.h5"
    run(out)
    attrs = features.read_attrs(out)
    written = [u for u in IDS if not u.endswith("7")]
    assert attrs["n_utterances"] == len(written) and attrs["complete"] is True
    assert attrs["layer"] == 2 and attrs["lambda"] == 1.25 and attrs["target_period_ms"] == 90.0
    assert attrs["model_sha256"] == "ab" * 32 and attrs["ofactl_version"] and attrs["created_at"]
    assert [s["id"] for s in attrs["skipped"]] == sorted(u for u in IDS if u.endswith("7"))
    assert attrs["skipped"][0]["reason"].startswith("unreadable")
    recs = [record(u) for u in written]
    frames = sum(r.features.shape[0] for r in recs)
    assert attrs["total_frames"] == frames
    assert attrs["measured_period_ms"] == pytest.approx(1000 * sum(r.duration_s for r in recs) / frames, rel=1e-12)
    with h5py.File(out, "r") as f:  # the binding layout, read with plain h5py
        g = f["spk1/utt004"]
        assert g["features"].shape == (recs[4].features.shape[0], 8) and g["features"].dtype == np.float16
        assert g["frame_times_s"].dtype == np.float64
        assert g.attrs["duration_s"] == recs[4].duration_s and g.attrs["lambda"] == 1.25
    got = list(features.read(out))
    assert [g[0] for g in got] == sorted(written)
    assert_same(content(out), reference)


id_part = st.text(alphabet="abcXYZ019_-.é ", min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..", "features", "frame_times_s"))
utt_ids = st.lists(st.lists(id_part, min_size=1, max_size=3).map("/".join), min_size=1, max_size=6, unique=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=utt_ids, dim=st.integers(1, 5), layers=st.sampled_from([None, [0, 2]]),
       dtype=st.sampled_from(["float16", "float32"]), data=st.data())
def test_round_trip(tmp_path_factory, ids, dim, layers, dtype, data):
    out = tmp_path_factory.mktemp("rt") / "f.h5"
    attrs = {"layer": "all" if layers else 1, "layers": layers, "exact": True, "model_sha256": "x", "target_period_ms": 50.0}
    rng = np.random.default_rng(len(ids))
    expected = {}
    with FeatureWriter(out, attrs, dtype=dtype, part_bytes=data.draw(st.sampled_from([0, 1 << 20]))) as w:
        for utt_id in ids:
            n = data.draw(st.integers(0, 6))
            shape = (len(layers), n, dim) if layers else (n, dim)
            feats = rng.standard_normal(shape).astype(np.float32)
            feats_in = torch.from_numpy(feats) if data.draw(st.booleans()) else feats
            times = np.arange(n) * 0.05 + 0.01
            w.write([Record(utt_id, feats_in, times, n * 0.05, float(rng.uniform(0, 2)))])
            expected[utt_id] = (feats.astype(dtype), times)
    got = {u: (f, t) for u, f, t in features.read(out)}
    assert list(got) == sorted(ids)
    for utt_id, (feats, times) in expected.items():
        assert got[utt_id][0].dtype == np.dtype(dtype)
        assert np.array_equal(got[utt_id][0], feats) and np.array_equal(got[utt_id][1], times)
    attrs_out = features.read_attrs(out)
    assert attrs_out["exact"] is True and "lambda" not in attrs_out
    if layers:
        assert attrs_out["layers"] == layers
        one = dict((u, f) for u, f, _ in features.read(out, layer=2))
        assert all(np.array_equal(one[u], expected[u][0][1]) for u in ids)


# --------------------------------------------------------------------------- crash safety


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_at_random_points_then_resume(tmp_path, child_script, reference, seed):
    rng = random.Random(seed)
    out = tmp_path / "feats.h5"
    for _ in range(3):  # several kills of the same job, each at a random moment
        proc = start_child(child_script, out, sleep=0.008)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_never_partial(out, reference)
    resume(out)
    assert_same(content(out), reference)


@pytest.mark.parametrize("stage", ["merge:copied-part", "merge:tmp-written", "merge:marked", "merge:replaced"])
def test_killed_during_merge(tmp_path, child_script, reference, stage):
    out = tmp_path / "feats.h5"
    proc = start_child(child_script, out, crash_at=stage)
    assert proc.wait() == 9
    tmp = Path(str(out) + ".tmp")
    if stage == "merge:replaced":
        assert features.parts_dir(out).exists()  # killed before the clean-up
    else:
        assert not out.exists() and tmp.exists()
        if stage == "merge:copied-part":  # killed with the file open: never readable as complete
            with pytest.raises(OfactlError):
                features.open_features(tmp)
    assert_never_partial(out, reference)
    resume(out)
    assert_same(content(out), reference)


def test_stale_part_tmp_and_trash_are_ignored(tmp_path, reference):
    out = tmp_path / "feats.h5"
    w = run(out, ids=IDS[:10], world_size=2)  # no merge: an unfinished run
    (w.run_dir / ".00000-00000099.h5.tmp").write_bytes(b"\x89HDF half a file")
    (features.parts_dir(out) / ".trash-1234").mkdir()
    resume(out)
    assert_same(content(out), reference)


def test_unreadable_part_is_named(tmp_path):
    out = tmp_path / "feats.h5"
    w = run(out, ids=IDS[:4], world_size=2)
    (w.run_dir / "00000-00000005.h5").write_bytes(b"garbage")
    with pytest.raises(OfactlError, match="00000-00000005.h5 is unreadable"):
        run(out)


# --------------------------------------------------------------------------- ranks


def test_two_ranks_then_merge_equals_one_process(tmp_path, reference):
    out = tmp_path / "feats.h5"
    for rank in (1, 0):
        run(out, ids=IDS[rank::2], rank=rank, world_size=2)
        assert not out.exists()  # ranks only flush; one merges after the barrier
    with pytest.raises(OfactlError, match="interrupted"):
        features.open_features(out)
    summary = features.merge(out)
    assert summary["n_utterances"] == reference["attrs"]["n_utterances"]
    assert_same(content(out), reference)
    assert not features.parts_dir(out).exists()
    assert features.merge(out)["n_utterances"] == summary["n_utterances"]  # idempotent


def test_resume_with_another_world_size(tmp_path, reference):
    out = tmp_path / "feats.h5"
    run(out, ids=IDS[:25], rank=1, world_size=3)
    w = FeatureWriter(out, ATTRS)
    assert w.done_ids == set(IDS[:25])
    w.close()
    resume(out)
    assert_same(content(out), reference)


def test_duplicate_ids_are_refused(tmp_path):
    out = tmp_path / "feats.h5"
    with pytest.raises(ValueError, match="already written"):
        with FeatureWriter(out, ATTRS) as w:
            w.write([record("a"), record("a")])
    # Two ranks started together (neither sees the other's parts) and given overlapping shards.
    out = tmp_path / "ranks.h5"
    ranks = [FeatureWriter(out, ATTRS, rank=rank, world_size=2, part_bytes=0) for rank in (0, 1)]
    ranks[0].write([record("a"), record("b")])
    ranks[1].write([record("b"), record("c")])
    for w in ranks:
        w.close()
    with pytest.raises(OfactlError, match="'b' was written twice"):
        features.merge(out)


# --------------------------------------------------------------------------- refusals


def test_refuses_to_overwrite_a_complete_file(tmp_path):
    out = tmp_path / "feats.h5"
    run(out, ids=IDS[:6])
    before = content(out)
    with pytest.raises(OfactlError, match="already holds complete features with these settings"):
        run(out, ids=IDS[:6])
    other = dict(ATTRS, **{"lambda": 0.5})
    with pytest.raises(OfactlError, match="already holds complete features.*--overwrite"):
        run(out, ids=IDS[:6], attrs=other)
    assert_same(content(out), before)
    run(out, ids=IDS[:6], attrs=other, overwrite=True)
    assert features.read_attrs(out)["lambda"] == 0.5


def test_refuses_a_foreign_file(tmp_path):
    out = tmp_path / "feats.h5"
    out.write_text("not hdf5")
    with pytest.raises(OfactlError, match="not a complete ofactl features file"):
        run(out, ids=IDS[:2])
    run(out, ids=IDS[:2], overwrite=True)
    assert features.read_attrs(out)["n_utterances"] == 2


def test_refuses_to_resume_parts_with_other_settings(tmp_path):
    out = tmp_path / "feats.h5"
    run(out, ids=IDS[:6], world_size=2)  # unfinished, lambda 1.25
    other = dict(ATTRS, **{"lambda": 0.5})
    with pytest.raises(OfactlError, match=r"other settings \(lambda 1.25 there, 0.5 here\).*--overwrite"):
        run(out, attrs=other)
    with pytest.raises(OfactlError, match=r"model_sha256 abababababab\.\.\. there, cdcdcdcdcdcd\.\.\. here"):
        run(out, attrs=dict(ATTRS, model_sha256="cd" * 32))
    with pytest.raises(OfactlError, match="dtype"):
        FeatureWriter(out, ATTRS, dtype="float32")
    run(out, ids=IDS[:4], attrs=other, overwrite=True)  # discards the other run
    attrs = features.read_attrs(out)
    assert attrs["lambda"] == 0.5 and attrs["n_utterances"] == 4


@pytest.mark.parametrize("bad, match", [
    ({"layer": 2, "lambda": 1.0}, "model_sha256"),
    ({"layer": 2, "model_sha256": "x"}, "either 'lambda'"),
    ({"layer": 2, "model_sha256": "x", "lambda": 1.0, "exact": True}, "either 'lambda'"),
    ({"layer": "all", "model_sha256": "x", "lambda": 1.0}, "layers"),
    ({"layer": 2, "model_sha256": "x", "lambda": 1.0, "measured_period_ms": 90.0}, "computed"),
    ({"layer": 2, "model_sha256": "x", "lambda": 1.0, "data": object()}, "data"),
])
def test_bad_attrs(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        FeatureWriter(tmp_path / "f.h5", bad)


def test_bad_records(tmp_path):
    w = FeatureWriter(tmp_path / "f.h5", ATTRS)
    for bad_id in ("", "a//b", "a/features", "..", "/a"):
        with pytest.raises(ValueError, match="utterance id"):
            w.write([Record(bad_id, np.zeros((1, 8)), np.zeros(1), 1.0, 1.0)])
    with pytest.raises(ValueError, match=r"expected shape \(frame, feature\)"):
        w.write([Record("a", np.zeros((2, 1, 8)), np.zeros(1), 1.0, 1.0)])
    with pytest.raises(ValueError, match=r"frame_times_s of 'a': expected shape \(3,\)"):
        w.write([Record("a", np.zeros((3, 8)), np.zeros(2), 1.0, 1.0)])
    w.write([Record("a", np.zeros((3, 8)), np.zeros(3), 1.0, 1.0)])
    with pytest.raises(ValueError, match="differs from earlier"):
        w.write([Record("b", np.zeros((3, 4)), np.zeros(3), 1.0, 1.0)])
    w.close()


def test_partial_files_are_never_read_as_complete(tmp_path):
    out = tmp_path / "feats.h5"
    run(out, ids=IDS[:8])
    data = out.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(OfactlError, match="not a readable HDF5 file"):
        features.open_features(truncated)
    assert not features.is_complete(truncated)
    unmarked = tmp_path / "unmarked.h5"
    unmarked.write_bytes(data)
    with h5py.File(unmarked, "r+") as f:
        del f.attrs["complete"]
    with pytest.raises(OfactlError, match="incomplete"):
        list(features.read(unmarked))
    with pytest.raises(OfactlError, match="does not exist"):
        features.open_features(tmp_path / "missing.h5")
    with pytest.raises(OfactlError, match="holds layer 2, not layer 3"):
        features.read(out, layer=3)
