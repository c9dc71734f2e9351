"""``lhotse``: corpora prepared as lhotse manifests (the data layer of icefall and of lhotse's recipes).

Accepted::

    cuts.jsonl.gz                                   one CutSet manifest (split from the name, else ``all``)
    <folder>/<prefix>cuts_<split>.jsonl.gz          a CutSet per split, as lhotse's recipes and icefall write
    <folder>/<prefix>recordings_<split>.jsonl.gz    or Recording + Supervision manifests per split
           + <prefix>supervisions_<split>.jsonl.gz

(``.jsonl``, ``.json`` and ``.json.gz`` too.)  Each cut is one utterance: id
the cut id, audio the recording's file from ``cut.start`` for
``cut.duration`` seconds (cuts inside long recordings are read in place;
several channels are averaged, as every other layout does).  Labels come
from the cut's supervisions: ``text`` (their texts joined), ``speaker``,
``language``, ``gender``, then every ``custom`` field of the first
supervision and of the cut (``phones`` given as a string is split on spaces),
so a task finds the labels it reads (``speaker`` for sid, ``keyword`` for ks,
``text`` for asr, ...) under those names.  A cut that is not a single-recording
cut, whose audio is not a local file, or that runs past the end of its
recording is left out as a ``bad_entry`` naming the cut; missing audio and
duplicate cut ids are reported as in every layout.  Reading needs the
``lhotse`` package (``pip install 'ofactl[lhotse]'``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ofactl.data.layouts.base import SPLIT_ALL, Problem, Utterance, finish
from ofactl.errors import OfactlError

NAME = "lhotse"
DESCRIPTION = ("a lhotse CutSet manifest (cuts.jsonl.gz), or a folder of <prefix>cuts_<split>.jsonl.gz (or "
               "recordings_<split> + supervisions_<split>) manifests")
SUFFIXES = (".jsonl.gz", ".jsonl", ".json.gz", ".json")
_KIND = re.compile(r"^(?P<prefix>.*?)(?P<kind>cuts|recordings|supervisions)(?:_(?P<split>.+))?$")
#: Seconds a cut may run past its recording's end before it is a bad entry (as for other layouts' segments).
_END_TOLERANCE_S = 0.01


def _parts(path: Path) -> tuple[str, str, str | None] | None:
    """(prefix, kind, split) of a manifest file name, or None."""
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            match = _KIND.match(name[: -len(suffix)])
            return (match["prefix"], match["kind"], match["split"]) if match else None
    return None


def _manifests(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and _parts(p) is not None)
    except OSError:
        return []


def find_root(path: Path) -> Path | None:
    if path.is_file():
        parts = _parts(path)
        return path if parts is not None and parts[1] == "cuts" else None
    if path.is_dir() and any(_parts(p)[1] in ("cuts", "recordings") for p in _manifests(path)):
        return path
    return None


def _require_lhotse():
    try:
        import lhotse
    except ImportError:
        raise OfactlError("reading lhotse manifests needs the lhotse package",
                          hint="pip install 'ofactl[lhotse]' (or pip install lhotse)") from None
    return lhotse


def _cut_sets(path: Path) -> dict[str, Any]:
    """split -> CutSet of every manifest ``path`` holds."""
    lhotse = _require_lhotse()
    if path.is_file():
        _, _, split = _parts(path)
        return {split or SPLIT_ALL: _load(lhotse.CutSet, path)}
    files = _manifests(path)
    by_split: dict[str, dict[str, Path]] = {}
    for f in files:
        _, kind, split = _parts(f)
        by_split.setdefault(split or SPLIT_ALL, {})[kind] = f
    sets = {}
    for split, kinds in sorted(by_split.items()):
        if "cuts" in kinds:
            sets[split] = _load(lhotse.CutSet, kinds["cuts"])
        elif "recordings" in kinds:
            recordings = _load(lhotse.RecordingSet, kinds["recordings"])
            supervisions = _load(lhotse.SupervisionSet, kinds["supervisions"]) if "supervisions" in kinds else None
            sets[split] = lhotse.CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    return sets


def _load(kind, path: Path):
    try:
        return kind.from_file(path)
    except Exception as err:  # noqa: BLE001 - lhotse raises many kinds on a bad manifest: one line each
        raise OfactlError(f"{path}: not a readable lhotse {kind.__name__} manifest "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                          hint="write it with lhotse (e.g. CutSet.to_file)") from None


def _audio_path(source: str, manifest_dir: Path) -> str:
    """lhotse keeps paths as written (often relative to where the manifest was made): the current folder first,
    then the manifest's."""
    p = Path(source)
    if p.is_absolute():
        return str(p)
    here = Path.cwd() / p
    return str(here if os.path.lexists(here) else manifest_dir / p)


def _labels(cut) -> tuple[dict[str, Any], str | None]:
    sups = list(getattr(cut, "supervisions", []) or [])
    labels: dict[str, Any] = {}
    texts = [s.text for s in sups if getattr(s, "text", None)]
    if texts:
        labels["text"] = " ".join(texts)
    first = sups[0] if sups else None
    for key in ("speaker", "language", "gender"):
        value = getattr(first, key, None) if first is not None else None
        if value:
            labels[key] = value
    for custom in ((getattr(first, "custom", None) if first is not None else None), getattr(cut, "custom", None)):
        for key, value in (custom or {}).items():
            labels[key] = value.split() if key == "phones" and isinstance(value, str) else value
    return labels, labels.get("speaker")


def read(path: Path, *, split=None):
    """Read lhotse manifests; see the module docstring."""
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no lhotse manifest found", hint=f"expected {DESCRIPTION}")
    manifest_dir = root if root.is_dir() else root.parent
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    expected: dict[str, Path] = {}
    for split_name, cuts in _cut_sets(root).items():
        expected[split_name] = root
        for cut in cuts:
            where = str(manifest_dir)
            recording = getattr(cut, "recording", None)
            if recording is None:
                problems.append(Problem(where, "bad_entry", f"cut {cut.id} has no single recording "
                                                            f"({type(cut).__name__}); mix or pad cuts first", cut.id))
                continue
            sources = [s for s in recording.sources if s.type == "file"]
            if not sources:
                kinds = ", ".join(sorted({s.type for s in recording.sources}))
                problems.append(Problem(where, "bad_entry", f"cut {cut.id}: its audio is not a local file "
                                                            f"(source type {kinds})", cut.id))
                continue
            channel = getattr(cut, "channel", 0)
            chosen = next((s for s in sources if isinstance(channel, int) and channel in s.channels), sources[0])
            audio = _audio_path(str(chosen.source), manifest_dir)
            if cut.start + cut.duration > recording.duration + _END_TOLERANCE_S:
                problems.append(Problem(audio, "bad_entry", f"cut {cut.id} ends at {cut.start + cut.duration:g} s, "
                                                            f"after its recording ({recording.duration:g} s)", cut.id))
                continue
            labels, speaker = _labels(cut)
            utterances.append(Utterance(id=cut.id, path=audio, split=split_name, duration_s=float(cut.duration),
                                        offset_s=float(cut.start), speaker=speaker, labels=labels))
    return finish(NAME, root, utterances, problems, split=split, expected=expected)
