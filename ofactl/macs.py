"""MACs of a student's forward pass, by component: counted by torch's FLOP counter, attributed to parts.

Every multiply-accumulate of a forward pass belongs to one of :data:`COMPONENTS`
(CNN, alpha module, CIF, projection + positional conv, transformer layers,
prediction heads).  :func:`count_macs` counts them for given output frame
counts; :func:`inference_macs_per_second` is what probe rows carry in their
``macs_per_second`` column (cached per model and frame count).  ``ofactl
profile`` (:mod:`ofactl.profile`) reports them with throughput.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ofactl.period import SAMPLE_RATE, exact_target_frames

__all__ = ["COMPONENTS", "COMPONENT_LABELS", "INFERENCE_COMPONENTS", "count_macs", "inference_macs_per_second"]

#: Components in pipeline order; every MAC of a forward pass belongs to one of them.
COMPONENTS = ("cnn", "alpha", "cif", "projection", "layers", "heads")
COMPONENT_LABELS = {
    "cnn": "CNN",
    "alpha": "alpha module",
    "cif": "CIF",
    "projection": "projection + pos. conv",
    "layers": "transformer layers",
    "heads": "prediction heads",
}
#: Components of an inference forward pass (the heads run in pretraining only).
INFERENCE_COMPONENTS = COMPONENTS[:-1]

# --------------------------------------------------------------------------- counting


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``softmax(QK^T) V`` (the counter's formula for its GPU attention kernels)."""
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v


def _counter():
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None:
        mapping[cpu_attention] = _cpu_attention_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _component_modules(student: nn.Module) -> dict[str, list[nn.Module]]:
    encoder = student.encoder
    return {
        "cnn": [student.feature_extractor],
        "alpha": [student.alpha_module],
        "projection": [encoder.feature_projection, encoder.transformer.pos_conv_embed],
        "layers": list(encoder.transformer.layers),
        "heads": [student.heads],
    }


class _Attribution:
    """Module hooks that attribute the counter's running total to components."""

    def __init__(self, student: nn.Module, counter):
        self.counter = counter
        self.flops: dict[str, int] = {c: 0 for c in COMPONENTS}
        self._start: dict[int, int] = {}
        self._handles = []
        for name, modules in _component_modules(student).items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(self._pre))
                self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, module, args):
        self._start[id(module)] = self.counter.get_total_flops()

    def _post(self, name):
        def hook(module, args, output):
            self.flops[name] += self.counter.get_total_flops() - self._start.pop(id(module))
        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def count_macs(student: nn.Module, audio: Tensor, n_frames: Sequence[int]) -> tuple[dict[str, float], list[dict[str, float]], list[float], int]:
    """MACs of one utterance ``audio (1, samples)`` at each output frame count in ``n_frames``.

    The CNN and alpha module run once (they do not depend on lambda); the
    compressed part runs once per frame count, heads included.

    Returns:
        ``(front, backs, lams, T)``: the MACs of ``cnn`` and ``alpha``; per frame
        count the MACs of ``cif``, ``projection``, ``layers`` and ``heads``; the
        exact lambda of each frame count; the CNN frame count T.

    Raises:
        RuntimeError: MACs the counter saw outside every component (a model
            this function does not know how to split).
    """
    from ofactl.exact_rate import solve_exact_lambda

    # FlopCounterMode's module tracker fails on parametrized modules (weight
    # norm in the positional conv) under inference_mode: count under no_grad.
    with torch.no_grad():
        counter = _counter()
        hooks = _Attribution(student, counter)
        try:
            with counter:
                features, frame_lengths, alpha = student.front(audio)
            front = {"cnn": hooks.flops["cnn"] / 2, "alpha": hooks.flops["alpha"] / 2}
            unattributed = counter.get_total_flops() - hooks.flops["cnn"] - hooks.flops["alpha"]
            t_frames = int(frame_lengths[0])
            channels = features.shape[-1]
            backs, lams = [], []
            for n in n_frames:
                lam = solve_exact_lambda(alpha[0, :t_frames].float().cpu(), int(n))
                for c in ("projection", "layers", "heads"):
                    hooks.flops[c] = 0
                counter = _counter()
                hooks.counter = counter
                with counter:
                    out = student.back(features, frame_lengths, alpha, lam, predict=True)
                if int(out.lengths[0]) != int(n):
                    raise RuntimeError(f"lambda {lam} gave {int(out.lengths[0])} frames, expected {n}")
                unattributed += counter.get_total_flops() - sum(hooks.flops[c] for c in ("projection", "layers", "heads"))
                back = {c: hooks.flops[c] / 2 for c in ("projection", "layers", "heads")}
                back["cif"] = 2.0 * t_frames * (channels + 1)
                backs.append(back)
                lams.append(lam)
        finally:
            hooks.close()
    if unattributed:
        raise RuntimeError(f"{unattributed / 2:.4g} MACs outside every component: the model has a part count_macs does not know")
    return front, backs, lams, t_frames


_MACS_CACHE: dict[tuple[int, int, float], float] = {}


def inference_macs_per_second(student: nn.Module, period_ms: float, seconds: float = 10.0) -> float:
    """Inference MACs per second of audio (CNN, alpha module, CIF, projection, layers; no heads) at ``period_ms``.

    Counted with :func:`count_macs` on ``seconds`` of noise compressed to
    ``round(seconds / period)`` output frames (the MACs depend on the frame
    count, not on the audio); cached per model object, frame count and length,
    so a sweep pays for it once per period.
    """
    samples = int(seconds * SAMPLE_RATE)
    t_frames = int(student.feature_extractor.output_lengths(torch.tensor([samples]))[0])
    n_frames = max(1, exact_target_frames(seconds, max(float(period_ms), 1e-9), t_frames))
    key = (id(student), n_frames, seconds)
    if key not in _MACS_CACHE:
        generator = torch.Generator().manual_seed(0)
        audio = torch.randn(1, samples, generator=generator) * 0.1
        device = next(student.parameters()).device
        front, backs, _, _ = count_macs(student, audio.to(device), [n_frames])
        back = backs[0]
        total = front["cnn"] + front["alpha"] + back["cif"] + back["projection"] + back["layers"]
        _MACS_CACHE[key] = total / seconds
    return _MACS_CACHE[key]
