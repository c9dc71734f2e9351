"""``covost2``: CoVoST 2 speech translation (SUPERB ST), as s3prl's ST recipe prepares it.

Files read::

    <root>/covost_v2.<src>_<tgt>.train.tsv    -> split "train"
    <root>/covost_v2.<src>_<tgt>.dev.tsv      -> split "dev"
    <root>/covost_v2.<src>_<tgt>.test.tsv     -> split "test"
    <clips>/<path>                            the Common Voice clip of each row (mp3 in the release)

These are the three files that CoVoST's ``get_covost_splits.py`` writes from
``covost_v2.<src>_<tgt>.tsv`` and Common Voice's ``validated.tsv`` (the first
step of s3prl's ``prepare_covo.sh``): tab-separated, a header line, columns
``path, sentence, translation, client_id``, no quoting, ``\\`` as the escape
character.  ``<root>`` is the folder holding them (or its parent, when the folder is
called ``covost_tsv``, ``covost`` or ``CoVoST2``).  ``<clips>`` is the first of ``<root>/clips``,
``<root>/<src>/clips`` and ``<root>/../clips`` that exists: put the TSV files
next to Common Voice's ``clips`` folder, or into the Common Voice release
folder (``cv-corpus-4-2019-12-10/``, which holds ``en/clips``).

The language pair is read from the file names; ``en_de`` (SUPERB's) is
chosen when several pairs are present.  Clips are read through soundfile:
Common Voice's mp3 needs libsndfile 1.1 or newer (the one soundfile's wheels
bundle has it); 48 kHz clips are resampled to 16 kHz.

The utterance id is the clip name without its extension (as s3prl's
``prepare_data.py`` names it); the speaker is ``client_id``.  Labels:
``sentence`` (the transcript), ``translation``, ``src_lang``, ``tgt_lang``
and ``text`` (the transcript, for readers that look for one).  A row with
too few columns, an empty sentence or an empty translation is a
``bad_entry`` naming its line; a clip listed but absent is ``missing``; the
other rows are used.  A file whose header lacks one of the four columns is
an error (nothing in it could be read).  The text clean-up and the
sentence-pair filter of s3prl's recipe belong to the ``st`` task.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from ofactl.data.layouts.base import DirIndex, Problem, Utterance, abspath, finish, first_existing
from ofactl.errors import OfactlError

NAME = "covost2"
DESCRIPTION = "covost_v2.<src>_<tgt>.{train,dev,test}.tsv (path, sentence, translation, client_id) + clips/<path>"
SPLITS = ("train", "dev", "test")
COLUMNS = ("path", "sentence", "translation", "client_id")
PREFERRED_PAIR = ("en", "de")
_TSV = re.compile(r"^covost_v2\.([A-Za-z-]+)_([A-Za-z-]+)\.(train|dev|test)\.tsv$")


def pairs(folder: Path) -> list[tuple[str, str]]:
    """The ``(src, tgt)`` language pairs with split files in ``folder``, sorted."""
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return []
    return sorted({(m.group(1), m.group(2)) for m in map(_TSV.match, names) if m})


def find_root(path: Path) -> Path | None:
    return first_existing([path, path / "covost_tsv", path / "covost", path / "CoVoST2"],
                          lambda c: c.is_dir() and bool(pairs(c)))


def tsv_name(src: str, tgt: str, split: str) -> str:
    return f"covost_v2.{src}_{tgt}.{split}.tsv"


def clips_folder(root: Path, src: str) -> Path | None:
    """Where the clips are: ``<root>/clips``, ``<root>/<src>/clips`` or ``<root>/../clips``."""
    return first_existing([root / "clips", root / src / "clips", root.parent / "clips"], Path.is_dir)


def _pair(root: Path) -> tuple[str, str]:
    found = pairs(root)
    return PREFERRED_PAIR if PREFERRED_PAIR in found else found[0]


def _rows(tsv: Path):
    """``(line number, row dict or None, problem detail)`` of each data line of a split file."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(tsv, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        try:
            header = next(reader)
        except StopIteration:
            return
        absent = [c for c in COLUMNS if c not in header]
        if absent:
            raise OfactlError(f"{tsv}: no {', '.join(absent)} column in the header",
                              hint="expected the columns path, sentence, translation, client_id, "
                                   "as CoVoST's get_covost_splits.py writes them")
        where = {c: header.index(c) for c in COLUMNS}
        for row in reader:
            lineno = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(where.values()):
                have = [c for c in COLUMNS if where[c] < len(row)]
                yield lineno, None, f"line {lineno}: {len(row)} columns, no {', '.join(c for c in COLUMNS if c not in have)}"
                continue
            yield lineno, {c: row[where[c]].strip() for c in COLUMNS}, ""


def read(path: Path, *, split=None):
    """Read CoVoST 2 with its official splits; see the module docstring."""
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no covost_v2.<src>_<tgt>.<split>.tsv found", hint=f"expected {DESCRIPTION}")
    src, tgt = _pair(root)
    clips = clips_folder(root, src)
    if clips is None:
        raise OfactlError(f"{root}: no clips folder for the CoVoST 2 files",
                          hint=f"put Common Voice's clips folder at {root / 'clips'} or {root / src / 'clips'}")
    index = DirIndex()
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    for part in SPLITS:
        tsv = root / tsv_name(src, tgt, part)
        if not tsv.is_file():
            continue  # reported as an empty split below
        for lineno, row, detail in _rows(tsv):
            if row is None:
                problems.append(Problem(abspath(tsv), "bad_entry", detail))
                continue
            if not row["path"]:
                problems.append(Problem(abspath(tsv), "bad_entry", f"line {lineno}: empty path"))
                continue
            uid = row["path"].split(".")[0]
            empty = [c for c in ("sentence", "translation") if not row[c]]
            if empty:
                problems.append(Problem(abspath(tsv), "bad_entry", f"line {lineno}: empty {' and '.join(empty)}", uid))
                continue
            audio = clips / row["path"]
            if not index.exists(audio):
                problems.append(Problem(abspath(audio), "missing", f"listed in {tsv.name} line {lineno} but not on disk",
                                        uid))
                continue
            utterances.append(Utterance(
                id=uid, path=abspath(audio), split=part, speaker=row["client_id"] or None,
                labels={"sentence": row["sentence"], "translation": row["translation"], "text": row["sentence"],
                        "src_lang": src, "tgt_lang": tgt}))
    expected = {part: root / tsv_name(src, tgt, part) for part in SPLITS}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)
