"""Guidance segments: DP vs brute force, k-means, the table file, cropping, alignment imports, the corpus pass."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ofactl.data.pipeline import AudioItem
from ofactl.errors import OfactlError
from ofactl.segments import (
    SegmentTable,
    compute_segments,
    dp_segment,
    fit_kmeans,
    import_alignments,
    time_to_end_frame,
)

# --------------------------------------------------------------------------- DP


def segmentation_cost(x: np.ndarray, c: np.ndarray, ends: list[int], smoothing: float) -> float:
    """REFERENCE.md: sum over segments of (squared distance to the best centroid + lambda_dp * (1 - length))."""
    total, prev = 0.0, -1
    for e in ends:
        seg = x[prev + 1 : e + 1]
        total += min(float(((seg - cc) ** 2).sum()) for cc in c) + smoothing * (1 - len(seg))
        prev = e
    return total


def brute_force(x: np.ndarray, c: np.ndarray, smoothing: float, max_frames: int) -> tuple[float, list[list[int]]]:
    """Every segmentation of T frames (2^(T-1) of them), segments of at most max_frames.

    Returns the minimum cost and every segmentation reaching it (ties are real: with smoothing 0,
    merging frames quantised by one centroid costs the same as not merging them; with a length
    cap, [a][b c] and [a b][c] tie when one centroid is best for all three frames).
    """
    t_len = len(x)
    costs = []
    for cuts in itertools.product([False, True], repeat=t_len - 1):
        ends = [t for t in range(t_len - 1) if cuts[t]] + [t_len - 1]
        lengths = np.diff([-1] + ends)
        if lengths.max() <= max_frames:
            costs.append((segmentation_cost(x, c, ends, smoothing), ends))
    best = min(cost for cost, _ in costs)
    return best, [ends for cost, ends in costs if cost <= best + 1e-9]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 8), st.sampled_from([0.0, 0.3, 1.0, 3.0, 10.0]),
       st.integers(1, 8))
def test_dp_segment_equals_brute_force(seed, t_len, smoothing, max_frames):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(3, 2))
    x = c[rng.integers(0, 3, size=t_len)] + 0.6 * rng.normal(size=(t_len, 2))
    ends = dp_segment(x, c, smoothing, max_frames=max_frames)
    best_cost, optimal = brute_force(x, c, smoothing, max_frames)
    assert ends.dtype == np.int64 and ends[-1] == t_len - 1
    assert segmentation_cost(x, c, ends.tolist(), smoothing) == pytest.approx(best_cost, rel=1e-9, abs=1e-9)
    assert ends.tolist() in optimal


def test_dp_segment_larger_smoothing_gives_fewer_segments():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(5, 4)) * 2
    labels = np.repeat(rng.integers(0, 5, size=30), rng.integers(1, 8, size=30))
    x = c[labels] + 0.5 * rng.normal(size=(len(labels), 4))
    counts = [len(dp_segment(x, c, s)) for s in (0.0, 0.5, 2.0, 8.0, 30.0, 1e3, 1e6)]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == len(x)  # nothing rewards length: every frame is a segment
    assert counts[0] > counts[3] > counts[-1]
    assert counts[-1] == math.ceil(len(x) / 50)  # only the 50-frame cap remains
    # moderate smoothing recovers the runs of the generating codes (about)
    runs = 1 + int(np.count_nonzero(np.diff(labels)))
    assert abs(len(dp_segment(x, c, 2.0)) - runs) <= runs // 4


def test_dp_segment_edge_cases():
    c = np.zeros((2, 3))
    assert dp_segment(np.zeros((0, 3)), c, 1.0).tolist() == []
    assert dp_segment(np.zeros((1, 3)), c, 1.0).tolist() == [0]
    capped = dp_segment(torch.zeros(7, 3), torch.zeros(2, 3), 5.0, max_frames=3)  # only the duration term counts
    assert len(capped) == 3 and np.diff(np.concatenate([[-1], capped])).max() == 3
    with pytest.raises(OfactlError, match="dim"):
        dp_segment(np.zeros((4, 3)), np.zeros((2, 5)), 1.0)


# --------------------------------------------------------------------------- k-means


def test_fit_kmeans_recovers_well_separated_clusters_deterministically():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 8)) * 10
    x = np.concatenate([centre + 0.1 * rng.normal(size=(150, 8)) for centre in centres])
    rng.shuffle(x)
    got = fit_kmeans(x, n_clusters=4, seed=0)
    assert got.shape == (4, 8) and got.dtype == np.float32
    dist = np.linalg.norm(centres[:, None] - got[None], axis=-1)
    assert dist.min(axis=1).max() < 0.1  # every true centre has a centroid next to it
    assert sorted(dist.argmin(axis=1).tolist()) == [0, 1, 2, 3]  # one each
    np.testing.assert_array_equal(got, fit_kmeans(torch.from_numpy(x), n_clusters=4, seed=0))


def test_fit_kmeans_refuses_too_few_frames_and_bad_values():
    with pytest.raises(OfactlError, match="at least 10 frames"):
        fit_kmeans(np.zeros((5, 2)), n_clusters=10)
    with pytest.raises(OfactlError, match="NaN"):
        fit_kmeans(np.full((20, 2), np.nan), n_clusters=2)


# --------------------------------------------------------------------------- table file


ids = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), min_size=1,
              max_size=12).filter(lambda s: not s.startswith("#"))
ends_lists = st.lists(st.integers(0, 10_000), max_size=8, unique=True).map(sorted)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(ids, ends_lists, max_size=6), st.text(max_size=20),
       st.one_of(st.none(), st.floats(0, 100, allow_nan=False)))
def test_save_load_round_trip(tmp_path, segments, source, smoothing):
    meta = {} if smoothing is None else {"smoothing": smoothing, "layer": 6}
    table = SegmentTable(segments, source=source, meta=meta)
    path = table.save(tmp_path / "sub" / "segments.tsv")
    loaded = SegmentTable.load(path)
    assert list(loaded) == list(segments)
    for utt, ends in segments.items():
        assert loaded[utt].tolist() == ends and loaded[utt].dtype == np.int64
    assert loaded.source == source
    assert loaded.smoothing == smoothing
    assert loaded.meta == table.meta
    assert not list(path.parent.glob(".*tmp*"))  # the temporary file is gone


def test_file_format_is_a_self_describing_text(tmp_path):
    path = SegmentTable({"a b": [1, 3], "c": []}, source="hubert-codes", meta={"smoothing": 30}).save(tmp_path / "s")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ofactl-segments v1 source=hubert-codes frame_period_ms=20")
    assert "smoothing=30" in lines[0]
    assert lines[1:] == ["a b\t1 3", "c\t"]


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("# not ours\n", 1, "not an ofactl segment file"),
        ("# ofactl-segments v2\n", 1, "version v2"),
        ("# ofactl-segments v1 frame_period_ms=10\n", 1, "frame_period_ms=10"),
        ("# ofactl-segments v1 source=x\nu1\t1 2\nu2 1 2\n", 3, "expected 'id<TAB>end frames'"),
        ("# ofactl-segments v1\nu1\t1 x 3\n", 2, "'x' of 'u1' is not an integer"),
        ("# ofactl-segments v1\nu1\t1 5 5\n", 2, "strictly increasing"),
        ("# ofactl-segments v1\nu1\t-1 5\n", 2, ">= 0"),
        ("# ofactl-segments v1\nu1\t1\n\n# comment\nu1\t2\n", 5, "appears twice"),
    ],
)
def test_load_malformed_files_give_one_error_with_file_and_line(tmp_path, body, line, message):
    path = tmp_path / "bad.tsv"
    path.write_text(body)
    with pytest.raises(OfactlError, match=message) as info:
        SegmentTable.load(path)
    assert f"{path}:{line}:" in str(info.value)
    assert "\n" not in str(info.value)


def test_load_missing_file_and_bad_ids(tmp_path):
    with pytest.raises(OfactlError, match="not found"):
        SegmentTable.load(tmp_path / "missing.tsv")
    with pytest.raises(OfactlError, match="tabs"):
        SegmentTable({"a\tb": [1]})
    with pytest.raises(OfactlError, match="strictly increasing"):
        SegmentTable({"a": [3, 1]})


def test_mean_duration_ms():
    assert SegmentTable({"a": [1, 3], "b": [4], "c": []}).mean_duration_ms() == pytest.approx(20 * 9 / 3)
    assert math.isnan(SegmentTable({}).mean_duration_ms())


# --------------------------------------------------------------------------- cropping


def test_crop_rule():
    table = SegmentTable({"u": [2, 5, 9, 14]})  # segments 0-2, 3-5, 6-9, 10-14
    assert table.crop("u", 4, 8).tolist() == [1, 5, 7]  # 3-5 cut at the start, 10-14 cut at the end
    assert table.crop("u", 0, None).tolist() == [2, 5, 9, 14]
    assert table.crop("u", 0, 20).tolist() == [2, 5, 9, 14]  # frames 15-19 stay uncovered
    assert table.crop("u", 3, 3).tolist() == [2]
    assert table.crop("u", 6, 4).tolist() == [3]
    assert table.crop("u", 10, 1).tolist() == [0]
    assert table.crop("u", 15, 5).tolist() == []
    assert table.crop("u", 0, 0).tolist() == []
    with pytest.raises(OfactlError, match="no segments"):
        table.crop("v", 0, 3)


@settings(max_examples=80, deadline=None)
@given(ends_lists.filter(bool), st.integers(0, 40), st.integers(0, 40))
def test_crop_keeps_the_segment_of_every_frame_inside_the_window(ends, start, num):
    ends = [e % 50 for e in ends]
    ends = sorted(set(ends))
    cropped = SegmentTable({"u": ends}).crop("u", start, num)
    assert all(0 <= e < num for e in cropped) and list(cropped) == sorted(set(cropped.tolist()))

    def segment_of(frame, es):
        return next((k for k, e in enumerate(es) if frame <= e), None)

    for f in range(num):
        orig, new = segment_of(start + f, ends), segment_of(f, cropped.tolist())
        assert (orig is None) == (new is None)
        for g in range(num):  # same original segment <=> same cropped segment
            if orig is not None and segment_of(start + g, ends) is not None:
                assert (orig == segment_of(start + g, ends)) == (new == segment_of(g, cropped.tolist()))


def test_batch_pads_crops_and_handles_missing_ids():
    table = SegmentTable({"a": [2, 5, 9, 14], "b": [1]})
    ends, counts = table.batch(["a", "x", "b"], [(4, 8), (0, 5), None])
    assert ends.dtype == torch.long and ends.tolist() == [[1, 5, 7], [-1, -1, -1], [1, -1, -1]]
    assert counts.tolist() == [3, 0, 1]
    ends, counts = table.batch([], [])
    assert ends.shape == (0, 0) and counts.shape == (0,)
    with pytest.raises(OfactlError, match="'x'"):
        table.batch(["x"], strict=True)


# --------------------------------------------------------------------------- alignments

# u1: [0, 0.1) sil -> frames 0-4; [0.1, 0.25) -> 5-11; [0.25, 0.251) holds no frame centre (merged);
#     [0.251, 0.4) -> 12-19.
# u2: a leading gap [0, 0.05) -> 0-1; [0.05, 0.2) -> 2-9; a gap [0.2, 0.3) -> 10-14; [0.3, 0.5) -> 15-24.
EXPECTED = {"u1": [4, 11, 19], "u2": [1, 9, 14, 24]}

TSV = """utt\tstart\tend\tlabel
u1\t0.00\t0.10\tsil
u1\t0.10\t0.25\tHH
u1\t0.25\t0.251\tAH
u1\t0.251\t0.40\t
u2\t0.05\t0.20\tx y
u2\t0.30\t0.50\tspn
"""

CTM = """;; a comment
u1 1 0.00 0.10 sil
u1 1 0.10 0.15 HH 0.9
u1 1 0.25 0.001 AH
u1 1 0.251 0.149 <eps>
u2 A 0.30 0.20 B
u2 A 0.05 0.15 A
"""

TEXTGRID_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 0.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 0.5
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 0.5
            text = "hello 1 2"
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 0.5
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.1
            text = ""
        intervals [2]:
            xmin = 0.1
            xmax = 0.25
            text = "say ""hi"""
        intervals [3]:
            xmin = 0.25
            xmax = 0.251
            text = "AH"
        intervals [4]:
            xmin = 0.251
            xmax = 0.4
            text = "sil"
'''

TEXTGRID_SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
0.5
<exists>
2
"TextTier"
"events"
0
0.5
1
0.2
"click"
"IntervalTier"
"segs"
0
0.5
3
0.05
0.2
"A" ! a comment
0.3
0.5
"B"
0.5
0.5
""
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_time_to_end_frame_uses_window_centres():
    assert time_to_end_frame(0.0125) == -1  # frame 0's centre is at 12.5 ms: not before the end
    assert time_to_end_frame(0.013) == 0
    assert time_to_end_frame(0.0325) == 0
    assert time_to_end_frame(0.04) == 1
    assert time_to_end_frame(1.0) == 49


@pytest.mark.parametrize("fmt", [None, "tsv"])
def test_import_tsv(tmp_path, fmt):
    table = import_alignments(write(tmp_path / "ali.tsv", TSV), fmt=fmt)
    assert {k: v.tolist() for k, v in table.items()} == EXPECTED
    assert table.source == "alignments-tsv"
    assert float(table.meta["mean_duration_ms"]) == pytest.approx(table.mean_duration_ms(), abs=0.01)


@pytest.mark.parametrize("fmt", [None, "ctm"])
def test_import_ctm(tmp_path, fmt):
    table = import_alignments(write(tmp_path / "ali.ctm", CTM), fmt=fmt)
    assert {k: v.tolist() for k, v in table.items()} == EXPECTED


def test_import_textgrid_long_short_and_folder(tmp_path):
    long_path = write(tmp_path / "one" / "u1.TextGrid", TEXTGRID_LONG)
    assert import_alignments(long_path)["u1"].tolist() == EXPECTED["u1"]
    short_path = write(tmp_path / "short.TextGrid", TEXTGRID_SHORT)
    assert import_alignments(short_path, fmt="textgrid")["short"].tolist() == EXPECTED["u2"]  # the only interval tier
    folder = tmp_path / "grids"
    write(folder / "spk1" / "u1.TextGrid", TEXTGRID_LONG)
    (folder / "u2.textgrid").write_bytes(TEXTGRID_SHORT.encode("utf-16"))  # Praat writes UTF-16 at times
    table = import_alignments(folder)
    assert {k: v.tolist() for k, v in table.items()} == EXPECTED
    assert table.meta["tier"] == "phones,segs"
    assert import_alignments(long_path, tier="words")["u1"].tolist() == [time_to_end_frame(0.5)]


@pytest.mark.parametrize(
    "name, text, fmt, message",
    [
        ("a.tsv", "u1\t0.0\t0.1\tsil\nu1\t0.1\tabc\tx\n", None, r"a.tsv:2: end 'abc' is not a number"),
        ("a.tsv", "u1\t0.0\t0.1\tsil\nu1\t0.3\t0.2\tx\n", "tsv", r"a.tsv:2: end 0.2 s is before start"),
        ("a.tsv", "u1\t0.0\t0.2\tsil\nu1\t0.1\t0.3\tx\n", "tsv", r"a.tsv:2: .*overlaps"),
        ("a.tsv", "u1\t0.0\t0.1\tsil\nu1\t0.1\n", "tsv", r"a.tsv:2: expected 'utt<TAB>start"),
        ("a.ctm", "u1 1 0.0 0.1 sil\nu1 1 0.1 -0.1 x\n", "ctm", r"a.ctm:2: duration must be a non-negative"),
        ("a.ctm", "u1 1 0.0 0.1 sil\nu1 1 0.1 x\n", "ctm", r"a.ctm:2: expected 'utt channel start duration"),
        ("a.txt", "hello world\n", None, r"a.txt: cannot tell the alignment format"),
        ("a.TextGrid", TEXTGRID_LONG[: TEXTGRID_LONG.index("intervals [3]")], None, r"a.TextGrid:\d+: TextGrid ends"),
        ("a.TextGrid", TEXTGRID_LONG.replace("xmax = 0.25", "xmax = oops"), None,
         r"a.TextGrid:32: malformed TextGrid: expected interval xmax"),
        ("a.TextGrid", TEXTGRID_LONG.replace('"phones"', '"other"'), None, r"no phones tier .*'words', 'other'"),
    ],
)
def test_import_malformed_inputs_name_file_and_line(tmp_path, name, text, fmt, message):
    with pytest.raises(OfactlError, match=message) as info:
        import_alignments(write(tmp_path / name, text), fmt=fmt)
    assert "\n" not in str(info.value)


def test_import_refuses_unknown_format_missing_paths_and_duplicate_stems(tmp_path):
    with pytest.raises(OfactlError, match="unknown alignment format"):
        import_alignments(write(tmp_path / "a.tsv", TSV), fmt="json")
    with pytest.raises(OfactlError, match="not found"):
        import_alignments(tmp_path / "nope.tsv")
    write(tmp_path / "d" / "x" / "u.TextGrid", TEXTGRID_LONG)
    write(tmp_path / "d" / "y" / "u.TextGrid", TEXTGRID_LONG)
    with pytest.raises(OfactlError, match="two TextGrids for utterance 'u'"):
        import_alignments(tmp_path / "d")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OfactlError, match="no .TextGrid files"):
        import_alignments(tmp_path / "empty")


# --------------------------------------------------------------------------- compute_segments


SR = 16_000


def _tones(freqs: list[float], seconds_each: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = []
    for f in freqs:
        n = int(seconds_each * SR)
        t = np.arange(n) / SR
        parts.append(0.05 * rng.normal(size=n) if f == 0 else 0.5 * np.sin(2 * np.pi * f * t))
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    waves = {
        "tones": _tones([300, 0, 1200, 600], 0.4, 0),
        "noise": _tones([0], 1.1, 1),
        "sweep": _tones([200, 400, 800, 1600, 3200], 0.2, 2),
        "short": _tones([500], 0.02, 3),  # 320 samples: shorter than one 400-sample window -> 0 frames
    }
    items = []
    for utt, wave in waves.items():
        path = root / f"{utt}.wav"
        sf.write(path, wave, SR, subtype="PCM_16")
        items.append(AudioItem(utt, str(path), 0.0, len(wave) / SR))
    frames = {utt: max((len(w) - 400) // 320 + 1, 0) for utt, w in waves.items()}
    return items, frames


def test_compute_segments_with_the_tiny_teacher(corpus, tmp_path):
    items, frames = corpus
    calls = []
    table = compute_segments(items, "tiny-random", layer=6, n_clusters=8, smoothing=2.0, num_workers=0,
                             progress=lambda done, total, _desc: calls.append((done, total)))
    assert list(table) == [it.id for it in items]
    for utt, n in frames.items():
        ends = table[utt]
        if n == 0:
            assert ends.tolist() == []
            continue
        assert ends[-1] == n - 1 and np.all(np.diff(ends) > 0)
        assert np.diff(np.concatenate([[-1], ends])).max() <= 50
    mean_segment_ms = table.mean_duration_ms()
    assert 20.0 < mean_segment_ms < 1000.0
    total_segments = sum(len(e) for e in table.values())
    assert total_segments > len(items)  # more than one segment per utterance
    assert table.source == "hubert-codes" and table.smoothing == 2.0 and table.meta["layer"] == "6"
    assert calls[-1][0] == calls[-1][1] == len(items)
    assert SegmentTable.load(table.save(tmp_path / "seg.tsv"))["tones"].tolist() == table["tones"].tolist()

    # the tone changes at 0.4 s steps (frames ~20, 40, 60) are segment boundaries
    tone_ends = table["tones"]
    for change in (20, 40, 60):
        assert np.abs(tone_ends - (change - 1)).min() <= 2

    # a larger smoothing gives fewer segments; a k-means sample smaller than the corpus reads it twice
    coarse = compute_segments(items, "tiny-random", n_clusters=8, smoothing=20.0, num_workers=0, kmeans_frames=60)
    assert sum(len(e) for e in coarse.values()) < total_segments
    assert int(coarse.meta["kmeans_frames"]) >= 60
    assert all(coarse[u][-1] == n - 1 for u, n in frames.items() if n)


def test_compute_segments_refuses_a_missing_layer_and_duplicate_ids(corpus):
    items, _ = corpus
    with pytest.raises(OfactlError, match="layer 7"):
        compute_segments(items, "tiny-random", layer=7, num_workers=0)
    with pytest.raises(OfactlError, match="appears twice"):
        compute_segments(items + items[:1], "tiny-random", num_workers=0)
