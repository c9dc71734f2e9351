"""``generic``: a folder of audio files, one audio file, or a manifest ``.tsv`` / ``.csv``.

One audio file: a corpus of that one utterance (id = its stem, split ``all``).

Folder: every audio file at any depth (hidden files skipped), split ``all``,
id = the file stem; two files with the same stem are an error unless
``id_from="relpath"``, which takes the path relative to the folder without its
extension (``spk1/utt1``).

Manifest: a header row with at least ``id`` and ``path`` (relative to the
manifest's folder, or absolute); optional ``split`` (default ``all``),
``duration_s``, ``offset_s``; every other column is a label (``speaker`` also
fills :attr:`Utterance.speaker`; ``phones`` is split on spaces into a list).
Empty cells are left out.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ofactl.data.audio import AUDIO_EXTENSIONS
from ofactl.data.layouts.base import (
    SPLIT_ALL, DirIndex, Problem, Utterance, abspath, finish, scan_audio,
)
from ofactl.errors import OfactlError

NAME = "generic"
DESCRIPTION = ("a folder of audio files at any depth (id = file stem), one audio file, or a manifest .tsv/.csv "
               "with columns id, path[, split, duration_s, offset_s, label columns]")
MANIFEST_SUFFIXES = (".tsv", ".csv")
_RESERVED = ("id", "path", "split", "duration_s", "offset_s")


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(AUDIO_EXTENSIONS)


def find_root(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() in MANIFEST_SUFFIXES or _is_audio(path) else None
    if path.is_dir() and next(scan_audio(path), None) is not None:
        return path
    return None


def read(path: Path, *, split=None, id_from: str = "stem"):
    """Read a folder of audio files or a manifest; see the module docstring."""
    if id_from not in ("stem", "relpath"):
        raise OfactlError(f"id_from must be 'stem' or 'relpath', not {id_from!r}")
    if _is_audio(path):  # one file: a corpus of one utterance
        return finish(NAME, path.parent, [Utterance(id=path.stem, path=abspath(path), split=SPLIT_ALL)], [],
                      split=split)
    if path.is_file():
        return _read_manifest(path, split)
    return _read_folder(path, split, id_from)


def _read_folder(root: Path, split, id_from: str):
    utterances: list[Utterance] = []
    by_id: dict[str, list[Path]] = {}
    for f in scan_audio(root):
        uid = f.stem if id_from == "stem" else f.relative_to(root).with_suffix("").as_posix()
        by_id.setdefault(uid, []).append(f)
        utterances.append(Utterance(id=uid, path=abspath(f), split=SPLIT_ALL))
    dups = {k: v for k, v in by_id.items() if len(v) > 1}
    if dups:
        uid, files = next(iter(dups.items()))
        raise OfactlError(
            f"{root}: {len(dups)} file stems occur more than once (e.g. {uid!r}: "
            f"{', '.join(str(f.relative_to(root)) for f in files[:3])})",
            hint="ids must be unique: take them from relative paths (id_from='relpath', --id-from relpath) "
                 "or rename the files")
    return finish(NAME, root, utterances, [], split=split)


def _read_manifest(manifest: Path, split):
    delimiter = "\t" if manifest.suffix.lower() == ".tsv" else ","
    base = manifest.parent
    index = DirIndex()
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in ("id", "path") if c not in columns]
        if missing:
            raise OfactlError(
                f"{manifest}: manifest lacks column(s) {', '.join(missing)} (found: {', '.join(columns) or 'no header'})",
                hint="the first row must name the columns: id, path[, split, duration_s, offset_s, labels...]")
        reader.fieldnames = columns
        for lineno, row in enumerate(reader, start=2):
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            where = f"{manifest}:{lineno}"
            if not row.get("id") or not row.get("path"):
                problems.append(Problem(abspath(manifest), "bad_entry", f"line {lineno}: empty id or path"))
                continue
            audio = Path(row["path"])
            audio = audio if audio.is_absolute() else base / audio
            try:
                offset = float(row["offset_s"]) if row.get("offset_s") else 0.0
                duration = float(row["duration_s"]) if row.get("duration_s") else None
            except ValueError:
                problems.append(Problem(abspath(audio), "bad_entry",
                                        f"{where}: offset_s/duration_s is not a number", row["id"]))
                continue
            if offset < 0 or (duration is not None and duration <= 0):
                problems.append(Problem(abspath(audio), "bad_entry",
                                        f"{where}: negative offset_s or non-positive duration_s", row["id"]))
                continue
            if not index.exists(audio):
                problems.append(Problem(abspath(audio), "missing", f"listed in {where} but not on disk", row["id"]))
                continue
            labels: dict = {k: v for k, v in row.items() if k not in _RESERVED and v}
            if "phones" in labels:
                labels["phones"] = labels["phones"].split()
            utterances.append(Utterance(
                id=row["id"], path=abspath(audio), split=row.get("split") or SPLIT_ALL,
                duration_s=duration, offset_s=offset, speaker=labels.get("speaker"), labels=labels))
    return finish(NAME, manifest, utterances, problems, split=split)
