"""Measuring a calibration: the model's 20 ms part (CNN and alpha module) over a corpus, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ofactl.calibrate.build import build_calibration
from ofactl.calibrate.counts import AlphaStats, alpha_stats
from ofactl.calibrate.table import Calibration
from ofactl.data.pipeline import Long, iter_batches
from ofactl.data.problems import Problem
from ofactl.errors import OfactlError
from ofactl.progress import Progress


@dataclass
class CalibrationRun:
    """What :func:`measure_calibration` returns: the saved table, the inputs left out, and warnings."""

    calibration: Calibration
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def measure_calibration(
    model,
    data: str | Path,
    *,
    split: str | None = None,
    layout: str | None = None,
    lam_max: float | None = None,
    max_batch_s: float = 160.0,
    num_workers: int = 2,
    chunk_s: float = 60.0,
    progress: Progress | None = None,
    id_from: str | None = None,
) -> CalibrationRun:
    """Measure the dataset frame period over a lambda grid and save it in the model directory.

    Unreadable files are left out (``problems`` of the result); all-silent utterances are measured, as
    extraction would, with a line in ``warnings``.

    Args:
        model: a loaded :class:`ofactl.inference.OFAModel` (``ofactl.load_model``); its calibration is replaced.
        data: the corpus; ``split`` picks one of its splits (default: all); ``id_from`` as for
            :func:`ofactl.extract.extract_features` (``relpath`` for a folder whose file names repeat).
        lam_max: the largest lambda to calibrate (default: the model's training ``lambda_max``, else 2).
    """
    from ofactl.extract import read_probed, silence_warning, silent_ids

    corpus = read_probed(data, layout, split, id_from)
    problems = list(corpus.problems)
    if not corpus.utterances:
        raise OfactlError(f"{data}: no readable utterances to calibrate on", hint="run `ofactl data inspect` on it")
    stats: list[AlphaStats] = []
    durations: list[float] = []
    silent: list[str] = []
    rate = model.sample_rate
    with torch.inference_mode():
        for item in iter_batches(corpus.utterances, chunk_s=chunk_s, max_batch_s=max_batch_s,
                                 num_workers=num_workers, progress=progress):
            if isinstance(item, Problem):
                problems.append(item)
                continue
            silent += silent_ids(item)
            if isinstance(item, Long):
                _, alpha = model.front_long(item.wave, chunk_s=min(chunk_s, 30.0))
                stats.append(alpha_stats(alpha.float().cpu()))
                durations.append(item.wave.shape[0] / rate)
            else:
                _, frame_lengths, alpha = model.encode_front(item.audio, item.lengths)
                stats.append(alpha_stats(alpha.float().cpu(), frame_lengths.cpu()))
                durations += (item.lengths.double() / rate).tolist()
    warnings = [line] if (line := silence_warning(silent, len(durations))) is not None else []
    cal = build_calibration(durations, AlphaStats.cat(stats), lam_max=max(float(lam_max or model.lam_max), 1e-3),
                            model_sha256=model.model_sha256, data=str(Path(data).resolve()), split=split)
    cal.save(model.model_dir)
    model.calibration = cal
    return CalibrationRun(cal, problems, warnings)


__all__ = ["CalibrationRun", "measure_calibration"]
