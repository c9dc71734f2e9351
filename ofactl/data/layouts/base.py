"""Record types shared by every corpus reader, and the small helpers they use.

Nothing here reads audio samples; the only header reads go through
:func:`ofactl.data.audio.audio_info`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ofactl.data.audio import AUDIO_EXTENSIONS
from ofactl.data.problems import PROBLEM_REASONS, Problem  # noqa: F401  (re-exported: the records of a corpus)
from ofactl.errors import OfactlError

#: Split name given to utterances of a layout that has no splits (a plain folder of audio).
SPLIT_ALL = "all"

@dataclass(frozen=True, slots=True)
class Utterance:
    """One utterance (or a segment of a longer file) and its labels.

    Attributes:
        id: unique within its corpus.
        path: absolute path of the audio file.
        split: e.g. ``"train"``, ``"dev"``, ``"test"``, ``"dev-clean"``.
        duration_s: seconds of audio, None until :func:`ofactl.data.corpora.probe` reads the header.
        offset_s: where the utterance starts in the file (nonzero for segments).
        speaker: speaker id where the layout names one.
        labels: task labels, e.g. ``text`` (asr), ``phones`` (pr, a list of str),
            ``keyword`` (ks), ``speaker`` (sid), ``action``/``object``/``location`` (ic),
            ``emotion`` (er), ``matches`` (qbe queries).
    """

    id: str
    path: str
    split: str
    duration_s: float | None = None
    offset_s: float = 0.0
    speaker: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class Corpus:
    """The utterances of one corpus on disk, and what was left out and why."""

    layout: str
    root: str
    utterances: list[Utterance]
    problems: list[Problem] = field(default_factory=list)
    #: header facts per audio path, filled by :func:`ofactl.data.corpora.probe`
    headers: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def splits(self) -> list[str]:
        """Split names, in order of first appearance."""
        return list(dict.fromkeys(u.split for u in self.utterances))

    def by_split(self, name: str) -> list[Utterance]:
        """The utterances of split ``name``; an unknown name is an error naming the known ones."""
        found = [u for u in self.utterances if u.split == name]
        if not found:
            raise OfactlError(f"{self.root}: no utterances in split {name!r} of this {self.layout} corpus",
                              hint=f"known splits: {', '.join(self.splits()) or 'none'}")
        return found

    def label_counts(self, key: str, split: str | None = None) -> Counter:
        """How often each value of label ``key`` occurs (list labels count each element)."""
        counts: Counter = Counter()
        for u in self.utterances:
            if split is not None and u.split != split:
                continue
            value = u.labels.get(key)
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                counts.update(value)
            else:
                counts[value] += 1
        return counts


@dataclass(frozen=True)
class Layout:
    """A published corpus layout: how to recognise it and how to read it."""

    name: str
    read: Callable[..., Corpus]
    find_root: Callable[[Path], Path | None]
    description: str


class DirIndex:
    """Answers "does this file exist" with one directory listing per folder.

    Layouts driven by split lists (VoxCeleb1: 153k lines) would otherwise stat
    every file; listing each folder once is much cheaper on network filesystems.
    """

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def names(self, directory: str | Path) -> frozenset[str]:
        key = str(directory)
        if key not in self._names:
            try:
                with os.scandir(key) as it:
                    self._names[key] = frozenset(e.name for e in it)
            except OSError:
                self._names[key] = frozenset()
        return self._names[key]

    def exists(self, path: str | Path) -> bool:
        head, tail = os.path.split(str(path))
        return tail in self.names(head or ".")


def abspath(path: str | Path) -> str:
    """Absolute path without resolving symlinks (datasets are often linked in)."""
    return os.path.abspath(os.fspath(path))


def visible_dirs(directory: Path) -> list[Path]:
    """Sub-directories of ``directory`` (sorted, hidden ones skipped); [] when unreadable."""
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def files_with_suffix(directory: Path, suffixes: Sequence[str]) -> list[Path]:
    """Visible files of ``directory`` ending in one of ``suffixes`` (case-insensitive), sorted."""
    suffixes = tuple(s.lower() for s in suffixes)
    try:
        with os.scandir(directory) as it:
            names = [e.name for e in it if not e.name.startswith(".") and e.name.lower().endswith(suffixes)
                     and e.is_file()]
    except OSError:
        return []
    return [directory / n for n in sorted(names)]


def scan_audio(root: Path) -> Iterator[Path]:
    """Every audio file under ``root`` (any depth, sorted, hidden files and folders such as
    macOS ``._*`` copies skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS):
                yield Path(dirpath) / name


def first_existing(candidates: Iterable[Path], test: Callable[[Path], bool]) -> Path | None:
    """The first candidate for which ``test`` holds."""
    for c in candidates:
        try:
            if test(c):
                return c
        except OSError:
            continue
    return None


def as_split_set(split: str | Sequence[str] | None) -> set[str] | None:
    if split is None:
        return None
    return {split} if isinstance(split, str) else set(split)


def finish(
    layout: str,
    root: Path,
    utterances: list[Utterance],
    problems: list[Problem],
    *,
    split: str | Sequence[str] | None = None,
    expected: Mapping[str, str | Path] | None = None,
    missing: Mapping[str, tuple[str, str]] | None = None,
) -> Corpus:
    """Drop duplicate ids, keep the requested splits, flag empty ones, build the Corpus.

    Args:
        expected: split name -> the file or folder that defines it; a split in
            here with no utterance becomes an ``empty_split`` problem.
        missing: split name -> (what was not found, where it goes) for a split
            the layout knows but whose files are absent: asking for it names them.
        split: one split name or several; an unknown name is an error.
    """
    expected = dict(expected or {})
    wanted = as_split_set(split)
    known = list(dict.fromkeys([*expected, *(u.split for u in utterances)]))
    if wanted is not None:
        unknown = sorted(wanted - set(known))
        for name in unknown:
            if missing and name in missing:
                what, where = missing[name]
                raise OfactlError(f"{root}: no split {name!r} in this {layout} corpus: {what}", hint=where)
        if unknown:
            raise OfactlError(f"{root}: no split {', '.join(map(repr, unknown))} in this {layout} corpus",
                              hint=f"known splits: {', '.join(known) or 'none'}")
        utterances = [u for u in utterances if u.split in wanted]
        expected = {k: v for k, v in expected.items() if k in wanted}

    seen: dict[str, str] = {}
    kept: list[Utterance] = []
    problems = list(problems)
    for u in utterances:
        if u.id in seen:
            problems.append(Problem(u.path, "duplicate_id", f"id {u.id!r} is already used by {seen[u.id]}", u.id))
            continue
        seen[u.id] = u.path
        kept.append(u)

    present = {u.split for u in kept}
    for name, source in expected.items():
        if name not in present:
            problems.append(Problem(abspath(source), "empty_split", f"split {name!r} has no utterances"))
    return Corpus(layout=layout, root=abspath(root), utterances=kept, problems=problems)
