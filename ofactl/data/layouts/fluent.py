"""``fluent``: Fluent Speech Commands (SUPERB IC).

Files read::

    <root>/data/train_data.csv   -> split "train"
    <root>/data/valid_data.csv   -> split "dev"
    <root>/data/test_data.csv    -> split "test"
    <root>/wavs/speakers/<speakerId>/<name>.wav   (the CSV's ``path`` column, relative to <root>)

``<root>`` is ``fluent_speech_commands_dataset`` or its parent.  The CSV header
is the published one: an unnamed index column, then ``path, speakerId,
transcription, action, object, location``.  As in s3prl
(``s3prl/dataio/corpus/fluent_speech_commands.py``) the id is the file stem and
the official split files are used as they are.  Labels: ``action``, ``object``,
``location`` (``none`` is a value, not a gap), ``text`` (the transcription).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ofactl.data.layouts.base import DirIndex, Problem, Utterance, abspath, finish, first_existing
from ofactl.errors import OfactlError

NAME = "fluent"
DESCRIPTION = "fluent_speech_commands_dataset/data/{train,valid,test}_data.csv + wavs/speakers/<speaker>/*.wav"
SPLIT_FILES = (("train", "train_data.csv"), ("dev", "valid_data.csv"), ("test", "test_data.csv"))
COLUMNS = ("path", "speakerId", "transcription", "action", "object", "location")


def find_root(path: Path) -> Path | None:
    return first_existing([path, path / "fluent_speech_commands_dataset"],
                          lambda c: (c / "data" / "train_data.csv").is_file())


def read(path: Path, *, split=None):
    """Read Fluent Speech Commands with its official splits; see the module docstring."""
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no data/train_data.csv found", hint=f"expected {DESCRIPTION}")
    index = DirIndex()
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    for part, name in SPLIT_FILES:
        csv_path = root / "data" / name
        if not csv_path.is_file():
            continue  # reported as an empty split below
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise OfactlError(f"{csv_path}: missing column(s) {', '.join(missing)}",
                                  hint="expected the published header: ,path,speakerId,transcription,action,object,location")
            for lineno, raw in enumerate(reader, start=2):
                row = {k: (raw.get(k) or "").strip() for k in COLUMNS}
                if not row["path"]:
                    problems.append(Problem(abspath(csv_path), "bad_entry", f"line {lineno}: empty path"))
                    continue
                audio = root / row["path"]
                uid = audio.stem
                if not index.exists(audio):
                    problems.append(Problem(abspath(audio), "missing", f"listed in {name} line {lineno} but not on disk", uid))
                    continue
                utterances.append(Utterance(
                    id=uid, path=abspath(audio), split=part, speaker=row["speakerId"] or None,
                    labels={"action": row["action"], "object": row["object"], "location": row["location"],
                            "text": row["transcription"]}))
    expected = {part: root / "data" / name for part, name in SPLIT_FILES}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)
