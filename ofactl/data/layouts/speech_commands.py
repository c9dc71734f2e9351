"""``speech_commands``: Google Speech Commands v0.01, split as SUPERB KS splits it.

Files read::

    <train_root>/<word>/<speaker>_nohash_<n>.wav        30 word folders
    <train_root>/_background_noise_/*.wav               6 long noise recordings
    <train_root>/validation_list.txt, testing_list.txt  only to cross-check (see below)
    <test_root>/<class>/*.wav                           speech_commands_test_set_v0.01: 12 class folders

``train_root`` is ``speech_commands_v0.01`` (or the folder its tarball was
unpacked into), or a parent holding it.  ``test_root`` is the ``test_root``
option, else ``speech_commands_test_set_v0.01`` next to or inside the given
folder; without it the corpus has no ``test`` split.

What s3prl does, and so what ofactl does (``s3prl/dataio/corpus/speech_commands.py``
``SpeechCommandsV1`` and ``s3prl/problem/common/superb_ks.py``
``gsc1_for_classification``; the legacy ``s3prl/downstream/speech_commands`` is the same):

- **train / dev are derived, not read from the lists**: s3prl hashes the
  speaker part of each file name (SHA-1 of the name before ``_nohash_``,
  modulo 2**27, as a percentage): < 10 -> dev, < 20 -> discarded (the test
  part of the training archive), else train.  This is the rule that generated
  the published ``validation_list.txt`` / ``testing_list.txt``; ofactl follows
  s3prl and reports a ``split_mismatch`` problem for a list that disagrees.
- Labels: the 10 keywords keep their name, every other word is ``_unknown_``
  (``labels["word"]`` keeps the folder name).
- ``_silence_``: each ``_background_noise_/*.wav`` is cut into consecutive 1 s
  segments (``offset_s``, ``duration_s`` set; the last one may be shorter),
  and the *same* segments go into both train and dev, as in s3prl.  Their ids
  are ``<split>/_background_noise_/<stem>_<start>_<end>`` (samples) so they
  stay unique.  (The legacy s3prl recipe instead took a random 1 s crop per
  access; the segment form is the current s3prl's.)
- test: every ``<test_root>/<class>/*.wav``, labelled by its folder name.

Ids are ``<folder>/<stem>`` (the stem alone repeats across words).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ofactl.data.audio import AudioError, audio_info
from ofactl.data.layouts.base import (
    Problem, Utterance, abspath, files_with_suffix, finish, first_existing, visible_dirs,
)
from ofactl.errors import OfactlError

NAME = "speech_commands"
DESCRIPTION = ("speech_commands_v0.01/<word>/*.wav + _background_noise_/ + validation_list.txt "
               "[+ speech_commands_test_set_v0.01/<class>/*.wav]")
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
CLASSES = KEYWORDS + (UNKNOWN, SILENCE)
TRAIN_DIR, TEST_DIR = "speech_commands_v0.01", "speech_commands_test_set_v0.01"
NOISE_DIR = "_background_noise_"
_MAX_PER_CLASS = 2**27 - 1  # the constant of the dataset's which_set() and of s3prl


def which_set(filename: str) -> str:
    """``"dev"``, ``"test"`` or ``"train"`` for a file name, by the dataset's own hash rule."""
    speaker = re.sub(r"_nohash_.*$", "", filename)
    digest = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    percentage = (digest % (_MAX_PER_CLASS + 1)) * (100.0 / _MAX_PER_CLASS)
    if percentage < 10:
        return "dev"
    if percentage < 20:
        return "test"
    return "train"


def _is_train_root(c: Path) -> bool:
    return (c / NOISE_DIR).is_dir() and ((c / "validation_list.txt").is_file() or (c / "testing_list.txt").is_file())


def find_root(path: Path) -> Path | None:
    return first_existing([path, path / TRAIN_DIR], _is_train_root)


def read(path: Path, *, split=None, test_root: str | Path | None = None):
    """Read Speech Commands v0.01 for SUPERB KS; see the module docstring."""
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: not a Speech Commands v0.01 folder", hint=f"expected {DESCRIPTION}")
    if test_root is not None:
        test_dir = Path(test_root)
        if not test_dir.is_dir():
            raise OfactlError(f"{test_dir}: test_root is not a folder",
                              hint=f"point it at the unpacked {TEST_DIR}.tar.gz")
    else:
        test_dir = first_existing([root.parent / TEST_DIR, path / TEST_DIR, root / TEST_DIR], Path.is_dir)

    utterances: list[Utterance] = []
    problems: list[Problem] = []
    for word_dir in visible_dirs(root):
        if word_dir.name == NOISE_DIR or word_dir == test_dir:
            continue
        keyword = word_dir.name if word_dir.name in KEYWORDS else UNKNOWN
        for wav in files_with_suffix(word_dir, [".wav"]):
            part = which_set(wav.name)
            if part == "test":
                continue  # s3prl discards the test part of the training archive
            utterances.append(Utterance(
                id=f"{word_dir.name}/{wav.stem}", path=abspath(wav), split=part,
                speaker=wav.name.split("_nohash_")[0], labels={"keyword": keyword, "word": word_dir.name}))

    for noise in files_with_suffix(root / NOISE_DIR, [".wav"]):
        try:
            info = audio_info(noise)
        except AudioError as err:
            problems.append(Problem(err.path, err.reason, err.detail))
            continue
        sr = info.sample_rate
        for part in ("train", "dev"):
            for start in range(0, info.frames, sr):
                end = min(start + sr, info.frames)
                utterances.append(Utterance(
                    id=f"{part}/{NOISE_DIR}/{noise.stem}_{start}_{end}", path=abspath(noise), split=part,
                    duration_s=(end - start) / sr, offset_s=start / sr, labels={"keyword": SILENCE}))

    expected: dict[str, Path] = {"train": root, "dev": root}
    if test_dir is not None:
        expected["test"] = test_dir
        for class_dir in visible_dirs(test_dir):
            keyword = class_dir.name if class_dir.name in CLASSES else UNKNOWN
            for wav in files_with_suffix(class_dir, [".wav"]):
                utterances.append(Utterance(
                    id=f"{class_dir.name}/{wav.stem}", path=abspath(wav), split="test",
                    speaker=wav.name.split("_nohash_")[0] if "_nohash_" in wav.name else None,
                    labels={"keyword": keyword, "word": class_dir.name}))

    problems += _check_lists(root)
    missing = None if test_dir is not None else {"test": (
        f"its test set, the separate archive {TEST_DIR}.tar.gz, was not found",
        f"unpack {TEST_DIR}.tar.gz into {root.parent / TEST_DIR} (next to {root.name}), "
        f"or into {path / TEST_DIR}")}
    return finish(NAME, root, utterances, problems, split=split, expected=expected, missing=missing)


def _check_lists(root: Path) -> list[Problem]:
    """One ``split_mismatch`` problem per official list that disagrees with the hash rule."""
    problems = []
    for list_name, part in (("validation_list.txt", "dev"), ("testing_list.txt", "test")):
        list_path = root / list_name
        if not list_path.is_file():
            continue
        entries = [line.strip() for line in list_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        wrong = [e for e in entries if which_set(Path(e).name) != part]
        if wrong:
            problems.append(Problem(
                abspath(list_path), "split_mismatch",
                f"{len(wrong)} of {len(entries)} files listed here are not in {part!r} under the hash rule "
                f"s3prl uses (e.g. {wrong[0]}); ofactl follows s3prl"))
    return problems
