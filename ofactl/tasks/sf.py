"""``sf``: slot filling on Audio SNIPS (SUPERB SF): 2-layer BiLSTM CTC over characters and slot tags.

The target is s3prl's ``character-slot`` text (``downstream/ctc/text.py``,
``CharacterTextSlotEncoder``): the characters of the words, ``|`` between
words, and each slot value wrapped in two tokens of its own, ``B-<slot>``
before and ``E-<slot>`` after, e.g. ``PLAY B-artist THE BEATLES E-artist``.
Greedy CTC decoding; the hypothesis is turned back into that text (a tag
token reads ``"B-x "`` / ``" E-x"``, as s3prl decodes it) and scored against
the reference text as ``s3prl/downstream/ctc/metric.py`` (also
``s3prl/metric/slot_filling.py``) defines it:

* ``slot_type_f1`` (primary): per utterance, the F1 of the *set* of slot
  types found in the hypothesis against the reference (1 when both have
  none, 0 when only one has none), averaged over utterances;
* ``slot_value_cer``: for each reference slot value, the hypothesis value
  of the same type with the fewest character edits (the empty string when the
  hypothesis has no slot of that type, or only values with a CER of 100 or
  more); the summed character edit distance over the summed reference value
  lengths (NaN when the references hold no slot value, where s3prl divides by
  zero).

Slot values are found with s3prl's pattern ``B-(\\S+) (.+?) E-\\1`` after
runs of spaces are collapsed; nested tags are removed from hypothesis values.
The reference is the utterance's own text (a character unseen in training
counts as an error instead of s3prl's ``<unk>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ofactl.tasks.base import CTCTask, Metric, ratio

BOUNDARY = "|"
_SLOT = re.compile(r"B\-(\S+) (.+?) E\-\1")


class Target(list):
    """The token ids of an utterance (a plain list for the CTC loss) that also carry its reference text."""

    text: str = ""


def tokens_of(words: list[str], tags: list[str]) -> list[str]:
    """Character tokens, ``|`` between words, one ``B-<slot>``/``E-<slot>`` token around each slot value."""
    from ofactl.data.layouts.snips import slot_spans

    spans = slot_spans(tags)
    starts = {a: name for a, _, name in spans}
    ends = {b: name for _, b, name in spans}
    out: list[str] = []
    for i, word in enumerate(words):
        if i:
            out.append(BOUNDARY)
        if i in starts:
            out.append(f"B-{starts[i]}")
        out.extend(word)
        if i in ends:
            out.append(f"E-{ends[i]}")
    return out


def to_text(tokens: list[str]) -> str:
    """Tokens back to the target text, as s3prl decodes them (tags ``"B-x "`` and ``" E-x"``)."""
    parts = []
    for t in tokens:
        if t == BOUNDARY:
            parts.append(" ")
        elif t.startswith("B-") and len(t) > 2:
            parts.append(t + " ")
        elif t.startswith("E-") and len(t) > 2:
            parts.append(" " + t)
        else:
            parts.append(t)
    return "".join(parts)


def _clean(text: str) -> str:
    text = re.sub(r"B\-(\S+) ", "", text)
    return re.sub(r" E\-(\S+)", "", text)


def slot_values(text: str, clean: bool = False) -> dict[str, list[str]]:
    """``{slot type: [values in order]}`` of a target or hypothesis text (s3prl's ``parse``)."""
    found: dict[str, list[str]] = {}
    for slot, value in _SLOT.findall(re.sub(r" +", " ", text)):
        found.setdefault(slot, []).append(_clean(value) if clean else value)
    return found


@dataclass
class SlotStats:
    """Sufficient statistics of a set of utterances: summed F1, utterances, value edits, value characters."""

    f1_sum: float = 0.0
    n: int = 0
    value_errors: int = 0
    value_chars: int = 0


def utterance_slot_stats(hyp: str, ref: str) -> tuple[float, int, int]:
    """``(slot-type F1, value edits, value characters)`` of one (hypothesis, reference) text pair."""
    from torchaudio.functional import edit_distance

    ref_slots, hyp_slots = slot_values(ref), slot_values(hyp, clean=True)
    if not ref_slots and not hyp_slots:
        f1 = 1.0
    elif not ref_slots or not hyp_slots:
        f1 = 0.0
    else:
        recall = sum(s in hyp_slots for s in ref_slots) / len(ref_slots)
        precision = sum(s in ref_slots for s in hyp_slots) / len(hyp_slots)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    value_errors = value_chars = 0
    for slot, values in ref_slots.items():
        for ref_v in values:
            # s3prl keeps the first hypothesis value of the lowest CER below its start value of 100,
            # and scores the empty string when there is none
            best = len(ref_v)
            errors = [edit_distance(h, ref_v) for h in hyp_slots.get(slot, [])]
            below = [e for e in errors if e / len(ref_v) < 100]
            if below:
                best = min(below)
            value_errors += best
            value_chars += len(ref_v)
    return f1, value_errors, value_chars


def slot_stats(hyps: list[str], refs: list[str]) -> SlotStats:
    """The statistics behind ``slot_type_f1`` and ``slot_value_cer`` for (hypothesis, reference) texts."""
    stats = SlotStats()
    for hyp, ref in zip(hyps, refs):
        f1, errors, chars = utterance_slot_stats(hyp, ref)
        stats.f1_sum += f1
        stats.n += 1
        stats.value_errors += errors
        stats.value_chars += chars
    return stats


def slot_type_f1(hyps: list[str], refs: list[str]) -> float:
    s = slot_stats(hyps, refs)
    return s.f1_sum / s.n if s.n else float("nan")


def slot_value_cer(hyps: list[str], refs: list[str]) -> float:
    s = slot_stats(hyps, refs)
    return s.value_errors / s.value_chars if s.value_chars else float("nan")


class SlotFilling(CTCTask):
    name = "sf"
    description = "slot filling (Audio SNIPS), 2-layer BiLSTM CTC over characters and slot tags, slot F1 and CER"
    layout = "snips"
    splits = ("train", "valid", "test")
    metrics = (Metric("slot_type_f1", True), Metric("slot_value_cer", False))
    head_kind = "bilstm"
    lr = 1e-3
    batch_size = 16
    lambda_lr = 1e-2

    def label(self, utt):
        words, slots = utt.labels.get("words"), utt.labels.get("slots")
        if not words or slots is None or len(words) != len(slots):
            return None
        return tuple(tokens_of(list(words), list(slots)))

    def tokens(self, label):
        return list(label)

    def encode(self, label, vocab):
        target = Target(super().encode(label, vocab))
        target.text = to_text(list(label))
        return target

    def utterance_stats(self, head, x, lengths, targets, vocab):
        hyps = [to_text(self.units(h, vocab)) for h in self.decode(head(x, lengths), lengths)]
        refs = [t.text if isinstance(t, Target) else to_text(self.units(t, vocab)) for t in targets]
        rows = np.asarray([utterance_slot_stats(h, r) for h, r in zip(hyps, refs)], dtype=np.float64).reshape(-1, 3)
        return {"f1_sum": rows[:, 0], "n": np.ones(len(rows)), "value_errors": rows[:, 1], "value_chars": rows[:, 2]}

    def finish(self, totals):
        return {"slot_type_f1": ratio(totals["f1_sum"], totals["n"]),
                "slot_value_cer": ratio(totals["value_errors"], totals["value_chars"])}


TASK = SlotFilling()
