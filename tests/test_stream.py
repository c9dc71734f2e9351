"""Probes stream their inputs from feature files: same results as in memory, nothing of a split held."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from ofactl import load_model
from ofactl.features import FeatureWriter, read
from ofactl.stream import ExampleLoader, Stored, average_pool, epoch_batches, load, pooled_length, stored_lengths
from ofactl.tasks.base import Example

from probe_fixtures import DATA, calibrated_model, synth_corpus  # noqa: F401  (fixtures)


def _write(path, lengths, dim=4, seed=0, dtype="float16"):
    rng = np.random.default_rng(seed)
    arrays = {}
    with FeatureWriter(path, {"layer": 0, "lambda": 0.0, "model_sha256": "x" * 64}, dtype=dtype) as w:
        for i, n in enumerate(lengths):
            a = rng.standard_normal((n, dim)).astype(dtype)
            arrays[f"u{i:03d}"] = a
            w.write([(f"u{i:03d}", a, np.arange(n) * 0.02 + 0.01, n * 0.02, 0.0)])
    return arrays


@given(lengths=st.lists(st.integers(1, 300), min_size=1, max_size=120), batch=st.integers(1, 17),
       seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_an_epoch_holds_every_example_once_in_length_sorted_spans(lengths, batch, seed):
    g = torch.Generator().manual_seed(seed)
    batches = epoch_batches(lengths, batch, g, bucket=3)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch for b in batches)
    assert all([lengths[i] for i in b] == sorted(lengths[i] for i in b) for b in batches)
    again = epoch_batches(lengths, batch, torch.Generator().manual_seed(seed), bucket=3)
    assert again == batches  # the seed decides the order
    ordered = [i for b in epoch_batches(lengths, batch) for i in b]
    assert [lengths[i] for i in ordered] == sorted(lengths)


def test_stored_reads_what_was_written_and_pools_like_the_reference(tmp_path):
    path = tmp_path / "f.h5"
    arrays = _write(path, [5, 1, 9, 40])
    lengths = stored_lengths(path)
    assert {k: v[0] for k, v in lengths.items()} == {k: a.shape[0] for k, a in arrays.items()}
    for utt, a in arrays.items():
        assert np.array_equal(load(Stored(str(path), utt)).numpy(), a)
        pooled = load(Stored(str(path), utt, pool_ms=60.0))
        assert torch.equal(pooled, average_pool(torch.from_numpy(a), 60.0))
        assert pooled.shape[0] == pooled_length(a.shape[0], 60.0)


def test_a_replaced_file_is_read_again_not_from_a_stale_handle(tmp_path):
    path = tmp_path / "f.h5"
    first = _write(path, [3], seed=1)
    assert np.array_equal(load(Stored(str(path), "u000")).numpy(), first["u000"])
    os.unlink(path)
    second = _write(path, [3], seed=2)
    assert np.array_equal(load(Stored(str(path), "u000")).numpy(), second["u000"])


@pytest.mark.parametrize("workers, hold", [(0, 0), (1, 0), (0, 2**20)])
def test_loader_batches_match_the_examples_with_and_without_workers(tmp_path, workers, hold):
    """Streamed by a read-ahead thread, by a worker process, or held after the first epoch (a small split)."""
    path = tmp_path / "f.h5"
    arrays = _write(path, [int(x) for x in np.random.default_rng(0).integers(1, 50, 40)])
    examples = [Example(u, Stored(str(path), u), a.shape[0], k) for k, (u, a) in enumerate(sorted(arrays.items()))]
    loader = ExampleLoader(examples, 6, torch.Generator().manual_seed(3), workers=workers, hold_bytes=hold)
    orders = []
    for _epoch in range(2):  # persistent workers serve a second epoch in its own order
        seen = []
        for batch in loader:
            for utt, x, target in zip(batch.ids, batch.inputs, batch.targets):
                assert np.array_equal(x.numpy(), arrays[utt]) and examples[target].id == utt
                seen.append(utt)
        assert sorted(seen) == sorted(arrays)
        orders.append(seen)
    assert orders[0] != orders[1]  # a new order every epoch
    assert (loader._held is not None) == bool(hold)
    loader.close()


def test_streaming_probe_matches_the_in_memory_probe(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    """The same seed trains the same head from stored features as from the features held in memory."""
    from ofactl.probe import prepare, train_and_test

    prep = prepare("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), period="40ms", features_dir=tmp_path)
    assert all(isinstance(e.inputs, Stored) for split in prep.examples.values() for e in split)
    streamed = train_and_test(prep, lr=1e-3, seed=5, max_epochs=4, patience=4)
    in_memory = replace(prep, examples={role: [replace(e, inputs=load(e.inputs)) for e in split]
                                        for role, split in prep.examples.items()})
    held = train_and_test(in_memory, lr=1e-3, seed=5, max_epochs=4, patience=4)
    assert streamed.test.keys() == held.test.keys()
    for k in streamed.test:
        assert streamed.test[k] == pytest.approx(held.test[k], abs=1e-6)
    assert streamed.dev["loss"] == pytest.approx(held.dev["loss"], rel=1e-6)
    # and the stored features are what the reader returns
    first = prep.examples["test"][0]
    stored = dict((u, f) for u, f, _ in read(first.inputs.path))[first.id]
    assert np.array_equal(load(first.inputs).numpy(), stored)


def test_avgpool_probe_streams_pooled_lengths(synth_corpus, calibrated_model, tmp_path):  # noqa: F811
    from ofactl.probe import prepare

    prep = prepare("sid", synth_corpus / DATA["sid"], load_model(calibrated_model), period="80ms", pooling="avg",
                   features_dir=tmp_path)
    for e in prep.examples["train"][:5]:
        assert load(e.inputs).shape[0] == e.n_frames == pooled_length(stored_lengths(e.inputs.path)[e.id][0], 80.0)


def test_qbe_scores_do_not_depend_on_how_documents_are_chunked():
    from ofactl.tasks.qbe import TASK

    g = torch.Generator().manual_seed(0)
    docs = [Example(f"d{i}", torch.randn(int(n), 6, generator=g), int(n), None) for i, n in enumerate([30, 8, 50, 12, 25])]
    queries = [Example(f"q{i}", torch.randn(int(n), 6, generator=g), int(n), []) for i, n in enumerate([5, 9, 7])]
    whole = TASK.scores(docs, queries)
    chunked = TASK.scores(docs, queries, docs_per_chunk=2)
    assert np.allclose(whole, chunked, atol=1e-6)


def test_a_read_error_in_the_read_ahead_reaches_the_training_loop(tmp_path):
    path = tmp_path / "f.h5"
    arrays = _write(path, [4, 5, 6])
    examples = [Example(u, Stored(str(path), u), a.shape[0], 0) for u, a in arrays.items()]
    examples.append(Example("ghost", Stored(str(path), "ghost"), 3, 0))
    with pytest.raises(KeyError):
        for _ in ExampleLoader(examples, 2, workers=0, hold_bytes=0):
            pass


@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12), seed=st.integers(0, 1000))
@settings(max_examples=30, deadline=None)
def test_standardize_fit_matches_numpy(lengths, seed):
    from ofactl.tasks.loop import Standardize

    rng = np.random.default_rng(seed)
    arrays = [rng.normal(3.0, 2.0, (n, 5)).astype(np.float16) for n in lengths]
    norm = Standardize.fit(torch.from_numpy(a) for a in arrays)
    frames = np.concatenate(arrays).astype(np.float64)
    assert np.allclose(norm.mean.numpy(), frames.mean(0), atol=1e-5)
    assert np.allclose(norm.std.numpy(), np.maximum(frames.std(0), 1e-5), rtol=1e-4, atol=1e-5)
