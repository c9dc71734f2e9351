"""What a left-out input is: one :class:`Problem` type for the whole library.

A corpus reader leaves out a malformed entry, the audio pipeline a file that
cannot be decoded, an extraction an utterance it could not read: each is a
:class:`Problem` (where, why, what), returned in the result of the job that met
it, so that a long job records the failure and goes on.  Feature files keep
them in their ``skipped`` attribute as ``{"id", "path", "reason"}`` records
(:meth:`Problem.to_record`, :meth:`Problem.from_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

#: Why an audio file cannot be used (the reasons of :class:`ofactl.data.audio.AudioError`).
AUDIO_REASONS = ("missing", "unreadable", "not_audio", "empty", "non_finite")

#: Why an entry is left out: the audio reasons plus the corpus-level ones.
PROBLEM_REASONS = AUDIO_REASONS + (
    "duplicate_id",    # a second entry with an id already taken (the first one is kept)
    "unlabeled",       # audio on disk that the layout's label files do not mention
    "bad_entry",       # a malformed line or row, or a segment outside its file
    "empty_split",     # a split the layout defines holds no utterance
    "split_mismatch",  # an official split list disagrees with the split SUPERB uses
)


@dataclass(frozen=True, slots=True)
class Problem:
    """An input left out: where (``path``, and ``id`` when known), why (one of :data:`PROBLEM_REASONS`), details."""

    path: str
    reason: str
    detail: str
    id: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"

    def to_record(self, key: str | None = None) -> dict[str, str]:
        """The feature file's ``skipped`` entry: ``{"id", "path", "reason": "<reason>: <detail>"}``."""
        return {"id": key if key is not None else (self.id or ""), "path": self.path,
                "reason": f"{self.reason}: {self.detail}"}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "Problem":
        """The inverse of :meth:`to_record` (a reason without a known ``<reason>:`` prefix is kept whole as the
        detail, reason ``unreadable``)."""
        text = str(record.get("reason", ""))
        reason, sep, detail = text.partition(": ")
        if not sep or reason not in PROBLEM_REASONS:
            reason, detail = "unreadable", text
        return cls(str(record.get("path", "")), reason, detail, str(record.get("id", "")) or None)


__all__ = ["AUDIO_REASONS", "PROBLEM_REASONS", "Problem"]
