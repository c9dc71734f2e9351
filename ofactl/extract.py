"""Dataset-level feature extraction to HDF5.

:func:`extract_features` reads a corpus (any layout ofactl knows, or a folder
of audio), runs the model at one lambda (from a target period via the
calibration, given directly, or solved per utterance for ``exact`` frame
counts) and writes the HDF5 layout of :mod:`ofactl.features`: crash-safe
parts, resumable, one shard per torchrun rank, merged at the end.  Bad files
are recorded in the file attribute ``skipped`` and the rest goes on.

:func:`extract_lambdas` writes several lambdas' files in one pass over the
audio (the 20 ms part of the model runs once per batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from ofactl.data.pipeline import Long, iter_batches
from ofactl.data.problems import Problem
from ofactl.errors import OfactlError
from ofactl.period import FramePeriod, OperatingPoint, check_lambda
from ofactl.progress import Progress

if TYPE_CHECKING:
    from ofactl.inference import OFAModel


def read_probed(data: str | Path, layout: str | None, split: str | None, id_from: str | None):
    """The corpus at ``data`` (one split, or all), its audio headers read (durations known)."""
    from ofactl.data.corpora import probe, read_corpus

    options: dict[str, Any] = {}
    if id_from is not None:
        options["id_from"] = id_from
    corpus = read_corpus(data, layout, split=split, **options)
    return probe(corpus)


def silent_ids(item) -> list[str]:
    """The utterances of a work item (a batch or a :class:`Long`) with no sample above the silence threshold."""
    from ofactl.data.audio import SILENCE_PEAK, is_silent

    if isinstance(item, Long):
        return [item.id] if is_silent(item.wave) else []
    peaks = item.audio.abs().amax(dim=1)  # zero padding never raises a peak
    return [item.ids[i] for i in torch.nonzero(peaks < SILENCE_PEAK).flatten().tolist()]


def silence_warning(ids: list[str], total: int) -> str | None:
    """One warning line for all-silent utterances (None when there are none)."""
    if not ids:
        return None
    from ofactl.data.audio import SILENCE_PEAK

    shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    return (f"{len(ids)} of {total} utterance(s) are all silent (no sample above {SILENCE_PEAK:g}): {shown}; "
            "their features carry no speech and lengthen the measured frame period (`ofactl data inspect --deep` "
            "lists them)")


# ----------------------------------------------------------------------------- extraction


@dataclass
class ExtractResult:
    """What :func:`extract_features` returns (on rank 0 after the merge)."""

    out: Path
    n_utterances: int
    skipped: list[Problem]  # the inputs left out (this run's and earlier runs' of the same file)
    lam: float | None
    exact: bool
    target_period_ms: float | None
    measured_period_ms: float | None
    seconds: float
    audio_s: float
    warnings: list[str] = field(default_factory=list)
    precision: str = "fp32"  # of the model's forward: fp32 or bf16


class Uniform(NamedTuple):
    """An :func:`extract_lambdas` output pooled to a fixed length inside the model (no learned segmentation)."""

    period_ms: float


def _attrs(m, data, split, p: FramePeriod | None, which, n_layers: int, lam: float | None, exact: bool,
           uniform: bool = False) -> dict:
    """The file attributes of one extraction run (they decide which parts may be resumed).

    A uniform run (fixed-length pooling inside the model) records ``pooling="uniform"`` and ``lambda`` 1 (the
    CIF's setting with equal weights); other runs carry no ``pooling`` attribute (the learned CIF).
    """
    from ofactl import __version__

    attrs: dict[str, Any] = {
        "target_period_ms": p.ms if p is not None else None,
        "layer": which,
        "model_sha256": m.model_sha256,
        "data": str(Path(data).resolve()),
        "split": split,
        "ofactl_version": __version__,
        "precision": m.precision,
    }
    if which == "all":
        attrs["layers"] = list(range(n_layers + 1))
    if exact:
        attrs["exact"] = True
    else:
        attrs["lambda"] = 1.0 if uniform else float(lam)
    if uniform:
        attrs["pooling"] = "uniform"
    return attrs


@dataclass
class _Run:
    """One output file of an extraction pass: where, at which lambda (or exact period), with which attrs."""

    out: Path
    lam: float | None
    exact_ms: float | None
    attrs: dict[str, Any]
    writer: Any = None
    audio_s: float = 0.0
    uniform_ms: float | None = None


def _write_runs(m, runs: list[_Run], todo, layer, *, chunk_s: float, max_batch_s: float, num_workers: int,
                progress: Progress | None, done: int, total: int) -> list[str]:
    """One pass over the audio of ``todo``: the CNN and alpha once per batch, then each run's lambda.

    Every run's writer is open (entered) by the caller; an utterance a run
    already holds (``writer.done_ids``) is not written again.  Returns the ids
    of the all-silent utterances read (written like any other).
    """
    from ofactl.features import Record

    silent: list[str] = []
    for item in iter_batches(todo, chunk_s=chunk_s, max_batch_s=max_batch_s, num_workers=num_workers,
                             progress=progress, done=done, total=total):
        if isinstance(item, Problem):
            for run in runs:
                if item.id not in run.writer.done_ids:
                    run.writer.skip(item)
            continue
        silent += silent_ids(item)
        if isinstance(item, Long):
            for run in runs:
                if item.id in run.writer.done_ids:
                    continue
                e = m.encode_long(item.wave, run.lam, run.exact_ms, layer, chunk_s=min(chunk_s, 30.0),
                                  uniform_period_ms=run.uniform_ms)
                run.writer.write([Record(item.id, e.features, e.frame_times_s, e.duration_s, e.lam)])
                run.audio_s += e.duration_s
        else:
            front = m.encode_front(item.audio, item.lengths)
            for run in runs:
                keep = [i for i, u in enumerate(item.ids) if u not in run.writer.done_ids]
                if not keep:
                    continue
                encoded = m.encode_back(front, item.lengths, run.lam, run.exact_ms, layer, run.uniform_ms)
                run.writer.write([Record(item.ids[i], encoded[i].features, encoded[i].frame_times_s,
                                         encoded[i].duration_s, encoded[i].lam) for i in keep])
                run.audio_s += float(item.lengths[keep].sum()) / m.sample_rate
    return silent


def extract_features(
    data: str | Path,
    out: str | Path,
    *,
    model: "OFAModel",
    period: FramePeriod | str | None = None,
    lam: float | None = None,
    exact: bool = False,
    layer: str | int = "last",
    dtype: str = "float16",
    overwrite: bool = False,
    cache: bool = False,
    layout: str | None = None,
    split: str | None = None,
    id_from: str | None = None,
    max_batch_s: float = 160.0,
    num_workers: int = 2,
    chunk_s: float = 60.0,
    part_mb: float = 64.0,
    progress: Progress | None = None,
    pooling: str = "cif",
) -> ExtractResult:
    """Extract features of every utterance in ``data`` into ``out`` (HDF5) with ``model`` (an
    :class:`~ofactl.inference.OFAModel`: its device and precision are the run's).

    Exactly one of ``period`` and ``lam``; ``exact=True`` needs ``period``.
    ``pooling="uniform"`` (with ``period``) pools the 20 ms frames to fixed
    lengths inside the model instead of the learned CIF segmentation (see
    :meth:`ofactl.inference.OFAModel.encode_back`).
    Runs under torchrun too: each rank takes a disjoint shard and rank 0
    merges.  Resumes an interrupted run with the same settings; ``part_mb``
    is how many MB of features are buffered before a crash-safe part file is
    written (what a kill can lose).  ``cache=True`` treats ``out`` as a cache
    entry: a complete file with these settings is returned as it is, anything
    else there (other settings, an unreadable file) is replaced.
    """
    from ofactl import distributed as D
    from ofactl.features import FeatureWriter, is_complete, merge, read_attrs, recover, run_fingerprint
    from ofactl.inference import parse_layer, require_model

    t0 = time.time()
    m = require_model(model, "extract_features")
    point = OperatingPoint.of(period, lam, exact)  # every argument check of the operating point, in one place
    p, lam = point.period, point.lam
    if pooling not in ("cif", "uniform"):
        raise OfactlError(f"pooling must be cif or uniform, found {pooling!r}")
    uniform = pooling == "uniform"
    if uniform and (p is None or exact):
        raise OfactlError("uniform pooling needs --period (and not --exact)")
    env = D.setup(str(m.device))
    if uniform:
        lam = 1.0  # the CIF with equal weights (OFAModel.encode_back), no calibration needed
    elif not exact:
        lam = point.resolve(m)
    which = parse_layer(layer, len(m.student.encoder.transformer.layers))
    n_layers = len(m.student.encoder.transformer.layers)
    attrs = _attrs(m, data, split, p, which, n_layers, lam, exact, uniform)
    if env.is_main:
        recover(out)  # a merge killed after its final mark: finish it first, so a finished file counts as done
    D.barrier(env)
    if (cache or not overwrite) and is_complete(out) and read_attrs(out).get("run_fingerprint") == run_fingerprint(attrs, dtype):
        # the same command after a finished run (e.g. re-run after a kill that came too late): nothing to do
        summary = read_attrs(out)
        D.cleanup(env)
        return ExtractResult(Path(out), int(summary.get("n_utterances", 0)), _skipped(out),
                             None if exact else float(lam), exact, p.ms if p is not None else None,
                             summary.get("measured_period_ms"), time.time() - t0, 0.0,
                             [f"{out} was already complete with these settings: nothing done"], m.precision)
    corpus = read_probed(data, layout, split, id_from)  # (after the check above: a finished file needs no audio)
    utts = sorted(corpus.utterances, key=lambda u: u.id)[env.rank :: env.world_size]
    run = _Run(Path(out), None if exact else lam, p.ms if exact else None, attrs,
               uniform_ms=p.ms if uniform else None)
    run.writer = FeatureWriter(out, attrs, rank=env.rank, world_size=env.world_size, overwrite=overwrite or cache,
                               dtype=dtype,
                               part_bytes=int(part_mb * 2**20))
    if env.is_main:
        _skip_problems(corpus, [run])
    todo = [u for u in utts if u.id not in run.writer.done_ids]
    done, total = len(utts) - len(todo), len(utts)
    if progress:
        progress(done, total, "")

    with run.writer:
        silent = _write_runs(m, [run], todo, layer, chunk_s=chunk_s, max_batch_s=max_batch_s, num_workers=num_workers,
                    progress=progress, done=done, total=total)
        if env.distributed:
            run.writer.flush()
    summary: dict[str, Any] = {}
    if env.distributed:
        D.barrier(env)
        if env.is_main:
            summary = merge(out, fingerprint=run.writer.fingerprint)
        D.barrier(env)
    else:
        summary = read_attrs(out)
    skipped = _skipped(out) if env.is_main else []
    measured = summary.get("measured_period_ms")
    warnings = [line] if (line := silence_warning(silent, len(todo))) is not None else []  # this rank's share
    if env.is_main and p is not None and measured and abs(measured - p.ms) / p.ms > 0.05:
        warnings.append(f"measured frame period {measured:.1f}ms differs from the target {p} by "
                        f"{100 * (measured - p.ms) / p.ms:+.0f}%: calibrate on data like this, or use --exact")
    D.cleanup(env)
    return ExtractResult(Path(out), int(summary.get("n_utterances", 0)), skipped, None if exact else float(lam),
                         exact, p.ms if p is not None else None, measured, time.time() - t0, run.audio_s, warnings,
                         m.precision)


def _skip_problems(corpus, runs: list[_Run]) -> None:
    """Record the corpus's unreadable files in every run (once each).  A problem whose id is also a kept
    utterance's (a duplicate id: the first entry is kept) is recorded under its own key, so that it never stops
    the kept utterance from being extracted."""
    kept = {u.id for u in corpus.utterances}
    for n, problem in enumerate(corpus.problems):
        key = problem.id or Path(problem.path).stem
        if key in kept:
            key = f"{key}~problem{n}"
        for run in runs:
            if key not in run.writer.done_ids:
                run.writer.skip(problem, key=key)


def extract_lambdas(
    data: str | Path,
    outputs: "dict[str | Path, float | Uniform]",
    *,
    model: "OFAModel",
    layer: str | int = "last",
    dtype: str = "float16",
    layout: str | None = None,
    split: str | None = None,
    max_batch_s: float = 160.0,
    num_workers: int = 2,
    chunk_s: float = 60.0,
    part_mb: float = 64.0,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> list[ExtractResult]:
    """Extract the features of ``data`` at several lambdas in one pass: ``{out path: lambda}``.

    A value :class:`Uniform` ``(period_ms)`` asks for fixed-length pooling inside
    the model at that period instead (``extract_features(..., pooling="uniform")``).

    The 20 ms part of the model (CNN and alpha, most of the cost) runs once
    per batch; only the CIF and the transformer run per lambda.  Each output
    is exactly the file :func:`extract_features` writes for ``lam`` (same
    attributes, so either resumes the other and a finished file is not
    redone); files already complete are left alone (``overwrite``: replace whatever
    else is at an output path, as a cache does).  Under torchrun each rank
    extracts its share of the utterances and rank 0 merges every output (as
    :func:`extract_features` does); the other ranks return an empty list.
    """
    from ofactl import distributed as D
    from ofactl.features import FeatureWriter, is_complete, merge, read_attrs, recover, run_fingerprint
    from ofactl.inference import parse_layer, require_model

    t0 = time.time()
    m = require_model(model, "extract_lambdas")
    env = D.setup(str(m.device))
    which = parse_layer(layer, len(m.student.encoder.transformer.layers))
    n_layers = len(m.student.encoder.transformer.layers)
    if env.is_main:
        for out in outputs:
            recover(out)  # see extract_features
    D.barrier(env)
    runs = []
    for out, lam in outputs.items():
        if isinstance(lam, Uniform):
            attrs = _attrs(m, data, split, FramePeriod(lam.period_ms), which, n_layers, 1.0, False, uniform=True)
            run = _Run(Path(out), 1.0, None, attrs, uniform_ms=lam.period_ms)
        else:
            check_lambda(lam, "lambda")
            attrs = _attrs(m, data, split, None, which, n_layers, float(lam), False)
            run = _Run(Path(out), float(lam), None, attrs)
        if is_complete(out) and read_attrs(out).get("run_fingerprint") == run_fingerprint(attrs, dtype):
            continue
        runs.append(run)
    if not runs:
        return []
    corpus = read_probed(data, layout, split, None)
    utts = sorted(corpus.utterances, key=lambda u: u.id)[env.rank :: env.world_size]
    from contextlib import ExitStack

    with ExitStack() as stack:
        for run in runs:
            run.out.parent.mkdir(parents=True, exist_ok=True)
            run.writer = stack.enter_context(FeatureWriter(run.out, run.attrs, dtype=dtype, rank=env.rank,
                                                           world_size=env.world_size, overwrite=overwrite,
                                                           part_bytes=int(part_mb * 2**20)))
        if env.is_main:
            _skip_problems(corpus, runs)
        todo = [u for u in utts if any(u.id not in run.writer.done_ids for run in runs)]
        _write_runs(m, runs, todo, layer, chunk_s=chunk_s, max_batch_s=max_batch_s, num_workers=num_workers,
                    progress=progress, done=len(utts) - len(todo), total=len(utts))
        if env.distributed:
            for run in runs:
                run.writer.flush()
    if env.distributed:
        D.barrier(env)
        if env.is_main:
            for run in runs:
                merge(run.out, fingerprint=run.writer.fingerprint)
        D.barrier(env)
        if not env.is_main:
            return []
    results = []
    for run in runs:
        summary = read_attrs(run.out)
        results.append(ExtractResult(run.out, int(summary.get("n_utterances", 0)), _skipped(run.out), run.lam, False,
                                     None, summary.get("measured_period_ms"), time.time() - t0, run.audio_s))
    return results


def _skipped(out: str | Path) -> list[Problem]:
    from ofactl.features import read_attrs

    return [Problem.from_record(r) for r in read_attrs(out).get("skipped", [])]
