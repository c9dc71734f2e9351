"""HDF5 features on disk: a crash-safe, resumable, rank-sharded writer and a reader.

The package: :mod:`~ofactl.features.files` (names, paths, crash-safe helpers),
:mod:`~ofactl.features.writer` (:class:`FeatureWriter`), :mod:`~ofactl.features.merging`
(:func:`merge`) and :mod:`~ofactl.features.reader`.

File layout (the contract of DESIGN.md)::

    OUT.h5
      <utterance id>/                 one group per utterance, named by its id
        features        (N, D)        float16 or float32; (L, N, D) when layer="all"
        frame_times_s   (N,)          float64, time of each output frame's centre of mass
        attrs: duration_s (float), lambda (float, this utterance's lambda)
      attrs (file):
        target_period_ms    the period the user asked for (absent when none was)
        measured_period_ms  1000 * total_duration_s / total_frames
        lambda | exact      the lambda of every utterance, or exact=True (one
                            lambda per utterance, stored in each group)
        layer               an int, or "all" with ``layers`` (the layer index
                            of each slice along axis 0 of ``features``)
        model_sha256, ofactl_version, created_at (UTC, ISO 8601)
        precision           "fp32" or "bf16": the model's forward (``ofactl extract``'s files)
        skipped             JSON list of {"id", "path", "reason"} for unreadable inputs
        n_utterances, n_skipped, total_duration_s, total_frames, feature_dim,
        dtype               totals over the utterances written, the features' dtype
        run_fingerprint     hash of the settings (the attrs given to the writer + dtype)
        format = "ofactl.features", format_version, complete = True
        ... plus every other attr given to the writer (e.g. data, split)

An id taken from a relative path (``"spk/chapter/utt"``) becomes nested groups,
so ``f["spk/chapter/utt"]`` works; a path component of an id may not be
empty, ``.``, ``..``, ``features`` or ``frame_times_s``.

Crash safety.  ``OUT.h5`` is never written in place: every batch of records
goes to a small part file, written as a temporary file, fsync'ed and renamed::

    OUT.h5.parts/<fingerprint>/attrs.json          the settings of this run
    OUT.h5.parts/<fingerprint>/<rank>-<seq>.h5     finished parts (same layout)
    OUT.h5.parts/<fingerprint>/MERGED              OUT.h5.tmp is final (merge step 2)
    OUT.h5.tmp                                     the merge in progress

A killed run leaves finished parts (and at most a temporary file, ignored);
running it again reads the ids in the parts (:attr:`FeatureWriter.done_ids`)
and goes on.  :func:`merge` writes ``OUT.h5.tmp``, marks the parts ``MERGED``,
renames the temporary file onto ``OUT.h5`` and only then deletes the parts; a
merge killed before the mark starts again from the parts, one killed after it
is finished by the next writer or merge.  So ``OUT.h5`` exists only complete,
and ``kill -9`` at any moment followed by the same command ends with the same
content as an uninterrupted run (creation time aside).  Parts of a run with
other settings (another model, lambda, period, layer, dtype, data, ...) live
under another fingerprint and are never mixed in: the writer refuses them (or
discards them with ``overwrite=True``).

Scale-out: every rank of a torchrun job opens a writer with its own ``rank``
(its parts are named after it); after a barrier one rank calls :func:`merge`.

This module imports numpy and h5py only (no torch): torch tensors are
accepted wherever arrays are.
"""

from __future__ import annotations

from ofactl.features.files import (
    FORMAT,
    FORMAT_VERSION,
    Record,
    parts_dir,
    recover,
    run_fingerprint,
    utterance_ids,
)
from ofactl.features.merging import merge
from ofactl.features.reader import is_complete, open_features, read, read_attrs
from ofactl.features.writer import FeatureWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Record",
    "FeatureWriter",
    "merge",
    "read",
    "read_attrs",
    "open_features",
    "utterance_ids",
    "is_complete",
    "parts_dir",
    "recover",
    "run_fingerprint",
]
