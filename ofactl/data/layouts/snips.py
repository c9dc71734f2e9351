"""``snips``: Audio SNIPS (SUPERB SF), as s3prl's ``preprocess/snips_prepare_data.sh`` lays it out.

Files read::

    <root>/all.iob.snips.txt                      one line per utterance and speaker, see below
    <root>/train/<Speaker>-snips-train-<n>.wav    -> split "train"
    <root>/valid/<Speaker>-snips-valid-<n>.wav    -> split "valid"
    <root>/test/<Speaker>-snips-test-<n>.wav      -> split "test"

``<root>`` is the ``SNIPS`` folder or its parent.  This is the form SUPERB
documents for SF: the Amazon Polly audio of
``audio_slu_v3.zip`` (``audio_slu/audio_<Speaker>/snips/*.mp3``) converted to
16 kHz wav, and the normalised NLU annotation of
``aws-samples/aws-lex-noisy-spoken-language-understanding``.
(``slots.txt``, also written by that script, is not needed.)  A line of
``all.iob.snips.txt`` is::

    Salli-snips-train-12 BOS PLAY THE BEATLES ON SPOTIFY EOS<TAB>O O artist artist O service PlayMusic

the utterance id (the wav's stem), the words between ``BOS`` and ``EOS``, a
tab, then one tag per token: ``O`` for ``BOS``, one slot tag per word (``O``
or the slot name; a run of equal names is one slot value, as s3prl reads
it; ``B-x``/``I-x`` tags are accepted too) and the intent in ``EOS``'s place.
A line that does not have this shape is a ``bad_entry``.

Speakers: every split folder of the release holds all 16 voices; as s3prl
(``downstream/ctc/snips.yaml``, ``dataio/corpus/snips.py``) does, each split
keeps only its SUPERB speakers (:data:`SUPERB_SPEAKERS`; the speaker is the
id's text before the first ``-``).  ``speakers="all"`` keeps every speaker.
A wav of a kept speaker that the annotation does not name is ``unlabeled``;
an annotation line of a kept speaker whose wav is absent is ``missing``.

Labels: ``words`` (normalised as s3prl's SF recipe does: upper case, accented
letters folded, ``&`` -> ``AND``, punctuation tokens dropped with their tags),
``slots`` (one tag per word), ``intent``, ``text`` (the words joined) and
``slot_text``: the SF target text with slot tags, e.g.
``PLAY B-artist THE BEATLES E-artist ON B-service SPOTIFY E-service`` (what
s3prl's ``CharacterTextSlotEncoder`` decodes a target to).
"""

from __future__ import annotations

import os
from pathlib import Path

from ofactl.data.layouts.base import (
    DirIndex, Problem, Utterance, abspath, as_split_set, files_with_suffix, finish, first_existing,
)
from ofactl.errors import OfactlError

NAME = "snips"
DESCRIPTION = "SNIPS/all.iob.snips.txt + SNIPS/{train,valid,test}/<Speaker>-snips-<split>-<n>.wav"
ANNOTATION = "all.iob.snips.txt"
SPLITS = ("train", "valid", "test")
#: The Amazon Polly voices SUPERB uses for each split (s3prl ``downstream/ctc/snips.yaml``).
SUPERB_SPEAKERS: dict[str, tuple[str, ...]] = {
    "train": ("Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly", "Matthew", "Salli"),
    "valid": ("Aditi", "Amy", "Geraint", "Nicole"),
    "test": ("Brian", "Emma", "Raveena", "Russell"),
}
SPEAKER_CHOICES = ("superb", "all")

# s3prl problem/asr/superb_sf.py: accented capitals folded, '"' becomes a space
_FOLD = str.maketrans('ÁÃÄÅÆÇÈÉÊËÍÏÐÒÓÔÖØÚÛĘŃŌŞŪ"', "AAAAACEEEEIIDOOOOOUUENOSU ")
_PUNCT = set("?!.,;-–…")


def find_root(path: Path) -> Path | None:
    return first_existing([path, path / "SNIPS"], lambda c: (c / ANNOTATION).is_file())


def slot_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """``(first, last, slot)`` word ranges: a run of equal slot names (or ``B-x I-x ...``) is one value."""
    spans: list[tuple[int, int, str]] = []
    prev = "O"
    for i, tag in enumerate(tags):
        if tag == "O":
            prev = "O"
            continue
        begins = tag.startswith("B-")
        name = tag[2:] if tag[:2] in ("B-", "I-") else tag
        if spans and not begins and prev != "O" and name == spans[-1][2] and spans[-1][1] == i - 1:
            spans[-1] = (spans[-1][0], i, name)
        else:
            spans.append((i, i, name))
        prev = tag
    return spans


def target_text(words: list[str], tags: list[str]) -> str:
    """The SF target text: the words with ``B-<slot>`` before and ``E-<slot>`` after each slot value."""
    starts = {a: name for a, _, name in slot_spans(tags)}
    ends = {b: name for _, b, name in slot_spans(tags)}
    out: list[str] = []
    for i, word in enumerate(words):
        if i in starts:
            out.append(f"B-{starts[i]}")
        out.append(word)
        if i in ends:
            out.append(f"E-{ends[i]}")
    return " ".join(out)


def normalise(words: list[str], tags: list[str]) -> tuple[list[str], list[str]]:
    """s3prl's SF text clean-up: fold accents, ``&`` -> ``AND``, drop punctuation tokens (and their tags)."""
    out_w: list[str] = []
    out_t: list[str] = []
    for word, tag in zip(words, tags):
        word = word.upper().replace("&", " AND ").replace("–", "-").translate(_FOLD)
        for piece in word.split():
            if piece in _PUNCT or all(c in _PUNCT for c in piece):
                continue
            out_w.append(piece)
            out_t.append(tag)
    return out_w, out_t


def parse_line(line: str) -> tuple[str, list[str], list[str], str]:
    """``(id, words, tags, intent)`` of one annotation line; ValueError says what is wrong."""
    text, tab, iob = line.rstrip("\r\n").partition("\t")
    if not tab:
        raise ValueError("no tab between the words and the tags")
    tokens, tags = text.split(), iob.split()
    if len(tokens) < 3 or tokens[1] != "BOS" or tokens[-1] != "EOS":
        raise ValueError("expected '<id> BOS <words> EOS' before the tab")
    if len(tags) != len(tokens) - 1:
        raise ValueError(f"{len(tokens) - 3} words but {len(tags) - 2} slot tags (expected 'O <tags> <intent>')")
    if tags[0] != "O":
        raise ValueError(f"the tag of BOS is {tags[0]!r}, expected 'O'")
    return tokens[0], tokens[2:-1], tags[1:-1], tags[-1]


def read(path: Path, *, split=None, speakers: str = "superb"):
    """Read Audio SNIPS with SUPERB's speaker splits; see the module docstring."""
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no {ANNOTATION} found", hint=f"expected {DESCRIPTION}")
    if speakers not in SPEAKER_CHOICES:
        raise OfactlError(f"unknown speakers option {speakers!r}", hint=f"one of: {', '.join(SPEAKER_CHOICES)}")
    annotation = root / ANNOTATION
    problems: list[Problem] = []
    entries: dict[str, tuple[list[str], list[str], str]] = {}
    bad: set[str] = set()  # ids of malformed lines: reported once, as bad_entry
    with open(annotation, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                uid, words, tags, intent = parse_line(line)
            except ValueError as err:
                uid = line.split(maxsplit=1)[0] if line.split() else None
                problems.append(Problem(abspath(annotation), "bad_entry", f"line {lineno}: {err}", uid))
                if uid:
                    bad.add(uid)
                continue
            entries[uid] = (words, tags, intent)

    wanted = as_split_set(split)
    index = DirIndex()
    utterances: list[Utterance] = []
    for part in SPLITS:
        if wanted is not None and part not in wanted:
            continue
        folder = root / part
        keep = None if speakers == "all" else set(SUPERB_SPEAKERS[part])
        on_disk: dict[str, Path] = {}
        for dirpath, dirnames, _ in os.walk(folder):  # s3prl globs the split folder recursively
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for wav in files_with_suffix(Path(dirpath), (".wav",)):
                on_disk.setdefault(wav.stem, wav)
        for uid in sorted(on_disk):
            speaker = uid.split("-", 1)[0]
            if keep is not None and speaker not in keep:
                continue
            wav = on_disk[uid]
            if uid in bad and uid not in entries:
                continue
            if uid not in entries:
                problems.append(Problem(abspath(wav), "unlabeled", f"not in {ANNOTATION}", uid))
                continue
            words, tags, intent = entries[uid]
            words, tags = normalise(words, tags)
            if not words:
                problems.append(Problem(abspath(annotation), "bad_entry", f"{uid}: no words after normalisation", uid))
                continue
            utterances.append(Utterance(
                id=uid, path=abspath(wav), split=part, speaker=speaker,
                labels={"words": words, "slots": tags, "intent": intent, "text": " ".join(words),
                        "slot_text": target_text(words, tags)}))
        if not folder.is_dir():
            continue  # reported as an empty split
        for uid in sorted(entries):  # annotated utterances of this split's speakers without audio
            pieces = uid.split("-")
            if len(pieces) < 4 or pieces[-2] != part or uid in on_disk:
                continue
            if keep is not None and pieces[0] not in keep:
                continue
            if not index.exists(folder / f"{uid}.wav"):
                problems.append(Problem(abspath(folder / f"{uid}.wav"), "missing",
                                        f"listed in {ANNOTATION} but not on disk", uid))
    expected = {part: root / part for part in SPLITS}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)
