"""Length-bucketed batching, distributed shards, resume, and the audio pipeline (iter_batches)."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.data.audio import load_audio
from ofactl.data.batching import BucketBatchSampler, bucket_batches, padded_seconds
from ofactl.data.pipeline import HOP_SAMPLES, AudioItem, Batch, Long, crop_start, iter_batches
from ofactl.data.problems import Problem

durations = st.lists(st.floats(0.05, 30.0), min_size=1, max_size=200)


@settings(max_examples=100, deadline=None)
@given(durs=durations, max_s=st.floats(1.0, 120.0), cap=st.one_of(st.none(), st.integers(1, 16)))
def test_bucket_batches_partition_and_budget(durs, max_s, cap):
    batches = bucket_batches(durs, max_s, cap)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(durs))), "every utterance exactly once"
    for b in batches:
        padded = len(b) * max(durs[i] for i in b)
        assert padded <= max_s + 1e-9 or len(b) == 1
        if cap is not None:
            assert len(b) <= cap
        assert [durs[i] for i in b] == sorted(durs[i] for i in b)


def test_bucketing_saves_padding_against_random_batches():
    rng = np.random.default_rng(0)
    durs = list(rng.uniform(1, 20, 500))
    batches = bucket_batches(durs, 100.0)
    audio, padded = padded_seconds(durs, batches)
    sizes = [len(b) for b in batches]
    perm = rng.permutation(len(durs)).tolist()
    random_batches, k = [], 0
    for n in sizes:
        random_batches.append(perm[k : k + n])
        k += n
    _, padded_random = padded_seconds(durs, random_batches)
    assert padded / audio < 1.05 < padded_random / audio


@settings(max_examples=50, deadline=None)
@given(durs=durations, world=st.integers(1, 5), seed=st.integers(0, 100), epoch=st.integers(0, 5))
def test_shards_cover_all_batches_equally(durs, world, seed, epoch):
    samplers = [BucketBatchSampler(durs, 20.0, shuffle=True, seed=seed, rank=r, world_size=world) for r in range(world)]
    for s in samplers:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]
    assert len({len(p) for p in per_rank}) == 1, "every rank runs the same number of steps"
    seen = {tuple(b) for p in per_rank for b in p}
    assert seen == {tuple(b) for b in bucket_batches(durs, 20.0)}


def test_epoch_order_is_deterministic_and_resumable():
    durs = [float(i % 17 + 1) for i in range(300)]
    a = BucketBatchSampler(durs, 30.0, shuffle=True, seed=3)
    b = BucketBatchSampler(durs, 30.0, shuffle=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(3)
    assert list(a) != first
    b.set_epoch(2, start=5)
    assert list(b) == first[5:] and len(b) == len(first) - 5


def write_corpus(tmp_path):
    rng = np.random.default_rng(1)
    items = []
    for i, (sr, ch, secs) in enumerate([(16000, 1, 0.5), (8000, 2, 1.0), (22050, 1, 0.3), (16000, 1, 1.2),
                                        (44100, 2, 0.7), (16000, 1, 0.9)]):
        x = (0.1 * rng.standard_normal((int(sr * secs), ch))).astype(np.float32)
        path = tmp_path / f"u{i}.flac"
        sf.write(path, x, sr)
        items.append(AudioItem(f"u{i}", str(path), 0.0, secs))
    (tmp_path / "bad.wav").write_text("not audio")
    items.append(AudioItem("bad", str(tmp_path / "bad.wav"), 0.0, 0.1))
    return items


def test_batches_pad_and_problems_come_apart(tmp_path):
    items = write_corpus(tmp_path)
    out = list(iter_batches(items, max_batch_s=100.0, num_workers=0))
    batches = [x for x in out if isinstance(x, Batch)]
    problems = [x for x in out if isinstance(x, Problem)]
    assert len(batches) == 1 and len(problems) == 1
    assert problems[0].id == "bad" and problems[0].reason == "not_audio" and problems[0].path.endswith("bad.wav")
    batch = batches[0]
    assert sorted(batch.ids) == [f"u{i}" for i in range(6)] and batch.starts == [0] * 6
    for row, i in enumerate(batch.indices):
        assert batch.ids[row] == items[i].id
        n = int(batch.lengths[row])
        assert torch.equal(batch.audio[row, :n], load_audio(items[i].path))
        assert torch.all(batch.audio[row, n:] == 0)


def test_workers_read_everything_and_progress_counts_each_utterance(tmp_path):
    items = write_corpus(tmp_path)
    calls = []
    seen, problems = [], []
    for item in iter_batches(items, max_batch_s=2.0, num_workers=2, progress=lambda d, t, s: calls.append((d, t))):
        if isinstance(item, Problem):
            problems.append(item.id)
            continue
        assert item.audio.shape[0] == len(item.ids) == item.lengths.shape[0]
        for row, i in enumerate(item.indices):
            assert int(item.lengths[row]) == load_audio(items[i].path).shape[0]
        seen += item.ids
    assert sorted(seen) == [f"u{i}" for i in range(6)] and problems == ["bad"]
    assert calls[-1] == (7, 7) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_long_utterances_come_whole_after_the_batches(tmp_path):
    items = write_corpus(tmp_path)
    out = list(iter_batches(items, max_batch_s=100.0, chunk_s=0.8, num_workers=0))
    longs = [x for x in out if isinstance(x, Long)]
    assert [x.id for x in longs] == ["u1", "u3", "u5"]  # in input order, after every batch
    assert all(isinstance(x, Long) for x in out[-3:])
    assert torch.equal(longs[1].wave, load_audio(items[3].path))
    batched = [u for x in out if isinstance(x, Batch) for u in x.ids]
    assert sorted(batched) == ["u0", "u2", "u4"]


def test_crops_depend_on_seed_epoch_and_utterance_only(tmp_path):
    items = write_corpus(tmp_path)[:6]

    def crops(epoch, workers, seed=5, start=0):
        out = {}
        for b in iter_batches(items, max_batch_s=1.0, crop_s=0.25, shuffle=True, seed=seed, epoch=epoch,
                              start=start, num_workers=workers):
            for row, u in enumerate(b.ids):
                out[u] = (b.starts[row], b.audio[row, : int(b.lengths[row])].clone())
        return out

    a, b = crops(1, 0), crops(1, 2)
    assert a.keys() == b.keys() == {f"u{i}" for i in range(6)}
    for u, (start, wave) in a.items():
        i = int(u[1:])
        full = load_audio(items[i].path)
        assert start % HOP_SAMPLES == 0 and start == crop_start(5, 1, i, full.shape[0], 4000)
        assert torch.equal(wave, full[start : start + 4000]) and torch.equal(wave, b[u][1])
    assert {u: s for u, (s, _) in crops(2, 0).items()} != {u: s for u, (s, _) in a.items()}
    # a resumed epoch skips its first batches and reads the same crops for the rest
    order = [b.ids for b in iter_batches(items, max_batch_s=1.0, crop_s=0.25, shuffle=True, seed=5, epoch=1,
                                         num_workers=0)]
    later = crops(1, 0, start=2)
    assert set(later) == {u for ids in order[2:] for u in ids}
    assert all(torch.equal(later[u][1], a[u][1]) for u in later)


def test_reading_leaves_the_global_random_state_alone(tmp_path):
    items = write_corpus(tmp_path)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for _ in iter_batches(items, max_batch_s=2.0, shuffle=True, seed=3, num_workers=1):
        pass
    assert torch.equal(torch.rand(3), expected)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 50), epoch=st.integers(0, 5), index=st.integers(0, 1000),
       length=st.integers(0, 200_000), crop=st.integers(1, 100_000))
def test_crop_start_is_a_hop_multiple_inside_the_utterance(seed, epoch, index, length, crop):
    start = crop_start(seed, epoch, index, length, crop)
    assert start % HOP_SAMPLES == 0 and start >= 0
    assert start == 0 if length <= crop else start + crop <= length
