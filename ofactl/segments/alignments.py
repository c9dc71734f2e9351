"""Phone alignments as segments: TSV, CTM and Praat TextGrid files to a segment table."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ofactl.errors import OfactlError
from ofactl.period import HOP_SAMPLES, SAMPLE_RATE
from ofactl.segments.table import WINDOW_SAMPLES, SegmentTable


# --------------------------------------------------------------------------------------------- alignments

FORMATS = ("tsv", "ctm", "textgrid")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: Tolerated overlap between consecutive intervals (float rounding in aligner output).
_OVERLAP_TOL_S = 1e-3


def time_to_end_frame(end_s: float) -> int:
    """The last 20 ms frame of an interval ending at ``end_s`` seconds.

    Rule: frame ``t`` belongs to the interval that contains its window centre
    ``(320 t + 200) / 16000`` s (a centre exactly on a boundary goes to the
    later interval), so the end frame is the last ``t`` with centre
    ``< end_s``: ``ceil((end_samples - 200) / 320) - 1`` with
    ``end_samples = round(16000 * end_s)``.  ``-1`` means no frame.
    """
    end_samples = int(round(float(end_s) * SAMPLE_RATE))
    return (end_samples - WINDOW_SAMPLES // 2 + HOP_SAMPLES - 1) // HOP_SAMPLES - 1


def _intervals_to_ends(intervals: list[tuple[float, float, str, str]], utt: str) -> np.ndarray:
    """``(start_s, end_s, label, where)`` of one utterance -> end frames.

    Intervals are sorted by start.  A gap between two intervals (or before the
    first) becomes a segment of its own, like a silence label; intervals that
    contain no frame centre (zero-length after the frame rule) merge into the
    following segment.  Frames after the last interval belong to no segment.
    """
    intervals = sorted(intervals, key=lambda iv: (iv[0], iv[1]))
    ends: list[int] = []
    prev_end = 0.0
    prev_where = ""
    for start, end, _label, where in intervals:
        if start < prev_end - _OVERLAP_TOL_S:
            raise OfactlError(f"{where}: interval {start:g}-{end:g} s of {utt!r} overlaps the previous one "
                              f"(ending at {prev_end:g} s, {prev_where})",
                              hint="alignments must not overlap (one tier, one channel)")
        if start > prev_end:
            ends.append(time_to_end_frame(start))  # the gap (unlabelled silence)
        ends.append(time_to_end_frame(end))
        prev_end, prev_where = max(prev_end, end), where
    out: list[int] = []
    for e in ends:
        if e >= 0 and (not out or e > out[-1]):
            out.append(e)
    return np.asarray(out, dtype=np.int64)


def _parse_time(value: str, where: str, what: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise OfactlError(f"{where}: {what} {value[:40]!r} is not a number") from None
    if not math.isfinite(t) or t < 0:
        raise OfactlError(f"{where}: {what} must be a non-negative number of seconds, found {value[:40]!r}")
    return t


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise OfactlError(f"alignment file not found: {path}") from None
    except OSError as exc:
        raise OfactlError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # Praat writes UTF-16 when a label needs it
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OfactlError(f"{path}: not a text file (neither UTF-8 nor UTF-16)") from None


def _is_number(s: str) -> bool:
    return bool(_NUMBER.fullmatch(s.strip()))


def _detect_format(path: Path, text: str) -> str:
    if "ooTextFile" in text[:200] or re.search(r'Object class\s*=\s*"TextGrid', text[:400]):
        return "textgrid"
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";;")):
            continue
        if "\t" in line:
            fields = line.rstrip("\r").split("\t")
            if len(fields) in (3, 4) and _is_number(fields[1]) and _is_number(fields[2]):
                return "tsv"
        fields = stripped.split()
        if len(fields) in (5, 6) and _is_number(fields[2]) and _is_number(fields[3]):
            return "ctm"
        if len(fields) in (3, 4) and _is_number(fields[1]) and _is_number(fields[2]):
            return "tsv"
        if len(fields) >= 3 and not _is_number(fields[1]) and any(w in stripped.lower() for w in ("start", "begin")):
            continue  # a header line
        break
    raise OfactlError(f"{path}: cannot tell the alignment format from its content",
                      hint="pass fmt='tsv' (utt start end label), 'ctm' (utt channel start duration label) "
                           "or 'textgrid'")


def _read_tsv(path: Path, text: str) -> dict[str, list]:
    per_utt: dict[str, list] = {}
    first_data = True
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{lineno}"
        fields = line.split("\t") if "\t" in line else line.split(None, 3)
        if first_data and len(fields) >= 3 and not _is_number(fields[1]) and not _is_number(fields[2]):
            first_data = False
            continue  # header (utt start end label)
        first_data = False
        if len(fields) not in (3, 4) or not fields[0].strip():
            raise OfactlError(f"{where}: expected 'utt<TAB>start<TAB>end<TAB>label' (seconds), found {line[:80]!r}")
        utt = fields[0].strip()
        start = _parse_time(fields[1], where, "start")
        end = _parse_time(fields[2], where, "end")
        if end < start:
            raise OfactlError(f"{where}: end {end:g} s is before start {start:g} s")
        label = fields[3].strip() if len(fields) == 4 else ""
        per_utt.setdefault(utt, []).append((start, end, label, where))
    return per_utt


def _read_ctm(path: Path, text: str) -> dict[str, list]:
    per_utt: dict[str, list] = {}
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith((";;", "#")):
            continue
        where = f"{path}:{lineno}"
        fields = stripped.split()
        if len(fields) not in (5, 6):
            raise OfactlError(f"{where}: expected 'utt channel start duration label [confidence]', "
                              f"found {stripped[:80]!r}")
        utt = fields[0]
        start = _parse_time(fields[2], where, "start")
        duration = _parse_time(fields[3], where, "duration")
        per_utt.setdefault(utt, []).append((start, start + duration, fields[4], where))
    return per_utt


_TG_TOKEN = re.compile(
    r'"(?P<str>(?:[^"]|"")*)"'          # a string ("" escapes a quote)
    r'|(?P<index>\[\s*\d*\s*\])'        # item [1]: / intervals [2]: (long format)
    r'|(?P<comment>![^\n]*)'            # ! comment
    r'|(?P<flag><[A-Za-z]+>)'           # <exists>
    r'|(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])'
    r'|(?P<word>[A-Za-z_][\w?]*)'       # keys (xmin, intervals, size, ...)
    r'|(?P<nl>\n)'
    r'|(?P<other>[^\s])'
    r'|(?P<space>[ \t\r\f\v]+)'
)


def _textgrid_tokens(path: Path, text: str) -> list[tuple[str, Any, int]]:
    """Values of a TextGrid (long or short text format): ``(kind, value, line)`` with kind ``str``/``num``/``flag``."""
    tokens: list[tuple[str, Any, int]] = []
    line = 1
    pos = 0
    while pos < len(text):
        m = _TG_TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any character
            raise OfactlError(f"{path}:{line}: cannot parse the TextGrid")
        kind = m.lastgroup
        if kind == "str":
            tokens.append(("str", m.group("str").replace('""', '"'), line))
        elif kind == "num":
            tokens.append(("num", float(m.group("num")), line))
        elif kind == "flag":
            tokens.append(("flag", m.group("flag"), line))
        line += m.group(0).count("\n")
        pos = m.end()
    return tokens


def _read_textgrid(path: Path, text: str, tier: str | None) -> tuple[str, list]:
    """One TextGrid file -> ``(chosen tier name, intervals)``."""
    if "ooBinaryFile" in text[:100]:
        raise OfactlError(f"{path}: binary TextGrids are not supported", hint="save it as a text file in Praat")
    tokens = _textgrid_tokens(path, text)
    pos = 0

    def take(kind: str, what: str) -> Any:
        nonlocal pos
        if pos >= len(tokens):
            last_line = tokens[-1][2] if tokens else 1
            raise OfactlError(f"{path}:{last_line}: TextGrid ends early (expected {what})")
        k, value, line = tokens[pos]
        if k != kind:
            raise OfactlError(f"{path}:{line}: malformed TextGrid: expected {what}, found {value!r}")
        pos += 1
        return value

    if take("str", "'ooTextFile'") != "ooTextFile" or take("str", "'TextGrid'") != "TextGrid":
        raise OfactlError(f"{path}:1: not a Praat TextGrid (expected File type = \"ooTextFile\", "
                          f"Object class = \"TextGrid\")")
    take("num", "xmin")
    take("num", "xmax")
    if pos < len(tokens) and tokens[pos][0] == "flag":
        if tokens[pos][1] != "<exists>":
            raise OfactlError(f"{path}: the TextGrid has no tiers")
        pos += 1
    n_tiers = int(take("num", "the number of tiers"))
    tiers: list[tuple[str, str, list]] = []
    for _ in range(n_tiers):
        cls = take("str", "a tier class")
        name = take("str", "a tier name")
        take("num", "tier xmin")
        take("num", "tier xmax")
        size = int(take("num", "the number of intervals"))
        entries = []
        for _ in range(size):
            if cls == "IntervalTier":
                line = tokens[pos][2] if pos < len(tokens) else 0
                start = take("num", "interval xmin")
                end = take("num", "interval xmax")
                label = take("str", "interval text")
                if end < start or start < 0:
                    raise OfactlError(f"{path}:{line}: interval {start:g}-{end:g} s is not a valid interval")
                entries.append((start, end, label.strip(), f"{path}:{line}"))
            else:
                take("num", "point time")
                take("str", "point mark")
        tiers.append((cls, name, entries))
    interval_tiers = [t for t in tiers if t[0] == "IntervalTier"]
    if tier is not None:
        found = [t for t in interval_tiers if t[1] == tier]
    else:
        found = [t for t in interval_tiers if t[1].strip().lower() in ("phones", "phone")]
        if not found and len(interval_tiers) == 1:
            found = interval_tiers
    if not found:
        names = ", ".join(repr(t[1]) for t in interval_tiers) or "none"
        raise OfactlError(f"{path}: no {'tier ' + repr(tier) if tier else 'phones tier'} among the interval tiers "
                          f"({names})", hint="name the tier to use with tier=...")
    return found[0][1], found[0][2]


def import_alignments(path: str | os.PathLike, fmt: str | None = None, *, tier: str | None = None) -> SegmentTable:
    """Phone alignments -> a :class:`SegmentTable` of 20 ms end frames.

    Formats (``fmt``, detected from the content when None):

    * ``tsv``: ``utt<TAB>start<TAB>end<TAB>label`` in seconds (label optional;
      whitespace-separated works too when no field has a space); an optional
      header line; ``#`` comments.
    * ``ctm``: ``utt channel start duration label [confidence]``; ``;;`` comments.
    * ``textgrid``: a Praat TextGrid (long or short text format) or a folder of
      them (``<utt>.TextGrid``, searched recursively, the id is the file stem);
      the tier named ``phones`` (or ``phone``), else the only interval tier,
      or the one named by ``tier``.

    Rules (see :func:`time_to_end_frame`): frame ``t`` belongs to the interval
    containing its window centre; an interval's end frame is the last such
    frame; intervals holding no frame centre merge into the next segment.
    Silence labels (``sil``, ``sp``, ``spn``, empty, ``<eps>``) remain segments:
    they are real durations the CIF must integrate over; a gap between
    intervals is a segment too.  Frames after the last interval belong to no
    segment.

    Raises:
        OfactlError: a malformed line (naming file and line), overlapping
            intervals, an undetectable format, duplicate ids.
    """
    path = Path(path)
    if fmt is not None and fmt not in FORMATS:
        raise OfactlError(f"unknown alignment format {fmt!r}", hint=f"one of: {', '.join(FORMATS)}")
    if not path.exists():
        raise OfactlError(f"alignment file not found: {path}")
    per_utt: dict[str, list] = {}
    tiers: set[str] = set()
    if path.is_dir():
        if fmt not in (None, "textgrid"):
            raise OfactlError(f"{path} is a folder; only TextGrids are read from folders",
                              hint=f"pass the {fmt} file itself")
        fmt = "textgrid"
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".textgrid")
        if not files:
            raise OfactlError(f"{path}: no .TextGrid files in this folder")
        origin: dict[str, Path] = {}
        for file in files:
            utt = file.stem
            if utt in origin:
                raise OfactlError(f"two TextGrids for utterance {utt!r}: {origin[utt]} and {file}",
                                  hint="utterance ids are file stems; they must be unique")
            origin[utt] = file
            name, intervals = _read_textgrid(file, _read_text(file), tier)
            tiers.add(name)
            per_utt[utt] = intervals
    else:
        text = _read_text(path)
        fmt = fmt or _detect_format(path, text)
        if fmt == "textgrid":
            name, intervals = _read_textgrid(path, text, tier)
            tiers.add(name)
            per_utt[path.stem] = intervals
        elif fmt == "tsv":
            per_utt = _read_tsv(path, text)
        else:
            per_utt = _read_ctm(path, text)
        if not per_utt:
            raise OfactlError(f"{path}: no alignments in this file")
    segments = {utt: _intervals_to_ends(intervals, utt) for utt, intervals in per_utt.items()}
    meta: dict[str, Any] = {"path": str(path)}
    if tiers:
        meta["tier"] = ",".join(sorted(tiers))
    table = SegmentTable(segments, source=f"alignments-{fmt}", meta=meta)
    table.meta["mean_duration_ms"] = f"{table.mean_duration_ms():.2f}"
    return table
