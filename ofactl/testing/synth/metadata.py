"""The label, split and speaker files of each layout, written after the audio."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ofactl.testing.synth.common import (
    _FSC_HEADER,
    _FSC_SUBSETS,
    _LS_SUBSETS,
    _SC_LISTS,
    LAYOUT_ROOTS,
    SAMPLE_RATE,
    _Plan,
    _Speaker,
    _write_text,
)
from ofactl.testing.synth.quesst import _write_quesst14
from ofactl.testing.synth.snips import _write_snips


def _write_metadata(plan: _Plan, results: list[tuple[int, list[str]]], stage: Path) -> None:
    ls = stage / LAYOUT_ROOTS["librispeech"]
    by_chapter: dict[tuple[_Speaker, int], list[tuple[str, int, str]]] = {}
    minutes: dict[int, float] = {}
    for spk, utt, job, sentence in plan.ls_utts:
        by_chapter.setdefault((spk, spk.ls_chapter), []).append((utt, job, sentence))
        minutes[spk.index] = minutes.get(spk.index, 0.0) + results[job][0] / SAMPLE_RATE / 60
    for (spk, chapter), utts in by_chapter.items():
        folder = ls / _LS_SUBSETS[spk.role] / str(spk.ls_id) / str(chapter)
        stem = f"{spk.ls_id}-{chapter}"
        utts.sort()
        _write_text(folder / f"{stem}.trans.txt", [f"{utt} {sentence.upper()}" for utt, _, sentence in utts])
        _write_text(folder / f"{stem}.phones.txt", [f"{utt} {' '.join(results[job][1])}" for utt, job, _ in utts])
    rows = [
        "; Synthetic LibriSpeech-layout speakers written by `ofactl data synth` (espeak-ng voices).",
        "; Columns as in LibriSpeech's SPEAKERS.TXT; MINUTES is the speaker's audio in this corpus.",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for spk in sorted((s for s in plan.speakers if s.index in minutes), key=lambda s: s.ls_id):
        subset = _LS_SUBSETS[spk.role]
        rows.append(f"{spk.ls_id:<5}| {spk.voice.sex} | {subset:<17}| {minutes[spk.index]:5.2f} | {spk.voice.name}")
    _write_text(ls / "SPEAKERS.TXT", rows)

    sc = stage / LAYOUT_ROOTS["speech_commands"]
    for role, name in _SC_LISTS.items():
        _write_text(sc / name, sorted(plan.sc_lists[role]))

    vox = stage / LAYOUT_ROOTS["voxceleb1"]
    _write_text(vox / "iden_split.txt", [f"{split} {rel}" for split, rel in sorted(plan.vox_rows, key=lambda r: r[1])])

    fsc = stage / LAYOUT_ROOTS["fluent_commands"] / "data"
    fsc.mkdir(parents=True, exist_ok=True)
    for role, name in _FSC_SUBSETS.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(_FSC_HEADER)
        for i, row in enumerate(sorted(plan.fsc_rows[role], key=lambda r: (r[1], r[0]))):
            writer.writerow([i, *row])
        (fsc / f"{name}_data.csv").write_text(buf.getvalue(), encoding="utf-8")

    _write_quesst14(plan, results, stage)
    _write_snips(plan, stage)
    from ofactl.testing.synth.covost import write_tsvs

    write_tsvs(stage / LAYOUT_ROOTS["covost2"], plan.covost_rows)
