"""``ofactl data inspect``: what a corpus holds and everything wrong with it.

Reads the layout, probes every file's header (nothing decoded unless
``deep=True``), and reports utterances and hours per split, label counts,
sample rates and channels, and every problem: unreadable, empty or non-audio
files, duplicate ids, entries the split files name but the disk lacks, empty
splits and, with ``deep``, silent files and NaN/Inf samples.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ofactl.data.audio import SAMPLE_RATE, AudioError, is_silent, load_audio, peak_amplitude
from ofactl.data.corpora import Corpus, Problem, probe, read_corpus
from ofactl.progress import Progress

#: Labels whose values are categories (counted per value); others are sequences (text, phones).
SEQUENCE_LABELS = ("text", "phones", "transcription", "matches", "words", "slot_text", "sentence", "translation")


@dataclass
class SplitSummary:
    name: str
    utterances: int
    hours: float
    speakers: int | None


@dataclass
class InspectReport:
    """The result of :func:`inspect_corpus`; ``to_dict()`` is its JSON form."""

    path: str
    layout: str
    splits: list[SplitSummary]
    labels: dict[str, dict[str, int]]
    sequence_labels: dict[str, dict[str, int]]
    sample_rates: dict[int, int]
    channels: dict[int, int]
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    deep: bool = False

    @property
    def utterances(self) -> int:
        return sum(s.utterances for s in self.splits)

    @property
    def hours(self) -> float:
        return sum(s.hours for s in self.splits)

    def problem_counts(self) -> dict[str, int]:
        return dict(Counter(p.reason for p in self.problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "layout": self.layout,
            "utterances": self.utterances,
            "hours": round(self.hours, 6),
            "splits": [asdict(s) for s in self.splits],
            "labels": self.labels,
            "sequence_labels": self.sequence_labels,
            "sample_rates": {str(k): v for k, v in self.sample_rates.items()},
            "channels": {str(k): v for k, v in self.channels.items()},
            "problem_counts": self.problem_counts(),
            "problems": [{"path": p.path, "reason": p.reason, "detail": p.detail, "id": p.id} for p in self.problems],
            "notes": self.notes,
            "deep": self.deep,
        }


def _decode_check(path: str) -> Problem | None:
    try:
        wave = load_audio(path)
    except AudioError as err:
        return Problem(path, err.reason, err.detail)
    if is_silent(wave):
        return Problem(path, "silent", f"is silent (peak amplitude {peak_amplitude(wave):.1e})")
    return None


def inspect_corpus(
    path: str | Path,
    layout: str | None = None,
    deep: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> InspectReport:
    """Inspect the corpus at ``path`` (layout detected unless given); never raises for a bad file."""
    corpus: Corpus = probe(read_corpus(path, layout, **options), workers=workers, progress=progress)
    splits = []
    for name in corpus.splits():
        utts = [u for u in corpus.utterances if u.split == name]
        speakers = {u.speaker for u in utts if u.speaker is not None}
        splits.append(SplitSummary(name, len(utts), sum(u.duration_s or 0.0 for u in utts) / 3600,
                                   len(speakers) if speakers else None))

    keys = sorted({k for u in corpus.utterances for k in u.labels})
    labels: dict[str, dict[str, int]] = {}
    sequences: dict[str, dict[str, int]] = {}
    for key in keys:
        if key in SEQUENCE_LABELS:
            values = [u.labels[key] for u in corpus.utterances if key in u.labels]
            tokens = Counter(t for v in values for t in (v.split() if isinstance(v, str) else v))
            sequences[key] = {"utterances": len(values), "tokens": sum(tokens.values()), "distinct": len(tokens)}
        else:
            counts = corpus.label_counts(key)
            labels[key] = {str(k): v for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}

    used = {u.path for u in corpus.utterances}
    infos = [corpus.headers[p] for p in used if p in corpus.headers]
    rates = Counter(i.sample_rate for i in infos)
    channels = Counter(i.channels for i in infos)
    notes = []
    for rate, n in sorted(rates.items()):
        if rate != SAMPLE_RATE:
            notes.append(f"{n} file(s) at {rate} Hz: resampled to {SAMPLE_RATE} Hz on read")
    for ch, n in sorted(channels.items()):
        if ch != 1:
            notes.append(f"{n} file(s) with {ch} channels: mixed to mono on read")

    problems = list(corpus.problems)
    if deep:
        with ThreadPoolExecutor(max_workers=workers or 4) as pool:
            for found in pool.map(_decode_check, sorted(used)):
                if found is not None:
                    problems.append(found)
    else:
        notes.append("files were not decoded, only their headers read: a truncated or damaged file, silence and "
                     "NaN samples are not found (pass --deep to decode every file)")
    return InspectReport(str(path), corpus.layout, splits, labels, sequences, dict(rates), dict(channels),
                         problems, notes, deep)
