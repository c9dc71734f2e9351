"""What a sweep will cost before it runs: ``ofactl sweep --dry-run``.

For a :class:`~ofactl.sweep.SweepPlan`: the jobs, the audio the model must
read to extract the features still missing (one pass per split serves every
period), the bytes each period's features take on disk, and the peak memory
of one job.  Durations come from the audio files' headers (nothing decoded);
frames from the durations and each period.

A job's memory is the runtime (Python, torch, h5py: :data:`RUNTIME_BYTES`,
measured by ``benchmarks/bench_probe.py``), the model it loads, the batches
in flight (the one training plus the loader's read-ahead, padded to the
longest utterance at that period, stored and float32 copies) and the head's
activations; it does not grow with the corpus, since probes stream their
features (:mod:`ofactl.stream`).  Per-utterance bookkeeping (ids, lengths,
targets) is the one part that does, at about :data:`BOOKKEEPING_BYTES` each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: resident memory of a probe process before any data (Python, torch, h5py, numpy), bytes
RUNTIME_BYTES = 420 * 2**20
#: memory per utterance of a split held as references (id, length, target, Stored), bytes
BOOKKEEPING_BYTES = 1200
#: batches in flight: the one being trained on, and the read-ahead of one loader worker (prefetch 2)
BATCHES_IN_FLIGHT = 3
#: HDF5 bytes per utterance beyond its arrays (group, two datasets, attributes)
H5_BYTES_PER_UTTERANCE = 2400


@dataclass
class SplitAudio:
    name: str
    utterances: int
    seconds: float
    longest_s: float


@dataclass
class PeriodCost:
    label: str              # "90ms", "lambda=1", "20ms (pooled to every period)"
    period_ms: float | None
    frames: int
    bytes: int
    cached: bool


@dataclass
class SweepEstimate:
    task: str
    jobs: int
    points: int
    lrs: int
    seeds: int
    skipped: int
    splits: list[SplitAudio] = field(default_factory=list)
    periods: list[PeriodCost] = field(default_factory=list)
    extract_seconds: float = 0.0
    dim: int = 0
    job_bytes: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    concurrency: int = 1

    def describe(self, launcher: Any = None) -> str:
        lines = [f"sweep {self.task}: {self.points} point(s) x {self.lrs} learning rate(s) x {self.seeds} seed(s) "
                 f"= {self.jobs} job(s) to run" + (f"; {self.skipped} (point, seed) pair(s) done before, skipped"
                                                    if self.skipped else "")]
        if launcher is not None:
            where = {"inline": "in this process, one after another", "local": f"{launcher.jobs} local processes at once",
                     "slurm": "a SLURM job array (submitit)"}.get(launcher.name, launcher.name)
            lines.append(f"launcher: {where}")
        audio = ", ".join(f"{s.name} {_hours(s.seconds)} ({s.utterances} utt.)" for s in self.splits)
        lines.append(f"audio: {audio}")
        if self.extract_seconds:
            lines.append(f"audio to extract: {_hours(self.extract_seconds)} (one pass per split for every period)")
        else:
            lines.append("audio to extract: none (every period's features are cached)")
        lines.append(f"features on disk (float16, {self.dim} dims, all splits):")
        for p in self.periods:
            lines.append(f"  {p.label:<30} {_count(p.frames):>8} frames  {_bytes(p.bytes):>9}"
                         f"  {'cached' if p.cached else 'to extract'}")
        total = sum(p.bytes for p in self.periods if not p.cached)
        lines.append(f"  new features in all: {_bytes(total)}")
        parts = ", ".join(f"{k} {_bytes(v)}" for k, v in self.parts.items())
        lines.append(f"peak memory per job: about {_bytes(self.job_bytes)} ({parts}); "
                     f"{self.concurrency} at once: {_bytes(self.job_bytes * self.concurrency)}")
        return "\n".join(lines)


def estimate(plan, jobs: int = 1) -> SweepEstimate:
    """The cost of ``plan`` (a :class:`~ofactl.sweep.SweepPlan`); ``jobs``: how many run at once."""
    from ofactl.data.corpora import probe as read_headers, read_corpus
    from ofactl.features import is_complete
    from ofactl.probe import features_path, period_tag, uniform_tag
    from ofactl.period import FramePeriod
    from ofactl.tasks import get_task

    task, m = plan.task, plan.model
    config = m.student.config
    n_layers = len(m.student.encoder.transformer.layers)
    dim = config.embed_dim * ((n_layers + 1) if str(plan.layer) == "all" else 1)
    est = SweepEstimate(task.name, len(plan.jobs), len({(j.period_ms, j.lam) for j in plan.jobs}), len(plan.lrs),
                        len(plan.seeds), len(plan.skipped), dim=dim, concurrency=jobs)
    for split in task.splits:
        corpus = read_headers(read_corpus(plan.data, task.layout_of(plan.data), split=split))
        durations = [u.duration_s or 0.0 for u in corpus.utterances]
        est.splits.append(SplitAudio(split, len(durations), float(sum(durations)), max(durations, default=0.0)))
    seconds = sum(s.seconds for s in est.splits)
    utterances = sum(s.utterances for s in est.splits)
    points = sorted({(j.period_ms, j.lam) for j in plan.jobs}, key=lambda x: (x[0] is None, x[0] or 0, x[1] or 0))
    targets: list[tuple[str, float | None, str]] = []   # label, period, cache tag
    if plan.pooling == "avg" and points:
        targets.append(("20ms (pooled to every period)", 20.0, period_tag(None, 0.0)))
    for period_ms, lam in points if plan.pooling != "avg" else []:
        if plan.pooling == "uniform":
            targets.append((f"{period_ms:g}ms (uniform)", period_ms, uniform_tag(FramePeriod(period_ms))))
            continue
        try:
            value = m.lam_for(FramePeriod(period_ms)) if period_ms is not None else float(lam)
            period = period_ms if period_ms is not None else (
                m.calibration.period_for(value).ms if m.calibration is not None else None)
        except Exception:  # noqa: BLE001 - outside the calibrated range: the job will record it
            targets.append((f"{period_ms:g}ms (outside the calibrated range)", None, ""))
            continue
        label = f"{period_ms:g}ms" if period_ms is not None else f"lambda={lam:g}" + (
            f" (~{period:.0f}ms)" if period else "")
        targets.append((label, period, period_tag(FramePeriod(period_ms) if period_ms is not None else None, value)))
    missing_splits: set[str] = set()
    for label, period, tag in targets:
        frames = int(seconds * 1000 / period) if period else 0
        size = frames * (dim * 2 + 8) + utterances * H5_BYTES_PER_UTTERANCE if period else 0
        cached = bool(tag) and all(is_complete(features_path(plan.features_dir, m.model_sha256, task.name, split, tag,
                                                             plan.layer, plan.data, m.precision))
                                for split in task.splits)
        if tag and not cached:
            missing_splits |= {split for split in task.splits if not is_complete(
                features_path(plan.features_dir, m.model_sha256, task.name, split, tag, plan.layer, plan.data,
                              m.precision))}
        est.periods.append(PeriodCost(label, period, frames, size, cached))
    est.extract_seconds = sum(s.seconds for s in est.splits if s.name in missing_splits)
    # one job: the model, the batches in flight at the shortest period (the most frames), the head
    shortest = min((p for _, p, _ in targets if p), default=20.0)
    longest_frames = int(max((s.longest_s for s in est.splits), default=0.0) * 1000 / shortest) + 1
    batch = get_task(task.name).batch_size
    params = sum(p.numel() * p.element_size() for p in m.student.parameters())
    in_flight = BATCHES_IN_FLIGHT * batch * longest_frames * dim * (2 + 4 + 4)
    head = batch * longest_frames * 1024 * 4 * 3
    books = max((s.utterances for s in est.splits), default=0) * BOOKKEEPING_BYTES * 3
    est.parts = {"runtime": RUNTIME_BYTES, "model": params, "batches in flight": in_flight, "head": head,
                 "bookkeeping": books}
    est.job_bytes = sum(est.parts.values())
    return est


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"


def _count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


__all__ = ["SweepEstimate", "estimate"]
