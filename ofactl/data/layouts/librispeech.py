"""``librispeech``: LibriSpeech as published at openslr.org/12.

Files read, for each split folder (``train-clean-100``, ``dev-clean``, ...)::

    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   "<utt-id> <TEXT>" per line
    <root>/<split>/<speaker>/<chapter>/<utt-id>.flac
    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.phones.txt  optional, ofactl's extension:
                                                                       "<utt-id> <phone> <phone> ..."

``root`` may be the ``LibriSpeech`` folder or its parent; a split folder itself
reads that split only.  Splits are the folder names.  Labels: ``text`` (the
transcript as published, upper case) and, where a ``.phones.txt`` names the
utterance, ``phones`` (a list).  LibriSpeech ships no phones; ofactl's
synthetic corpus and alignment imports write that file.
"""

from __future__ import annotations

from pathlib import Path

from ofactl.data.layouts.base import (
    DirIndex, Problem, Utterance, abspath, as_split_set, finish, first_existing, visible_dirs,
)
from ofactl.errors import OfactlError

NAME = "librispeech"
DESCRIPTION = "<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-NNNN.flac + <speaker>-<chapter>.trans.txt"
#: Published split folders, in the order a corpus lists them.
SPLITS = ("train-clean-100", "train-clean-360", "train-other-500",
          "dev-clean", "dev-other", "test-clean", "test-other")


def _is_split_dir(d: Path) -> bool:
    """True when the first speaker/chapter folder of ``d`` holds its ``.trans.txt``."""
    speakers = [s for s in visible_dirs(d) if s.name.isdigit()]
    for spk in speakers[:3]:
        for chap in [c for c in visible_dirs(spk) if c.name.isdigit()][:3]:
            if (chap / f"{spk.name}-{chap.name}.trans.txt").is_file():
                return True
    return False


def _locate(path: Path) -> tuple[Path, list[Path]] | None:
    """(corpus root, split folders) for a LibriSpeech root, its parent, or one split folder."""
    root = first_existing([path, path / "LibriSpeech"],
                          lambda c: c.is_dir() and any(_is_split_dir(d) for d in visible_dirs(c)))
    if root is not None:
        order = {name: i for i, name in enumerate(SPLITS)}
        splits = [d for d in visible_dirs(root) if _is_split_dir(d)]
        return root, sorted(splits, key=lambda d: (order.get(d.name, len(order)), d.name))
    if path.is_dir() and _is_split_dir(path):
        return path.parent, [path]
    return None


def find_root(path: Path) -> Path | None:
    found = _locate(path)
    return found[0] if found else None


def read(path: Path, *, split=None):
    """Read LibriSpeech; see the module docstring for the files read."""
    found = _locate(path)
    if found is None:
        raise OfactlError(f"{path}: no LibriSpeech split folders found", hint=f"expected {DESCRIPTION}")
    root, split_dirs = found
    wanted = as_split_set(split)
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    for split_dir in split_dirs:
        if wanted is not None and split_dir.name not in wanted:
            continue
        _read_split(split_dir, utterances, problems)
    expected = {d.name: d for d in split_dirs}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)


def _read_split(split_dir: Path, utterances: list[Utterance], problems: list[Problem]) -> None:
    index = DirIndex()
    for spk in visible_dirs(split_dir):
        for chap in visible_dirs(spk):
            names = index.names(chap)
            stem = f"{spk.name}-{chap.name}"
            flacs = {n[:-5] for n in names if n.endswith(".flac") and not n.startswith(".")}
            trans = chap / f"{stem}.trans.txt"
            if f"{stem}.trans.txt" not in names:
                for uid in sorted(flacs):
                    problems.append(Problem(abspath(chap / f"{uid}.flac"), "unlabeled",
                                            f"no transcript: {trans.name} is missing", uid))
                continue
            phones = _read_table(chap / f"{stem}.phones.txt", problems) if f"{stem}.phones.txt" in names else {}
            texts = _read_table(trans, problems)
            for uid, text in texts.items():
                audio = chap / f"{uid}.flac"
                if not uid.startswith(stem + "-"):
                    problems.append(Problem(abspath(trans), "bad_entry",
                                            f"utterance id {uid!r} does not belong to chapter {stem}", uid))
                    continue
                if uid not in flacs:
                    problems.append(Problem(abspath(audio), "missing", f"listed in {trans.name} but not on disk", uid))
                    continue
                labels: dict = {"text": text}
                if uid in phones:
                    labels["phones"] = phones[uid].split()
                utterances.append(Utterance(id=uid, path=abspath(audio), split=split_dir.name,
                                            speaker=spk.name, labels=labels))
            for uid in sorted(flacs - texts.keys()):
                problems.append(Problem(abspath(chap / f"{uid}.flac"), "unlabeled",
                                        f"not listed in {trans.name}", uid))


def _read_table(path: Path, problems: list[Problem]) -> dict[str, str]:
    """``<id> <rest of line>`` per line; malformed lines become problems."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            uid, _, rest = line.partition(" ")
            if not rest.strip():
                problems.append(Problem(abspath(path), "bad_entry", f"line {lineno}: no text after id {uid!r}", uid))
                continue
            table[uid] = rest.strip()
    return table
