"""A trained OFA model at inference: choose a frame period, get features and frame times.

:func:`load_model` returns an :class:`OFAModel`: the student in eval mode,
its model directory, its calibration (when ``ofactl calibrate`` ran) and its
weights' SHA-256.  :meth:`OFAModel.extract` turns one waveform into features
at a target period (via the calibration), at a given lambda, or at an exact
frame count (``exact=True``: ``round(duration / period)`` frames, lambda
solved per utterance in closed form).  :meth:`OFAModel.encode_batch` does the
same for a padded batch, and long audio is processed in bounded memory by
:meth:`OFAModel.encode_long`.

Frame times: CNN frame ``t`` covers samples ``[320 t, 320 t + 400)``, so its
centre is at ``0.0125 + 0.02 t`` s; an output frame's time is its CIF weights'
centre of mass, ``0.0125 + 0.02 * centers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from ofactl.channels_last import conv1d_module
from ofactl.cif import cif, modify_alpha
from ofactl.errors import OfactlError
from ofactl.layers import MaskedGroupNorm, conv_output_lengths, run_encoder
from ofactl.model import OFAStudent
from ofactl.period import FRAME_MS, SAMPLE_RATE, FramePeriod, OperatingPoint

if TYPE_CHECKING:
    from ofactl.calibrate import Calibration

#: Layers: "last", "all", or an index into hidden_states (0 = transformer input).
LayerSpec = str | int


def parse_layer(layer: LayerSpec, num_layers: int) -> int | str:
    """``"last"`` -> ``num_layers``; ``"all"`` stays; an int (or its text) in ``[0, num_layers]``."""
    if layer == "last":
        return num_layers
    if layer == "all":
        return "all"
    try:
        index = int(layer)
    except (TypeError, ValueError):
        raise OfactlError(f"--layer must be last, all or a layer number, found {layer!r}") from None
    if not 0 <= index <= num_layers:
        raise OfactlError(f"layer {index} does not exist", hint=f"this model has layers 0..{num_layers} (0 = input)")
    return index


def frame_times_s(centers: Tensor, hop_samples: int = 320, field_samples: int = 400) -> Tensor:
    """Seconds of each output frame's centre of mass from CIF ``centers`` (20 ms frame indices)."""
    return (centers.double() * hop_samples + field_samples / 2) / SAMPLE_RATE


class Encoded(NamedTuple):
    """Features of one utterance.

    Attributes:
        features: ``(N, D)``, or ``(L, N, D)`` for ``layer="all"``.
        frame_times_s: ``(N,)`` seconds.
        lam: the lambda used.
        duration_s: seconds of audio.
        n_frames_20ms: CNN frames (T).
    """

    features: Tensor
    frame_times_s: Tensor
    lam: float
    duration_s: float
    n_frames_20ms: int

    @property
    def measured_period_ms(self) -> float:
        return 1000 * self.duration_s / max(self.features.shape[-2], 1)


@dataclass
class OFAModel:
    """A loaded OFA model directory: the one model type of the library (:func:`load_model` makes it).

    Attributes:
        student: the network (:class:`ofactl.model.OFAStudent`), in eval mode.
        model_dir: where it was loaded from.
        model_sha256: the digest of its weights file (what results and feature files record).
        calibration: its lambda <-> period table, None until ``ofactl calibrate``.
        device: where it runs.
        precision: ``fp32`` or ``bf16`` (resolved, see :mod:`ofactl.precision`): the CNN and the transformer run
            in it; the alpha module, the lambda modification and the CIF firing always run in float32/float64.
        training: the training state saved with the weights (``step``, ``lambda_max``, ``fixed_lambda``,
            ``teacher`` ...; empty for a model saved without one).
    """

    student: OFAStudent
    model_dir: Path
    model_sha256: str
    calibration: "Calibration | None"
    device: torch.device
    precision: str = "fp32"
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_rate(self) -> int:
        """Input samples per second (16 kHz)."""
        return SAMPLE_RATE

    @property
    def hop_samples(self) -> int:
        """Input samples per 20 ms CNN frame."""
        return self.student.hop_samples

    @property
    def lam_max(self) -> float:
        """The largest lambda worth calibrating: the training ``lambda_max``, or 2 (the whole range) for a
        fixed-lambda model or one saved without a training state."""
        if self.training.get("fixed_lambda") is not None:
            return 2.0
        return float(self.training.get("lambda_max") or 2.0)

    def autocast(self):
        """The autocast context of this model's precision on its device."""
        from ofactl.precision import autocast

        return autocast(self.device, self.precision)

    # ------------------------------------------------------------------ choosing lambda

    def lam_for(self, period: FramePeriod | str) -> float:
        """Lambda for a target period from the calibration (error if there is none)."""
        period = OperatingPoint.of(period).period  # parsed and checked (20 ms at least)
        if self.calibration is None:
            raise OfactlError(f"{self.model_dir} is not calibrated, so a frame period has no lambda yet",
                              hint=f"run `ofactl calibrate DATA --model {self.model_dir}` first, or pass --lambda")
        return float(self.calibration.lam_for(period))

    # ------------------------------------------------------------------ batches

    @torch.inference_mode()
    def encode_front(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The lambda-independent 20 ms part of a padded batch: CNN features ``(batch, frame, C)``, frame
        lengths ``(batch,)`` and alpha ``(batch, frame)`` (the input of :meth:`encode_back`)."""
        with self.autocast():
            return self.student.front(audio.to(self.device), lengths.to(self.device))

    @torch.inference_mode()
    def encode_back(
        self,
        front: tuple[Tensor, Tensor, Tensor],
        lengths: Tensor,
        lam: float | Tensor | None = None,
        exact_period_ms: float | None = None,
        layer: LayerSpec = "last",
        uniform_period_ms: float | None = None,
    ) -> list[Encoded]:
        """Features of a batch from its :meth:`encode_front` output, at ``lam`` or an exact period.

        ``lengths`` are the batch's sample counts.  Several lambdas of one batch
        share one front pass (what a sweep over periods does).

        ``uniform_period_ms`` replaces the learned segmentation by fixed-length
        average pooling *inside* the model (the fixed-rate subsampling that CIF
        is compared with): every 20 ms frame gets the weight ``20 / period``, so
        the CIF averages equal runs of frames and the transformer sees
        ``floor(T * 20 / period)`` frames (at least one), the same number a
        calibrated lambda gives on average.
        """
        from ofactl.exact_rate import solve_exact_lambdas
        from ofactl.period import exact_target_frames

        student = self.student
        features, frame_lengths, alpha = front
        lengths = lengths.to(self.device)
        batch = features.shape[0]
        if uniform_period_ms is not None:
            if uniform_period_ms < FRAME_MS:
                raise OfactlError(f"{uniform_period_ms:g}ms is below 20ms, the CNN's frame period")
            # at lambda 1 modify_alpha keeps the weights (only the at-least-one-frame guard acts)
            weight = torch.full_like(alpha, FRAME_MS / uniform_period_ms)
            alpha = weight * (torch.arange(alpha.shape[1], device=alpha.device)[None] < frame_lengths[:, None])
            lam, exact_period_ms = 1.0, None
        if exact_period_ms is not None:
            targets = [exact_target_frames(float(n) / SAMPLE_RATE, exact_period_ms, int(t))
                       for n, t in zip(lengths.tolist(), frame_lengths.tolist())]
            lam_t = solve_exact_lambdas(alpha.float().cpu(), frame_lengths.cpu(), targets).to(self.device)
        elif lam is not None:
            lam_t = lam if isinstance(lam, Tensor) else torch.full((batch,), float(lam))
            lam_t = lam_t.to(self.device)
        else:
            raise ValueError("give lam or exact_period_ms")
        with self.autocast():
            out = student.back(features, frame_lengths, alpha, lam_t, predict=False)
        which = parse_layer(layer, len(out.hidden_states) - 1)
        times = frame_times_s(out.centers, student.hop_samples, student.feature_extractor.receptive_field_samples)
        results = []
        for b in range(batch):
            n = int(out.lengths[b])
            if which == "all":
                feats = torch.stack([h[b, :n] for h in out.hidden_states])
            else:
                feats = out.hidden_states[which][b, :n]
            results.append(Encoded(feats.float().cpu(), times[b, :n].cpu(), float(lam_t[b]),
                                   float(lengths[b]) / SAMPLE_RATE, int(frame_lengths[b])))
        return results

    @torch.inference_mode()
    def encode_batch(
        self,
        audio: Tensor,
        lengths: Tensor,
        lam: float | Tensor | None = None,
        exact_period_ms: float | None = None,
        layer: LayerSpec = "last",
    ) -> list[Encoded]:
        """Features of a padded batch ``audio (batch, samples)``, ``lengths (batch,)``.

        Exactly one of ``lam`` (a float or a ``(batch,)`` tensor) and
        ``exact_period_ms`` (each utterance gets ``round(duration / period)``
        frames) must be given.
        """
        if exact_period_ms is None and lam is None:
            raise ValueError("give lam or exact_period_ms")
        return self.encode_back(self.encode_front(audio, lengths), lengths, lam, exact_period_ms, layer)

    # ------------------------------------------------------------------ long audio

    @torch.inference_mode()
    def encode_long(
        self,
        wave: Tensor,
        lam: float | None = None,
        exact_period_ms: float | None = None,
        layer: LayerSpec = "last",
        chunk_s: float = 30.0,
        context_s: float = 5.0,
        uniform_period_ms: float | None = None,
    ) -> Encoded:
        """Features of one long waveform ``(samples,)`` in bounded memory.

        The CNN runs in chunks of ``chunk_s`` seconds aligned to the 20 ms grid,
        with its first-layer normalisation statistics taken over the whole file
        in a first pass, so the 20 ms features and alpha equal an unchunked run;
        modify_alpha and CIF run on the whole utterance (same frame count); the
        transformer runs on windows of about ``chunk_s`` seconds of output frames
        with ``context_s`` seconds of context on each side (attention beyond
        that is cut: close to, not equal to, an unchunked run).
        """
        from ofactl.exact_rate import solve_exact_lambda
        from ofactl.period import exact_target_frames

        student = self.student
        fe = student.feature_extractor
        hop, field = fe.hop_samples, fe.receptive_field_samples
        wave = wave.to(self.device).float()
        n_samples = wave.shape[0]
        t_total = int(conv_output_lengths(torch.tensor([n_samples]), fe.conv_spec)[0])
        duration_s = n_samples / SAMPLE_RATE
        chunk_frames = max(1, int(chunk_s * SAMPLE_RATE / hop))
        if t_total == 0:
            raise OfactlError(f"audio of {duration_s:.3f} s is shorter than one frame ({field} samples)")

        features, alpha = self.front_long(wave, chunk_s)
        frame_lengths = torch.tensor([t_total], device=self.device)

        if uniform_period_ms is not None:  # fixed-length pooling inside the model (see encode_back)
            alpha = torch.full_like(alpha, FRAME_MS / uniform_period_ms)
            lam, exact_period_ms = 1.0, None
        if exact_period_ms is not None:
            target = exact_target_frames(duration_s, exact_period_ms, t_total)
            lam = solve_exact_lambda(alpha[0].float().cpu(), target)
        if lam is None:
            raise ValueError("give lam or exact_period_ms")
        alpha_mod = modify_alpha(alpha, float(lam), frame_lengths)
        pooled = cif(features, alpha_mod, frame_lengths)
        n_out = int(pooled.lengths[0])
        ratio = n_out / t_total
        window = max(1, int(round(chunk_frames * ratio)))
        context = max(1, int(round(context_s * SAMPLE_RATE / hop * ratio)))
        which = parse_layer(layer, len(student.encoder.transformer.layers))
        pieces: list[list[Tensor]] = []
        for s in range(0, n_out, window):
            a, e = max(0, s - context), min(n_out, s + window + context)
            with self.autocast():
                hidden = run_encoder(student.encoder, pooled.out[:, a:e], torch.tensor([e - a], device=self.device))
            keep = slice(s - a, s - a + min(window, n_out - s))
            pieces.append([h[0, keep] for h in hidden] if which == "all" else [hidden[which][0, keep]])
        layers = [torch.cat([p[i] for p in pieces]) for i in range(len(pieces[0]))] if pieces else []
        out = torch.stack(layers) if which == "all" else (layers[0] if layers else features.new_zeros(0, 0))
        times = frame_times_s(pooled.centers[0], hop, field)
        return Encoded(out.float().cpu(), times.cpu(), float(lam), duration_s, t_total)

    @torch.inference_mode()
    def front_long(self, wave: Tensor, chunk_s: float = 30.0) -> tuple[Tensor, Tensor]:
        """CNN features ``(1, T, C)`` and alpha ``(1, T)`` of a long waveform, in chunks, equal to one pass."""
        fe = self.student.feature_extractor
        hop, field = fe.hop_samples, fe.receptive_field_samples
        wave = wave.to(self.device).float()
        t_total = int(conv_output_lengths(torch.tensor([wave.shape[0]]), fe.conv_spec)[0])
        if t_total == 0:
            raise OfactlError(f"audio of {wave.shape[0] / SAMPLE_RATE:.3f} s is shorter than one frame ({field} samples)")
        chunk_frames = max(1, int(chunk_s * SAMPLE_RATE / hop))
        stats = self._first_layer_stats(wave, chunk_frames)
        feats = []
        for f0 in range(0, t_total, chunk_frames):
            f1 = min(t_total, f0 + chunk_frames)
            with self.autocast():
                x, _ = fe(wave[f0 * hop : (f1 - 1) * hop + field][None], None, first_stats=stats)
            feats.append(x[0])
        features = torch.cat(feats)[None]
        return features, self._alpha_windows(features, chunk_frames)

    def _first_layer_stats(self, wave: Tensor, chunk_frames: int) -> tuple[Tensor, Tensor] | None:
        """Whole-file mean/var of the first conv layer's output (for its GroupNorm), streamed in chunks."""
        fe = self.student.feature_extractor
        block = fe.conv_layers[0]
        if not isinstance(block.layer_norm, MaskedGroupNorm):
            return None
        kernel, stride = block.kernel_size, block.stride
        n0 = (wave.shape[0] - kernel) // stride + 1
        step = max(1, chunk_frames * fe.hop_samples // stride)
        total = torch.zeros(block.conv.out_channels, dtype=torch.float64, device=wave.device)
        total_sq = torch.zeros_like(total)
        for j0 in range(0, n0, step):
            j1 = min(n0, j0 + step)
            with self.autocast():
                y = conv1d_module(block.conv, wave[j0 * stride : (j1 - 1) * stride + kernel][None, None]).double()[0]
            total += y.sum(-1)
            total_sq += (y * y).sum(-1)
        mean = total / n0
        var = (total_sq / n0 - mean * mean).clamp(min=0.0)
        return mean[None].float(), var[None].float()

    def _alpha_windows(self, features: Tensor, window: int) -> Tensor:
        """The alpha module over windows with enough context that the result equals one pass."""
        module = self.student.alpha_module
        context = module.conv.kernel_size[0] // 2
        t_total = features.shape[1]
        parts = []
        for s in range(0, t_total, window):
            a, e = max(0, s - context), min(t_total, s + window + context)
            alpha = module(features[:, a:e].float(), torch.tensor([e - a], device=features.device))  # fp32 always
            parts.append(alpha[:, s - a : s - a + min(window, t_total - s)])
        return torch.cat(parts, dim=1)

    # ------------------------------------------------------------------ one waveform

    def extract(
        self,
        waveform: Tensor,
        sample_rate: int = SAMPLE_RATE,
        period: FramePeriod | str | None = None,
        lam: float | None = None,
        exact: bool = False,
        layer: LayerSpec = "last",
        chunk_s: float = 60.0,
    ) -> Encoded:
        """Features of one waveform (``(samples,)`` or ``(channels, samples)``) at a period or lambda.

        ``period`` uses the calibration; ``lam`` sets lambda directly; with
        ``exact=True`` the utterance gets ``round(duration / period)`` frames.
        Audio longer than ``chunk_s`` seconds goes through :meth:`encode_long`.
        """
        from ofactl.data.audio import resample

        point = OperatingPoint.of(period, lam, exact)
        wave = torch.as_tensor(waveform, dtype=torch.float32)
        if wave.ndim == 2:
            wave = wave.mean(0)
        if wave.ndim != 1:
            raise OfactlError(f"expected a waveform of shape (samples,) or (channels, samples), found {tuple(wave.shape)}")
        if sample_rate != SAMPLE_RATE:
            wave = resample(wave, sample_rate, SAMPLE_RATE)
        exact_ms = point.period.ms if exact else None
        lam = point.resolve(self)
        if wave.shape[0] > chunk_s * SAMPLE_RATE:
            return self.encode_long(wave, lam, exact_ms, layer, chunk_s=min(chunk_s, 30.0))
        lengths = torch.tensor([wave.shape[0]])
        return self.encode_batch(wave[None], lengths, lam, exact_ms, layer)[0]


def require_model(model, where: str) -> OFAModel:
    """``model`` when it is a loaded :class:`OFAModel`; anything else (a path, None) is a programming error.

    Library functions take loaded models only; the command line and :func:`load_model` are where a path (or the
    workspace default) becomes a model.
    """
    if isinstance(model, OFAModel):
        return model
    raise TypeError(f"{where} takes a loaded model (ofactl.load_model(path)), found {type(model).__name__}")


def load_model(path: str | Path | None = None, device: str | torch.device | None = "cpu",
               precision: str = "auto") -> OFAModel:
    """Load an OFA model directory (``path``; None resolves ``OFACTL_MODEL`` / ``ofactl.toml``).

    ``precision``: ``auto`` (the default, as on the command line: bf16 where it is faster, see
    :mod:`ofactl.precision`), ``fp32`` (the numerical reference) or ``bf16``.
    """
    from ofactl.precision import resolve_precision

    from ofactl.calibrate import Calibration
    from ofactl.checkpoint import load_student, model_sha256
    from ofactl.distributed import resolve_device
    from ofactl.workspace import resolve_model

    model_dir = resolve_model(str(path) if path is not None else None)
    dev = resolve_device(str(device) if device is not None else None)
    student = load_student(model_dir, device=dev).eval()
    sha = model_sha256(model_dir)
    calibration = None
    if (model_dir / "calibration.json").exists():
        calibration = Calibration.load(model_dir)
        calibration.check(sha)
    training = dict(student.checkpoint.training or {})  # load_student attaches the checkpoint's metadata
    return OFAModel(student, model_dir, sha, calibration, dev, resolve_precision(precision, dev, student.config.embed_dim),
                    training)


__all__ = ["Encoded", "OFAModel", "frame_times_s", "load_model", "parse_layer", "require_model"]
