"""CoVoST 2 En->De of the synthetic corpus: English sentences and their German translations.

A small deterministic template grammar: five sentence shapes over six nouns
(two of each German gender), four adjectives and four verbs.  The German side
is what a translator would write: articles and adjective endings agree with
gender and case (nominative subject, accusative object), "today" moves the
verb before the subject (``Heute sieht der Hund die Katze.``) and "does not"
becomes a sentence-final ``nicht``.  So a probe has to hear the content words
and the sentence shape to translate, and a model that ignores the audio
can only guess them.

:func:`sentence_pair` draws one pair; :func:`write_tsvs` writes the three
split files in the form CoVoST's ``get_covost_splits.py`` produces.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ofactl.testing.synth.common import (
    _STREAM_COVOST,
    LAYOUT_ROOTS,
    _Plan,
    _rng,
    _Sizes,
    _Speaker,
)

#: (English, German, gender) of each noun.
NOUNS = (
    ("dog", "Hund", "m"), ("cat", "Katze", "f"), ("horse", "Pferd", "n"),
    ("teacher", "Lehrer", "m"), ("woman", "Frau", "f"), ("girl", "Mädchen", "n"),
)
#: (English, German stem, German predicative form) of each adjective.
ADJECTIVES = (("big", "groß", "groß"), ("small", "klein", "klein"), ("happy", "froh", "froh"), ("tired", "müd", "müde"))
#: (English third person, English base form, German third person) of each verb.
VERBS = (("sees", "see", "sieht"), ("finds", "find", "findet"), ("calls", "call", "ruft"), ("likes", "like", "mag"))
_NOMINATIVE = {"m": "der", "f": "die", "n": "das"}
_ACCUSATIVE = {"m": "den", "f": "die", "n": "das"}
#: Adjective endings after the definite article, by case and gender.
_ENDING = {("nom", "m"): "e", ("nom", "f"): "e", ("nom", "n"): "e",
           ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "e"}
SHAPES = ("adjectives", "plain", "predicate", "today", "negation")
#: CoVoST 2's split-file header (``get_covost_splits.py``).
HEADER = ("path", "sentence", "translation", "client_id")


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(0, len(items)))]


def _sentence(words: list[str]) -> str:
    text = " ".join(words) + "."
    return text[0].upper() + text[1:]


def sentence_pair(rng: np.random.Generator, shape: str | None = None) -> tuple[str, str]:
    """One ``(English, German)`` pair of the given shape (one of :data:`SHAPES`; drawn when None)."""
    shape = shape or _pick(rng, SHAPES)
    (e1, g1, s1), (e2, g2, s2) = _pick(rng, NOUNS), _pick(rng, NOUNS)
    verb_en, verb_base, verb_de = _pick(rng, VERBS)
    if shape == "adjectives":
        (a1, b1, _), (a2, b2, _) = _pick(rng, ADJECTIVES), _pick(rng, ADJECTIVES)
        en = ["the", a1, e1, verb_en, "the", a2, e2]
        de = [_NOMINATIVE[s1], b1 + _ENDING["nom", s1], g1, verb_de, _ACCUSATIVE[s2], b2 + _ENDING["acc", s2], g2]
    elif shape == "plain":
        en = ["the", e1, verb_en, "the", e2]
        de = [_NOMINATIVE[s1], g1, verb_de, _ACCUSATIVE[s2], g2]
    elif shape == "predicate":
        adj_en, _, adj_pred = _pick(rng, ADJECTIVES)
        en = ["the", e1, "is", adj_en]
        de = [_NOMINATIVE[s1], g1, "ist", adj_pred]
    elif shape == "today":
        en = ["today", "the", e1, verb_en, "the", e2]
        de = ["heute", verb_de, _NOMINATIVE[s1], g1, _ACCUSATIVE[s2], g2]
    elif shape == "negation":
        en = ["the", e1, "does", "not", verb_base, "the", e2]
        de = [_NOMINATIVE[s1], g1, verb_de, _ACCUSATIVE[s2], g2, "nicht"]
    else:
        raise ValueError(f"unknown sentence shape {shape!r}")
    return _sentence(en), _sentence(de)


def write_tsvs(root: Path, rows: list[tuple[str, str, str, str, str]], pair: str = "en_de") -> None:
    """``covost_v2.<pair>.{train,dev,test}.tsv`` from ``(split, clip name, sentence, translation, client id)`` rows."""
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        lines = ["\t".join(HEADER)]
        lines += ["\t".join((clip, en, de, client)) for part, clip, en, de, client in rows if part == split]
        (root / f"covost_v2.{pair}.{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _plan_covost(plan: _Plan, speakers: list[_Speaker], utterances: int, seed: int, sizes: _Sizes) -> None:
    """CoVoST 2 En->De sentence pairs (see the module docstring), from their own generators."""
    text = _rng(seed, _STREAM_COVOST, 0)
    jitter = _rng(seed, _STREAM_COVOST, 1)
    root = LAYOUT_ROOTS["covost2"]
    total = max(30, min(2000, 3 * utterances))
    held = max(4, round(0.1 * total))
    counts = {"train": total - 2 * held, "dev": max(held, sizes.dev_utterances or 0),
              "test": max(held, sizes.test_utterances or 0)}
    clip_ids = text.choice(10**7, size=sum(counts.values()), replace=False) + 10**7  # 8-digit Common Voice-like numbers
    k = 0
    for role in ("train", "dev", "test"):
        voices = [s for s in speakers if s.role == role]
        for i in range(counts[role]):
            english, german = sentence_pair(text)
            spk = voices[i % len(voices)]
            client = hashlib.sha512(f"ofactl-synth-{seed}-{spk.index}".encode()).hexdigest()
            clip = f"common_voice_en_{int(clip_ids[k])}.mp3"
            k += 1
            plan.add("covost2", f"{root}/clips/{clip}", english, spk.voice, jitter)
            plan.covost_rows.append((role, clip, english, german, client))
