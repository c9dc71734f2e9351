"""Compute profile: MACs per second of audio by component, and throughput, at each frame period.

:func:`profile_model` runs one utterance of random audio (``duration_s``
seconds, 16 kHz) through the student and returns a :class:`Profile`: one
:class:`ProfileRow` per frame period with

* **MACs per second of audio** for each component of :data:`COMPONENTS`:
  ``cnn`` (the conv feature extractor), ``alpha`` (the alpha module),
  ``cif`` (the integrate-and-fire pooling), ``projection`` (feature
  projection + positional convolution), ``layers`` (the transformer layers,
  attention included) and ``heads`` (the prediction heads, which run in
  pretraining only and are left out of :attr:`ProfileRow.total`);
* **throughput** in audio seconds per second of wall time at batch 1 and
  batch 8 (``--no-throughput`` skips it).

How MACs are counted
--------------------
:class:`torch.utils.flop_counter.FlopCounterMode` counts the floating-point
operations of matrix products, convolutions and attention (``2 * M * N * K``
for a product); a MAC is a multiply-accumulate, so **MACs = FLOPs / 2**.
Normalisation, activations, softmax and other elementwise work are not
counted (well under 1% of the total here).  Each component's share is the
counter's total before and after that module's forward (module hooks), so
the attribution does not depend on module names.  Two things the counter
does not see are added by hand:

* CPU attention: PyTorch's ``_scaled_dot_product_flash_attention_for_cpu``
  has no formula in the counter; it is given the counter's own formula for
  attention (``QK^T`` plus ``AV``: ``2 * batch * heads * N^2 * head_dim``
  MACs), so CPU and GPU counts agree.
* CIF: it is two ``index_add`` passes, which the counter does not count.
  Each of the T input frames is multiplied by its two weights and
  accumulated into an output frame, for its C features and for its centre of
  mass: ``cif = 2 * T * (C + 1)`` MACs per utterance (the prefix sum and
  ``modify_alpha`` are additions and scalings of T numbers, ignored).

Attention is quadratic in the number of frames, so MACs per second depend on
the utterance length: that is ``duration_s`` (10 s by default).

Frame periods and lambda
------------------------
The MACs at a period ``p`` are the MACs at ``N = round(duration_s / p)``
output frames (:func:`ofactl.period.exact_target_frames`): the lambda that
gives exactly ``N`` frames on the profiling audio is solved in closed form
(:func:`ofactl.exact_rate.solve_exact_lambda`), so the count is exactly at the
period asked for, for trained and random models alike (a random model's alpha
is about 0.5 everywhere, and a trained model's alpha on random audio says
nothing about speech).  The row's ``lam`` is the model's calibrated lambda for
``p`` when the model has a calibration (what ``ofactl extract --period`` uses),
else the lambda solved on the profiling audio (``lam_source`` says which).
A random model (``preset="tiny"`` or ``"distilhubert"``) therefore needs no
calibration.

Transformer-layer MAC reduction
-------------------------------
The paper (REFERENCE.md) reports a reduction of the MACs "in the Transformer
layers, CIF module included" of 68.7% at ~90 ms and 90.6% at ~960 ms.
:class:`Reduction` computes
``1 - (layers(p) + alpha + cif(p)) / layers(20 ms)``: the compressed
model's transformer layers plus its CIF module (alpha module and pooling)
against the transformer layers of the uncompressed 20 ms model (plain
DistilHuBERT has no CIF module).  The projection and positional convolution
also shrink with the period but are not in this number.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ofactl.errors import OfactlError
from ofactl.macs import COMPONENT_LABELS, COMPONENTS, INFERENCE_COMPONENTS, count_macs
from ofactl.period import FRAME_MS, SAMPLE_RATE, FramePeriod, OperatingPoint
from ofactl.progress import Progress

__all__ = [
    "COMPONENTS",
    "COMPONENT_LABELS",
    "DEFAULT_PERIODS_MS",
    "PAPER_REDUCTIONS",
    "Profile",
    "ProfileRow",
    "Reduction",
    "count_macs",
    "layer_reduction",
    "parse_periods",
    "profile_model",
    "render_profile",
]

#: Short column headers of :func:`render_profile`.
_SHORT = {"cnn": "CNN", "alpha": "alpha", "cif": "CIF", "projection": "proj+pos", "layers": "layers", "heads": "(heads)"}
DEFAULT_PERIODS_MS = (20.0, 40.0, 90.0, 160.0, 320.0, 960.0)
#: The paper's headline reductions (transformer layers + CIF module vs 20 ms).
PAPER_REDUCTIONS = {90.0: 0.687, 960.0: 0.906}
BATCH_SIZES = (1, 8)


# --------------------------------------------------------------------------- results


@dataclass
class ProfileRow:
    """The profile at one frame period.

    Attributes:
        target_period_ms: the period asked for.
        measured_period_ms: ``1000 * duration_s / n_frames`` on the profiling audio.
        lam: the lambda for this period (see ``Profile.lam_source``).
        n_frames: output frames N of the profiled utterance.
        n_frames_20ms: CNN frames T of the profiled utterance.
        duration_s: seconds of audio per utterance.
        macs_per_s: MACs per second of audio for each of :data:`COMPONENTS`.
        throughput: audio seconds per second of wall time, by batch size
            (``{1: ..., 8: ...}``); empty when not measured.
    """

    target_period_ms: float
    measured_period_ms: float
    lam: float
    n_frames: int
    n_frames_20ms: int
    duration_s: float
    macs_per_s: dict[str, float]
    throughput: dict[int, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """MACs per second of audio of an inference pass (every component but the heads)."""
        return sum(self.macs_per_s[c] for c in INFERENCE_COMPONENTS)

    @property
    def layers_share(self) -> float:
        """Fraction of :attr:`total` spent in the transformer layers."""
        return self.macs_per_s["layers"] / self.total if self.total else 0.0

    @property
    def layers_and_cif(self) -> float:
        """Transformer layers + CIF module (alpha module and pooling): the paper's reduced quantity."""
        return self.macs_per_s["layers"] + self.macs_per_s["alpha"] + self.macs_per_s["cif"]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["throughput"] = {str(k): v for k, v in self.throughput.items()}
        d["total_macs_per_s"] = self.total
        d["layers_share"] = self.layers_share
        return d


@dataclass
class Reduction:
    """``1 - (layers(p) + alpha + cif(p)) / layers(20 ms)`` at one period, next to the paper's number."""

    target_period_ms: float
    measured_period_ms: float
    reduction: float
    paper: float | None

    def text(self) -> str:
        paper = f" (paper: {self.paper:.1%})" if self.paper is not None else ""
        return f"{self.reduction:.1%} at {FramePeriod(self.target_period_ms)}{paper}"


@dataclass
class Profile:
    """What :func:`profile_model` returns.

    Attributes:
        model: the model's name (its directory name, or ``"<preset> (random init)"``).
        model_sha256: the weights' hash ("" for a random preset).
        device: the torch device the throughput was measured on.
        device_name: a readable name of that device.
        duration_s: seconds of audio per profiled utterance.
        lam_source: ``"calibration"`` (the model's calibrated lambdas) or
            ``"exact"`` (lambdas solved on the profiling audio).
        baseline_layers_macs_per_s: transformer-layer MACs/s at 20 ms (T frames).
        rows: one :class:`ProfileRow` per period asked for.
        reductions: the transformer-layer reduction at ~90 ms and ~960 ms
            (those the model's calibrated range reaches).
        notes: anything the reader should know (periods left out, ...).
    """

    model: str
    model_sha256: str
    device: str
    device_name: str
    duration_s: float
    lam_source: str
    baseline_layers_macs_per_s: float
    rows: list[ProfileRow]
    reductions: list[Reduction]
    notes: list[str] = field(default_factory=list)
    precision: str = "fp32"  # of the throughput forwards (MACs do not depend on it)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    def to_results(self) -> list:
        """Rows for the results table (task ``profile``): ``macs_per_s`` and ``throughput_b<B>`` per period.

        ``macs_per_s`` is the inference total, with the breakdown in ``note``;
        ``split`` is empty (random audio, no dataset).
        """
        from ofactl.results import ResultRow

        out = []
        for r in self.rows:
            common = dict(model=self.model, model_sha256=self.model_sha256, task="profile", split="", lam=r.lam,
                          target_period_ms=r.target_period_ms, measured_period_ms=r.measured_period_ms,
                          macs_per_second=r.total, precision=self.precision)
            breakdown = " ".join(f"{c}={r.macs_per_s[c]:.4g}" for c in COMPONENTS)
            out.append(ResultRow(metric="macs_per_s", value=r.total, higher_is_better=False, n_utterances=1,
                                 note=f"{breakdown} ({self.duration_s:g} s utterance; heads not in value)", **common))
            for batch, value in sorted(r.throughput.items()):
                out.append(ResultRow(metric=f"throughput_b{batch}", value=value, higher_is_better=True,
                                     n_utterances=batch, note=f"audio s/s on {self.device_name}", **common))
        return out


def layer_reduction(row: ProfileRow, baseline_layers: float, paper: float | None = None) -> Reduction:
    """The paper's reduction at ``row`` against the 20 ms transformer layers (see the module docstring)."""
    value = 1.0 - row.layers_and_cif / baseline_layers if baseline_layers > 0 else float("nan")
    return Reduction(row.target_period_ms, row.measured_period_ms, value, paper)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _throughput(student: nn.Module, audio: Tensor, lam: Tensor, min_time_s: float, max_repeats: int = 50,
                precision: str = "fp32") -> float:
    """Audio seconds per second of one inference forward of the batch ``audio (batch, samples)``."""
    from ofactl.precision import autocast

    device = audio.device
    with autocast(device, precision):
        return _timed(student, audio, lam, min_time_s, max_repeats)


def _timed(student: nn.Module, audio: Tensor, lam: Tensor, min_time_s: float, max_repeats: int) -> float:
    device = audio.device
    lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=device)
    student(audio, lengths, lam=lam, predict=False)  # warm-up (kernel selection, allocator)
    _sync(device)
    repeats, start = 0, time.perf_counter()
    elapsed = 0.0
    while repeats < 1 or (elapsed < min_time_s and repeats < max_repeats):
        student(audio, lengths, lam=lam, predict=False)
        _sync(device)
        repeats += 1
        elapsed = time.perf_counter() - start
    return audio.shape[0] * audio.shape[1] / SAMPLE_RATE * repeats / elapsed


# --------------------------------------------------------------------------- the profile


def parse_periods(text: str | Sequence[str | float | FramePeriod]) -> list[FramePeriod]:
    """``"20ms,90ms,0.96s"`` (or a list of such texts, or milliseconds) -> sorted unique periods >= 20 ms."""
    items = text.split(",") if isinstance(text, str) else list(text)
    periods = []
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            p = FramePeriod.parse(item)
        elif isinstance(item, FramePeriod):
            p = item
        else:
            p = FramePeriod(float(item))
        periods.append(OperatingPoint.of(p).period)  # checked once, there (20 ms at least)
    if not periods:
        raise OfactlError("no frame period given", hint="e.g. --periods 20ms,90ms,960ms")
    return sorted(set(periods))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def profile_model(
    model=None,
    *,
    preset: str | None = None,
    periods: Sequence[str | float | FramePeriod] | str = DEFAULT_PERIODS_MS,
    duration_s: float = 10.0,
    device: str | torch.device | None = "auto",
    throughput: bool = True,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    min_time_s: float = 1.0,
    seed: int = 0,
    progress: Progress | None = None,
    precision: str = "auto",
) -> Profile:
    """MACs per second of audio by component, and throughput, at each frame period.

    Args:
        model: a loaded :class:`~ofactl.inference.OFAModel` (it runs on its device, in its precision); not
            together with ``preset``.
        preset: ``"tiny"`` or ``"distilhubert"``: profile a randomly initialised
            student of that size instead (no checkpoint, no calibration needed), on ``device`` in ``precision``.
        periods: target frame periods (``"20ms,90ms"``, texts, or milliseconds).
        duration_s: seconds of random audio per utterance (attention is
            quadratic, so MACs per second grow with it).
        device: torch device of a preset (``"auto"``: CUDA when available).
        throughput: also time inference forwards at each of ``batch_sizes``.
        min_time_s: time each (period, batch size) for at least this long
            (after one warm-up forward; at least one timed forward).
        seed: seed of the random audio (and of a preset's weights).
        precision: of a preset's throughput forwards: ``fp32``, ``bf16`` or ``auto`` (see :mod:`ofactl.precision`).
        progress: called as ``progress(done, total, "")`` after each step.

    Returns:
        A :class:`Profile`.

    Raises:
        OfactlError: a bad period, a period outside the model's calibrated
            range, or a model that cannot be loaded.
    """
    from ofactl.period import exact_target_frames
    from ofactl.distributed import resolve_device
    from ofactl.inference import require_model
    from ofactl.model import OFAStudent, StudentConfig

    if model is not None and preset is not None:
        raise OfactlError("give a model or a preset, not both", hint="--preset profiles a random student of that size")
    if preset is None:
        model = require_model(model, "profile_model")
    asked = parse_periods(periods)
    if not duration_s > 0 or not math.isfinite(duration_s):
        raise OfactlError(f"--seconds must be a positive number, found {duration_s}")
    if any(int(b) < 1 for b in batch_sizes):
        raise OfactlError(f"batch sizes must be >= 1, found {list(batch_sizes)}")
    dev = resolve_device(None if device is None else str(device))
    calibration = None
    if preset is not None:
        torch.manual_seed(seed)
        student = OFAStudent(StudentConfig.preset(preset)).eval().to(dev)
        name, sha = f"{preset} (random init)", ""
    else:
        student = model.student.eval()
        name, sha, calibration = model.model_dir.name, model.model_sha256, model.calibration
        dev, precision = model.device, model.precision
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OfactlError(f"device {dev} is not available", hint="use --device cpu")
    from ofactl.precision import resolve_precision

    precision = resolve_precision(precision, dev, student.config.embed_dim)
    notes: list[str] = []
    row_lams: dict[float, float] = {}
    if calibration is not None:
        for p in asked:
            row_lams[p.ms] = float(calibration.lam_for(p))  # outside the range: one clear error
    reduction_periods = []
    for ms in PAPER_REDUCTIONS:
        if calibration is not None:
            try:
                calibration.lam_for(FramePeriod(ms))
            except OfactlError:
                notes.append(f"{FramePeriod(ms)} is outside the calibrated range {calibration.range_text()}: "
                             "no reduction stated there")
                continue
        reduction_periods.append(ms)

    generator = torch.Generator().manual_seed(seed)
    n_samples = int(round(duration_s * SAMPLE_RATE))
    max_batch = max([1, *[int(b) for b in batch_sizes]]) if throughput else 1
    audio = (0.1 * torch.randn(max_batch, n_samples, generator=generator)).to(dev)
    t_frames = int(student.feature_extractor.output_lengths(torch.tensor([n_samples]))[0])
    if t_frames < 1:
        raise OfactlError(f"{duration_s:g} s of audio is shorter than one CNN frame", hint="use --seconds 1 or more")

    all_ms = sorted({p.ms for p in asked} | set(reduction_periods) | {FRAME_MS})
    frames = {ms: exact_target_frames(duration_s, ms, t_frames) for ms in all_ms}
    frames[0.0] = t_frames  # the uncompressed baseline: every 20 ms frame
    order = sorted(set(frames.values()), reverse=True)
    total_steps = 1 + (len(asked) * len(batch_sizes) if throughput else 0)
    front, backs, lams, t_frames = count_macs(student, audio[:1], order)
    by_frames = {n: (back, lam) for n, back, lam in zip(order, backs, lams)}
    if progress:
        progress(1, total_steps, "")

    def make_row(ms: float) -> ProfileRow:
        n = frames[ms]
        back, lam = by_frames[n]
        macs = {c: (front | back)[c] / duration_s for c in COMPONENTS}
        return ProfileRow(ms, 1000.0 * duration_s / n, row_lams.get(ms, lam), n, t_frames, duration_s, macs)

    rows = [make_row(p.ms) for p in asked]
    baseline_layers = by_frames[t_frames][0]["layers"] / duration_s
    reductions = [layer_reduction(make_row(ms), baseline_layers, PAPER_REDUCTIONS[ms]) for ms in reduction_periods]

    if throughput:
        done = 1
        for row in rows:
            for batch in batch_sizes:
                batch = int(batch)
                lam = _exact_lams(student, audio[:batch], row.n_frames)
                row.throughput[batch] = _throughput(student, audio[:batch], lam, min_time_s, precision=precision)
                done += 1
                if progress:
                    progress(done, total_steps, "")
    if dev.type == "cpu":
        notes.append("throughput on CPU; use --device cuda for GPU numbers")
    return Profile(name, sha, str(dev), _device_name(dev), duration_s, "calibration" if calibration else "exact",
                   baseline_layers, rows, reductions, notes, precision)


@torch.no_grad()
def _exact_lams(student: nn.Module, audio: Tensor, n_frames: int) -> Tensor:
    """Per-utterance lambdas ``(batch,)`` that give every utterance of ``audio`` exactly ``n_frames`` frames."""
    from ofactl.exact_rate import solve_exact_lambdas

    _, frame_lengths, alpha = student.front(audio)
    targets = [min(n_frames, int(t)) for t in frame_lengths.tolist()]
    return solve_exact_lambdas(alpha.float().cpu(), frame_lengths.cpu(), targets).to(audio.device)


# --------------------------------------------------------------------------- display


def _g(value: float) -> str:
    """MACs in G (1e9) with three significant digits."""
    return f"{value / 1e9:.3g}"


def render_profile(profile: Profile):
    """A rich table of the profile (GMACs per second of audio, throughput in audio s/s)."""
    from rich.table import Table

    batches = sorted({b for r in profile.rows for b in r.throughput})
    source = "the model's calibration" if profile.lam_source == "calibration" else "solved on the profiling audio"
    table = Table(title=f"Compute profile of {profile.model}: GMAC per second of audio ({profile.duration_s:g} s utterance)",
                  caption="MACs = FLOPs/2 (torch FlopCounterMode; CIF counted by hand); total = inference, "
                          "(heads) run in pretraining only; "
                          + (f"thru b<B> = audio seconds per second at batch B on {profile.device_name}; "
                             if batches else "")
                          + f"lambda {source}")
    for name in ("period", "measured", "lambda", "frames"):
        table.add_column(name, justify="right")
    for c in COMPONENTS:
        table.add_column(_SHORT[c], justify="right", style="dim" if c == "heads" else None)
    table.add_column("total", justify="right", style="bold")
    table.add_column("layers %", justify="right")
    for b in batches:
        table.add_column(f"thru b{b}", justify="right")
    for r in profile.rows:
        cells = [str(FramePeriod(r.target_period_ms)), f"{r.measured_period_ms:.1f}ms", f"{r.lam:.4g}",
                 f"{r.n_frames}/{r.n_frames_20ms}"]
        cells += [_g(r.macs_per_s[c]) for c in COMPONENTS]
        cells += [_g(r.total), f"{r.layers_share:.1%}"]
        cells += [f"{r.throughput[b]:.1f}" if b in r.throughput else "-" for b in batches]
        table.add_row(*cells)
    return table


def reduction_lines(profile: Profile) -> list[str]:
    """One line per stated reduction, for the CLI."""
    lines = []
    if profile.reductions:
        lines.append("transformer-layer MAC reduction (layers + CIF module vs the 20 ms layers): "
                     + "; ".join(r.text() for r in profile.reductions))
    return lines + profile.notes
