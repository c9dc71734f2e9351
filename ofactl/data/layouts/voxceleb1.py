"""``voxceleb1``: VoxCeleb1 for speaker identification (SUPERB SID).

Files read::

    <root>/iden_split.txt                       "<1|2|3> id10001/<video>/00001.wav" per line
    <root>/wav/id1XXXX/<video>/NNNNN.wav        vox1_dev_wav.zip and vox1_test_wav.zip unpacked together
    or <root>/*/wav/id1XXXX/<video>/NNNNN.wav   s3prl's layout: <root>/dev/wav, <root>/test/wav

``iden_split.txt`` is the official identification split (1 train, 2 dev,
3 test) from https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt;
it does not come with the audio zips, so put it in ``<root>`` or pass
``split_file``.  As in s3prl (``s3prl/downstream/voxceleb1/dataset.py``,
``s3prl/dataio/corpus/voxceleb1sid.py``) each listed file is looked up under
every ``wav`` folder; ids are ``id10001-<video>-00001``; the label
``speaker`` is the ``id1XXXX`` folder name (1,251 classes).
"""

from __future__ import annotations

import re
from pathlib import Path

from ofactl.data.layouts.base import (
    DirIndex, Problem, Utterance, abspath, finish, first_existing, visible_dirs,
)
from ofactl.errors import OfactlError

NAME = "voxceleb1"
DESCRIPTION = "iden_split.txt + wav/id1XXXX/<video>/NNNNN.wav (or dev/wav/..., test/wav/...)"
SPLIT_FILE = "iden_split.txt"
SPLIT_FILE_URL = "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt"
_CODES = {"1": "train", "2": "dev", "3": "test"}
_SPEAKER = re.compile(r"^id\d{5}$")


def _wav_roots(c: Path) -> list[Path]:
    roots = [c / "wav"] if (c / "wav").is_dir() else []
    roots += [d / "wav" for d in visible_dirs(c) if (d / "wav").is_dir()]
    return roots


def _has_speakers(wav_root: Path) -> bool:
    return any(_SPEAKER.match(d.name) for d in visible_dirs(wav_root))


def find_root(path: Path) -> Path | None:
    """The folder holding the wav folder(s); one with ``iden_split.txt`` wins over one without."""
    candidates = [c for c in (path, path / "VoxCeleb1", path / "voxceleb1")
                  if c.is_dir() and any(_has_speakers(w) for w in _wav_roots(c))]
    return first_existing(candidates, lambda c: (c / SPLIT_FILE).is_file()) or (candidates[0] if candidates else None)


def read(path: Path, *, split=None, split_file: str | Path | None = None):
    """Read VoxCeleb1 with the official identification split; see the module docstring."""
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no VoxCeleb1 wav/id1XXXX folders found", hint=f"expected {DESCRIPTION}")
    split_path = Path(split_file) if split_file is not None else root / SPLIT_FILE
    if not split_path.is_file():
        if split_file is not None:
            raise OfactlError(f"{split_path}: VoxCeleb1 identification split file not found",
                              hint="check the split_file path")
        raise OfactlError(f"{root} looks like VoxCeleb1 (wav/id1XXXX folders) but has no {SPLIT_FILE}, the official "
                          "identification split",
                          hint=f"download {SPLIT_FILE_URL} into {root}; or, for a plain folder of audio, pass "
                               "--layout generic")
    wav_roots = _wav_roots(root)
    index = DirIndex()
    utterances: list[Utterance] = []
    problems: list[Problem] = []
    with open(split_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[0] not in _CODES or fields[1].count("/") != 2:
                problems.append(Problem(abspath(split_path), "bad_entry",
                                        f"line {lineno}: expected '<1|2|3> id1XXXX/<video>/NNNNN.wav', got {line.strip()!r}"))
                continue
            code, rel = fields
            uid = Path(rel.replace("/", "-")).stem
            speaker = rel.split("/")[0]
            audio = next((w / rel for w in wav_roots if index.exists(w / rel)), None)
            if audio is None:
                problems.append(Problem(abspath(wav_roots[0] / rel), "missing",
                                        f"listed in {split_path.name} line {lineno} but not under any wav folder", uid))
                continue
            utterances.append(Utterance(id=uid, path=abspath(audio), split=_CODES[code], speaker=speaker,
                                        labels={"speaker": speaker}))
    expected = {name: split_path for name in _CODES.values()}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)
