"""ofactl features for lhotse: a CutSet manifest that points into an ofactl features file.

:func:`write_cuts_manifest` turns a finished ``ofactl extract --exact`` file
into ``cuts_feats.jsonl.gz``: one cut per utterance, with its recording (the
input's cut itself when the input was a lhotse manifest, supervisions and
all) and ``Features`` of type ``ofactl`` stored as ``numpy_hdf5`` at
``<utterance id>/features`` inside the HDF5 file.  A lhotse user then calls
``cut.load_features()`` and gets ofactl's features, ``(frames, dim)``.  lhotse
assumes a uniform frame shift, which is what exact-rate extraction gives:
``round(duration / period)`` frames per utterance, ``frame_shift`` the period.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ofactl.errors import OfactlError
from ofactl.period import SAMPLE_RATE

__all__ = ["write_cuts_manifest"]

FEATURES_TYPE = "ofactl"


def write_cuts_manifest(features: str | Path, data: str | Path, manifest: str | Path, *, layout: str | None = None,
                        split: str | None = None, id_from: str | None = None) -> int:
    """Write the lhotse CutSet ``manifest`` for the features file ``features`` extracted from ``data``.

    Returns the number of cuts written (utterances of the file; skipped ones have no features and no cut).

    Raises:
        OfactlError: lhotse is not installed, the file was not extracted with ``--exact`` or holds every layer,
            or an utterance of the file is not in ``data``.
    """
    from ofactl.data.layouts.lhotse_cuts import _cut_sets, _require_lhotse, find_root
    from ofactl.features import open_features, read_attrs, utterance_ids

    lhotse = _require_lhotse()
    from lhotse.features.base import Features

    features, manifest = Path(features).absolute(), Path(manifest)
    attrs = read_attrs(features)
    if not attrs.get("exact") or not attrs.get("target_period_ms"):
        raise OfactlError(f"{features}: a lhotse manifest needs exact-rate features (lhotse assumes one frame "
                          "shift per cut)", hint="extract with --period P --exact")
    if attrs.get("layer") == "all":
        raise OfactlError(f"{features}: holds every layer; a lhotse feature matrix is (frames, dim)",
                          hint="extract one layer (--layer last or a number)")
    shift_s = float(attrs["target_period_ms"]) / 1000.0
    lhotse_input = layout == "lhotse" or (layout is None and find_root(Path(data)) is not None)
    if lhotse_input:
        cuts = {}
        for split_cuts in _cut_sets(find_root(Path(data))).values():
            for cut in split_cuts:
                cuts.setdefault(cut.id, cut)  # a repeated id: the first cut is the one extracted, as when reading
    else:
        cuts = _cuts_from_corpus(lhotse, data, layout, split, id_from)
    out = []
    with open_features(features) as f:
        for utt_id in utterance_ids(f):
            if utt_id not in cuts:
                raise OfactlError(f"{features}: utterance {utt_id} is not in {data}",
                                  hint="give the data the features were extracted from")
            cut = cuts[utt_id]
            n, dim = f[utt_id]["features"].shape
            feats = Features(type=FEATURES_TYPE, num_frames=int(n), num_features=int(dim), frame_shift=shift_s,
                             sampling_rate=SAMPLE_RATE, start=float(cut.start), duration=float(cut.duration),
                             storage_type="numpy_hdf5", storage_path=str(features),
                             storage_key=f"{utt_id}/features", recording_id=cut.recording_id, channels=0)
            out.append(_with_features(cut, feats))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_name(f".{manifest.name}.tmp{''.join(manifest.suffixes)}")
    lhotse.CutSet.from_cuts(out).to_file(tmp)
    tmp.replace(manifest)  # atomic: a reader sees the whole manifest or none
    return len(out)


def _with_features(cut, feats):
    from dataclasses import replace

    return replace(cut, features=feats)


def _cuts_from_corpus(lhotse, data, layout, split, id_from) -> dict[str, Any]:
    """A MonoCut per utterance of a corpus that is not a lhotse manifest (its recording read from the file)."""
    from ofactl.data.corpora import probe, read_corpus

    options = {"id_from": id_from} if id_from is not None else {}
    corpus = probe(read_corpus(data, layout, split=split, **options))
    recordings: dict[str, Any] = {}
    cuts = {}
    for u in corpus.utterances:
        if u.path not in recordings:
            recordings[u.path] = lhotse.Recording.from_file(u.path, recording_id=u.id)
        rec = recordings[u.path]
        cuts[u.id] = lhotse.MonoCut(id=u.id, start=float(u.offset_s), duration=float(u.duration_s), channel=0,
                                    recording=rec)
    return cuts
