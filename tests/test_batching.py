"""Length-bucketed batching, distributed shards, resume, and the worker DataLoader."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ofactl.data.audio import load_audio
from ofactl.data.batching import (AudioItem, BucketBatchSampler, bucket_batches, collate, make_loader,
                                  padded_seconds, AudioDataset)

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
        items.append(AudioItem(f"u{i}", str(path)))
    (tmp_path / "bad.wav").write_text("not audio")
    items.append(AudioItem("bad", str(tmp_path / "bad.wav")))
    return items


def test_collate_pads_and_keeps_errors(tmp_path):
    items = write_corpus(tmp_path)
    ds = AudioDataset(items)
    batch = collate([ds[i] for i in range(len(items))])
    assert batch.ids == [f"u{i}" for i in range(6)]
    assert [e[1] for e in batch.errors] == ["bad"] and batch.errors[0][2].reason == "not_audio"
    for row, i in enumerate(batch.indices):
        n = int(batch.lengths[row])
        assert torch.equal(batch.audio[row, :n], load_audio(items[i].path))
        assert torch.all(batch.audio[row, n:] == 0)


def test_loader_with_workers_reads_everything(tmp_path):
    items = write_corpus(tmp_path)
    durs = [0.5, 1.0, 0.3, 1.2, 0.7, 0.9, 0.1]
    loader = make_loader(items, durs, max_batch_s=2.0, num_workers=2)
    seen, errors = [], []
    for batch in loader:
        assert batch.audio.shape[0] == len(batch.ids) == batch.lengths.shape[0]
        for row, i in enumerate(batch.indices):
            assert int(batch.lengths[row]) == load_audio(items[i].path).shape[0]
        seen += batch.ids
        errors += [e[1] for e in batch.errors]
    assert sorted(seen) == [f"u{i}" for i in range(6)] and errors == ["bad"]
