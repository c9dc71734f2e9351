"""``quesst14``: the QUESST 2014 database (SUPERB QbE).

Files read::

    <root>/scoring/language_key_utterances.lst   "<top>/Audio/quesst14_NNNNN.wav <language>"  -> split "docs"
    <root>/scoring/language_key_dev.lst          "<top>/dev_queries/quesst14_dev_NNNN.wav <language>"  -> "dev"
    <root>/scoring/language_key_eval.lst         "<top>/eval_queries/quesst14_eval_NNNN.wav <language>" -> "test"
    <root>/scoring/groundtruth_quesst14_{dev,eval}/quesst14_{dev,eval}.rttm   LEXEME lines: doc ... query

``<root>`` is ``quesst14Database`` or its parent.  As in s3prl
(``s3prl/dataio/corpus/quesst14.py``, ``s3prl/downstream/quesst14_dtw``) and
torchaudio's ``QUESST14``, only ``nnenglish`` entries are kept (option
``language``; None keeps all six languages), and a list entry's path is
relative to ``<root>`` once its first component is dropped.  Ids are file
stems.  Labels: ``role`` (``document`` or ``query``), ``language``, and for
queries ``matches``: the sorted ids of the documents the ground-truth RTTM
says contain the query (only when the RTTM is there).  The official
``eval`` queries are the ``test`` split.
"""

from __future__ import annotations

import re
from pathlib import Path

from ofactl.data.layouts.base import DirIndex, Problem, Utterance, abspath, finish, first_existing
from ofactl.errors import OfactlError

NAME = "quesst14"
DESCRIPTION = "quesst14Database/scoring/language_key_{utterances,dev,eval}.lst + Audio/, dev_queries/, eval_queries/"
LANGUAGES = ("albanian", "basque", "czech", "nnenglish", "romanian", "slovak")
LISTS = (("docs", "language_key_utterances.lst", None),
         ("dev", "language_key_dev.lst", "dev"),
         ("test", "language_key_eval.lst", "eval"))
_LEXEME = re.compile(r"LEXEME\s+(quesst14_[0-9]+)\b.*?\b(quesst14_(?:dev|eval)_[0-9]+)")


def find_root(path: Path) -> Path | None:
    return first_existing([path, path / "quesst14Database"],
                          lambda c: (c / "scoring" / "language_key_utterances.lst").is_file())


def read(path: Path, *, split=None, language: str | None = "nnenglish"):
    """Read QUESST 2014 documents and queries; see the module docstring."""
    if language is not None and language not in LANGUAGES:
        raise OfactlError(f"unknown QUESST14 language {language!r}", hint=f"one of {', '.join(LANGUAGES)}, or None")
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no scoring/language_key_utterances.lst found", hint=f"expected {DESCRIPTION}")
    scoring = root / "scoring"
    index = DirIndex()
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    for part, list_name, truth in LISTS:
        list_path = scoring / list_name
        if not list_path.is_file():
            continue  # reported as an empty split
        matches = None
        rttm = scoring / f"groundtruth_quesst14_{truth}" / f"quesst14_{truth}.rttm" if truth else None
        if rttm is not None and rttm.is_file():
            matches = _read_rttm(rttm)
        for lineno, line in enumerate(list_path.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                problems.append(Problem(abspath(list_path), "bad_entry",
                                        f"line {lineno}: expected '<path> <language>', got {line.strip()!r}"))
                continue
            entry, lang = fields
            if language is not None and lang != language:
                continue
            audio = _resolve(root, entry, index)
            uid = audio.stem
            if not index.exists(audio):
                problems.append(Problem(abspath(audio), "missing", f"listed in {list_name} line {lineno} but not on disk", uid))
                continue
            labels: dict = {"role": "document" if truth is None else "query", "language": lang}
            if matches is not None:
                labels["matches"] = sorted(matches.get(uid, ()))
            utterances.append(Utterance(id=uid, path=abspath(audio), split=part, labels=labels))
    expected = {part: scoring / list_name for part, list_name, _ in LISTS}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)


def _resolve(root: Path, entry: str, index: DirIndex) -> Path:
    """s3prl/torchaudio drop the entry's first path component; fall back to the entry as written."""
    stripped = root / re.sub(r"^.*?/", "", entry)
    if index.exists(stripped) or not index.exists(root / entry):
        return stripped
    return root / entry


def _read_rttm(rttm: Path) -> dict[str, set[str]]:
    """query id -> ids of the documents it occurs in."""
    found: dict[str, set[str]] = {}
    with open(rttm, encoding="utf-8") as f:
        for line in f:
            m = _LEXEME.match(line)
            if m:
                found.setdefault(m.group(2), set()).add(m.group(1))
    return found
