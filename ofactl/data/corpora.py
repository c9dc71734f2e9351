"""Corpus layouts: find the utterances of a dataset on disk, with the labels each task needs.

    >>> corpus = read_corpus("/data/LibriSpeech", split="dev-clean")
    >>> corpus = probe(corpus)              # durations from headers; bad files -> corpus.problems
    >>> corpus.by_split("dev-clean")[0].labels["text"]

Each layout reads the files its publishers ship, in their published form, and
the official split files; where SUPERB (s3prl) derives a split instead, the
layout does what s3prl does and its module docstring says so.  Layouts (see
:data:`LAYOUTS`): ``generic``, ``librispeech``, ``speech_commands``,
``voxceleb1``, ``fluent``, ``iemocap``, ``quesst14``, ``snips``, ``covost2``, ``lhotse`` (manifests).

Reading never decodes audio and never raises for a bad entry: a file a split
list names but the disk lacks, a duplicate id, an empty split, ... go into
:attr:`Corpus.problems` and the rest stays.  :func:`probe` then reads every
header (in threads) and moves unreadable files there too.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from ofactl.data.audio import AudioError, AudioInfo, audio_info
from ofactl.data.layouts import fluent, generic, iemocap, librispeech, quesst14, speech_commands, voxceleb1
from ofactl.data.layouts import covost2, lhotse_cuts, snips
from ofactl.data.layouts.base import (
    PROBLEM_REASONS, SPLIT_ALL, Corpus, Layout, Problem, Utterance,
)
from ofactl.errors import OfactlError
from ofactl.progress import Progress

__all__ = [
    "LAYOUTS", "PROBLEM_REASONS", "SPLIT_ALL", "Corpus", "Layout", "Problem", "Utterance",
    "detect_layout", "probe", "read_corpus",
]

#: Layout name -> how to recognise and read it (:func:`detect_layout` tries ``generic`` last).
LAYOUTS: dict[str, Layout] = {
    m.NAME: Layout(m.NAME, m.read, m.find_root, m.DESCRIPTION)
    for m in (generic, librispeech, speech_commands, voxceleb1, fluent, iemocap, quesst14, snips, covost2, lhotse_cuts)
}

#: Seconds a segment may run past the end of its file before it counts as a bad entry.
_END_TOLERANCE_S = 0.01


def _layout_overview() -> str:
    return "; ".join(f"{name}: {layout.description}" for name, layout in LAYOUTS.items())


def detect_layout(path: str | os.PathLike) -> str:
    """The name of the layout ``path`` is in; a clear error when none or several match."""
    path = Path(path)
    if not path.exists():
        raise OfactlError(f"{path}: no such file or folder", hint="check the dataset path")
    specific = [name for name, layout in LAYOUTS.items() if name != "generic" and layout.find_root(path)]
    if len(specific) == 1:
        return specific[0]
    if len(specific) > 1:
        raise OfactlError(f"{path}: holds several corpora ({', '.join(specific)})",
                          hint="point at one of them, or name the layout (layout=..., --layout)")
    if LAYOUTS["generic"].find_root(path):
        return "generic"
    raise OfactlError(f"{path}: not a corpus layout ofactl knows ({', '.join(LAYOUTS)})",
                      hint=f"expected one of these - {_layout_overview()}")


def read_corpus(
    path: str | os.PathLike,
    layout: str | None = None,
    *,
    split: str | Sequence[str] | None = None,
    **options,
) -> Corpus:
    """Read the corpus at ``path``.

    Args:
        path: the dataset folder (or a manifest file for ``generic``).
        layout: a name from :data:`LAYOUTS`; None detects it.
        split: keep only this split (or these); an unknown name is an error.
        **options: layout options: ``id_from`` (generic: ``"stem"``/``"relpath"``),
            ``test_root`` (speech_commands), ``split_file`` (voxceleb1),
            ``fold`` and ``meta_dir`` (iemocap), ``language`` (quesst14),
            ``speakers`` (snips: ``"superb"`` or ``"all"``).

    Returns:
        a :class:`Corpus`; durations are None until :func:`probe`.
    """
    path = Path(path)
    if not path.exists():
        raise OfactlError(f"{path}: no such file or folder", hint="check the dataset path")
    if layout is None:
        layout = detect_layout(path)
    if layout not in LAYOUTS:
        raise OfactlError(f"unknown corpus layout {layout!r}", hint=f"one of: {', '.join(LAYOUTS)}")
    chosen = LAYOUTS[layout]
    accepted = [p for p in inspect.signature(chosen.read).parameters if p not in ("path", "split")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise OfactlError(f"layout {layout!r} has no option {', '.join(unknown)}",
                          hint=f"its options: {', '.join(accepted) or 'none'}")
    if chosen.find_root(path) is None:
        raise OfactlError(f"{path}: does not look like a {layout} corpus", hint=f"expected {chosen.description}")
    return chosen.read(path, split=split, **options)


def probe(
    corpus: Corpus,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Corpus:
    """Read every file's header: fill ``duration_s``; move bad files into ``problems``.

    Nothing is decoded and nothing raises for a bad file: each one becomes a
    :class:`Problem` with the :class:`~ofactl.data.audio.AudioError` reason
    (``missing``, ``unreadable``, ``not_audio``, ``empty``) and drops out with
    all its utterances; a segment that starts past the end of its file, or
    ends past it, is a ``bad_entry``.  Silent or non-16 kHz audio is valid.

    Args:
        corpus: as returned by :func:`read_corpus`; not modified.
        workers: header-reading threads (default: 4 per CPU, at most 32).
        progress: called as ``progress(files_done, files_total, "")`` after each batch.

    Returns:
        a new :class:`Corpus`.
    """
    paths = list(dict.fromkeys(u.path for u in corpus.utterances))
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    batch = max(1, min(256, len(paths) // (workers * 4) or 1))
    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    infos: dict[str, AudioInfo | AudioError] = {}
    done = 0
    if progress:
        progress(0, len(paths), "")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for results in pool.map(_read_headers, chunks):
            infos.update(results)
            done += len(results)
            if progress:
                progress(done, len(paths), "")

    users: dict[str, list[str]] = {}
    for u in corpus.utterances:
        users.setdefault(u.path, []).append(u.id)
    kept: list[Utterance] = []
    problems = list(corpus.problems)
    reported: set[str] = set()
    for u in corpus.utterances:
        info = infos[u.path]
        if isinstance(info, AudioError):
            if u.path not in reported:
                reported.add(u.path)
                ids = users[u.path]
                problems.append(Problem(u.path, info.reason, info.detail, ids[0] if len(ids) == 1 else None))
            continue
        available = info.duration_s - u.offset_s
        if available <= 0:
            problems.append(Problem(u.path, "bad_entry", f"{u.id} starts at {u.offset_s:g} s, past the end of "
                                                         f"the file ({info.duration_s:g} s)", u.id))
            continue
        if u.duration_s is None:
            kept.append(replace(u, duration_s=available))
        elif u.duration_s > available + _END_TOLERANCE_S:
            problems.append(Problem(u.path, "bad_entry", f"{u.id} ends at {u.offset_s + u.duration_s:g} s, after the "
                                                         f"end of the file ({info.duration_s:g} s)", u.id))
        else:
            kept.append(u)
    headers = {path: info for path, info in infos.items() if isinstance(info, AudioInfo)}
    return Corpus(layout=corpus.layout, root=corpus.root, utterances=kept, problems=problems, headers=headers)


def _read_headers(paths: list[str]) -> list[tuple[str, AudioInfo | AudioError]]:
    out: list[tuple[str, AudioInfo | AudioError]] = []
    for p in paths:
        try:
            out.append((p, audio_info(p)))
        except AudioError as err:
            out.append((p, err))
        except Exception as exc:  # e.g. permission denied while classifying the failure
            out.append((p, AudioError(p, "unreadable", f"cannot be read ({type(exc).__name__}: {exc})")))
    return out
