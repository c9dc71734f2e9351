"""Audio SNIPS: sentences from slot templates, and its annotation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ofactl.testing.synth.common import (
    _STREAM_SNIPS,
    LAYOUT_ROOTS,
    _Plan,
    _rng,
    _Speaker,
    _write_text,
)

_SNIPS_VALUES: dict[str, tuple[str, ...]] = {
    "artist": ("madonna", "the beatles", "miles davis", "adele", "bob marley", "taylor swift"),
    "service": ("spotify", "youtube", "deezer", "pandora"),
    "music_item": ("song", "album", "track"),
    "genre": ("jazz", "rock", "blues", "classical"),
    "playlist": ("road trip", "chill evening", "morning coffee", "workout mix", "summer hits"),
    "city": ("paris", "new york", "london", "tokyo", "berlin", "chicago"),
    "timeRange": ("tomorrow", "tonight", "next week", "this weekend", "at noon"),
    "restaurant_type": ("pizzeria", "steakhouse", "sushi bar", "diner"),
    "party_size_number": ("two", "three", "four", "six"),
    "object_name": ("the hobbit", "war and peace", "dune", "the odyssey"),
    "rating_value": ("one", "two", "three", "four"),
    "best_rating": ("five", "ten"),
    "object_type": ("book", "novel", "movie", "series"),
    "movie_name": ("star wars", "the matrix", "frozen", "jaws"),
    "spatial_relation": ("nearby", "close by", "in the area"),
    "object_location_type": ("movie theatre", "cinema"),
}
_SNIPS_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("PlayMusic", "play {artist} on {service}"),
    ("PlayMusic", "play some {genre} music"),
    ("PlayMusic", "i want to hear a {music_item} by {artist}"),
    ("AddToPlaylist", "add this {music_item} to my {playlist} playlist"),
    ("AddToPlaylist", "put {artist} on the {playlist} playlist"),
    ("GetWeather", "what is the weather in {city} {timeRange}"),
    ("GetWeather", "will it be cold in {city}"),
    ("GetWeather", "forecast for {timeRange}"),
    ("BookRestaurant", "book a table for {party_size_number} at a {restaurant_type} in {city}"),
    ("BookRestaurant", "reserve a {restaurant_type} for {party_size_number} people {timeRange}"),
    ("RateBook", "rate {object_name} {rating_value} out of {best_rating}"),
    ("RateBook", "give this {object_type} {rating_value} stars"),
    ("SearchCreativeWork", "find the {object_type} called {object_name}"),
    ("SearchCreativeWork", "show me the movie {movie_name}"),
    ("SearchScreeningEvent", "when is {movie_name} playing {spatial_relation}"),
    ("SearchScreeningEvent", "find a {object_location_type} showing {movie_name}"),
)
_SNIPS_SPLITS = {"train": "train", "dev": "valid", "test": "test"}


def _snips_sentence(template: str, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """Words (lower case) and one slot tag per word (``O`` or the slot name) of a filled template."""
    words: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        if piece.startswith("{"):
            slot = piece[1:-1]
            values = _SNIPS_VALUES[slot]
            value = values[int(rng.integers(0, len(values)))].split()
            words += value
            tags += [slot] * len(value)
        else:
            words.append(piece)
            tags.append("O")
    return words, tags


def _plan_snips(plan: _Plan, speakers: list[_Speaker], utterances: int, seed: int) -> None:
    """Audio SNIPS utterances (see the module docstring), from their own generators."""
    from ofactl.data.layouts.snips import SUPERB_SPEAKERS

    text = _rng(seed, _STREAM_SNIPS, 0)
    jitter = _rng(seed, _STREAM_SNIPS, 1)
    root = LAYOUT_ROOTS["snips"]
    total = max(12, min(1000, round(0.3 * utterances)))
    held = max(2, round(0.15 * total))
    counts = {"train": total - 2 * held, "dev": held, "test": held}
    order = [_SNIPS_TEMPLATES[i] for i in text.permutation(len(_SNIPS_TEMPLATES))]
    for role, folder in _SNIPS_SPLITS.items():
        names = SUPERB_SPEAKERS[folder]
        voices = [s for s in speakers if s.role == role][: len(names)]
        for k in range(counts[role]):
            if role == "train":  # every template first, so valid/test only use slot types seen in train
                intent, template = order[k % len(order)]
            else:
                intent, template = _SNIPS_TEMPLATES[int(text.integers(0, len(_SNIPS_TEMPLATES)))]
            words, tags = _snips_sentence(template, text)
            spk = k % len(voices)
            uid = f"{names[spk]}-snips-{folder}-{k}"
            plan.add("snips", f"{root}/{folder}/{uid}.wav", " ".join(words), voices[spk].voice, jitter)
            plan.snips_rows.append((uid, folder, words, tags, intent))


def _write_snips(plan: _Plan, stage: Path) -> None:
    """``all.iob.snips.txt`` (test, valid, train, as s3prl's preparation writes it) and ``slots.txt``."""
    root = stage / LAYOUT_ROOTS["snips"]
    lines, freq = [], {}
    for folder in ("test", "valid", "train"):
        for uid, part, words, tags, intent in plan.snips_rows:
            if part != folder:
                continue
            lines.append(f"{uid} BOS {' '.join(words).upper()} EOS\tO {' '.join(tags)} {intent}")
            for tag in tags:
                freq[tag] = freq.get(tag, 0) + 1
    _write_text(root / "all.iob.snips.txt", lines)
    slots = ["O"] + sorted((t for t in freq if t != "O"), key=lambda t: (-freq[t], t))  # s3prl skips line 1
    (root / "slots.txt").write_text("\n".join(slots), encoding="utf-8")
