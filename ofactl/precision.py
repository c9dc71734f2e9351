"""Numeric precision: ``auto``, ``fp32`` or ``bf16``, resolved once per command.

``bf16`` runs the CNN and the transformer under bfloat16 autocast (matrix
products in bf16 with float32 accumulation); the alpha module, the lambda
modification and the CIF firing decisions always run in float32/float64 (see
:meth:`ofactl.model.OFAStudent.front`), so frame counts follow fp32.

``auto`` picks bf16 where it is faster: on a CUDA GPU with bf16 support, and
on a CPU with AMX (``amx_bf16``) or AVX512-BF16 (``avx512_bf16``) on x86, or
the ``bf16`` extension on Arm, for models at least :data:`MIN_CPU_BF16_WIDTH`
wide (narrower ones, such as the ``tiny`` demo models, run several times
slower in bf16 on a CPU: the bf16 kernels pay off only on wide matrices).
Elsewhere it is fp32.  Asking for ``bf16`` explicitly on a device without it
is an error, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from ofactl.errors import OfactlError

__all__ = ["PRECISIONS", "autocast", "cpu_bf16_flags", "device_has_fast_bf16", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")

#: /proc/cpuinfo flags that mean fast bf16 arithmetic (x86: AMX tiles, AVX512-BF16; Arm: the BF16 extension).
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")

#: ``auto`` uses bf16 on a CPU only for models at least this wide (channels / embedding dimension).  Measured on
#: a 2-core AVX512-BF16 CPU: the ``tiny`` preset (32-64 wide) extracted at 0.2x the fp32 speed in bf16, the
#: ``distilhubert`` preset (512-768) faster than fp32 (``benchmarks/bench_precision.py``).
MIN_CPU_BF16_WIDTH = 256


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The fast-bf16 flags this CPU reports (empty where ``/proc/cpuinfo`` is absent, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return frozenset(flags & set(FAST_BF16_FLAGS))


def device_has_fast_bf16(device) -> bool:
    """Whether ``device`` (a ``torch.device``) computes bf16 fast (see the module docstring)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_precision(precision: str, device, width: int | None = None) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` in :data:`PRECISIONS` on ``device``.

    ``width``: the model's width (its embedding dimension), which ``auto`` weighs on a CPU (see the module
    docstring); None: not known, not weighed.

    Raises:
        OfactlError: an unknown name, or ``bf16`` asked for on a device without bf16 support.
    """
    import torch

    if precision not in PRECISIONS:
        raise OfactlError(f"--precision must be auto, fp32 or bf16, found {precision!r}")
    device = torch.device(device)
    if precision == "fp32":
        return "fp32"
    fast = device_has_fast_bf16(device)
    if precision == "auto":
        narrow = device.type == "cpu" and width is not None and width < MIN_CPU_BF16_WIDTH
        return "bf16" if fast and not narrow else "fp32"
    if not fast:
        what = ("this GPU has no bf16 support" if device.type == "cuda" else
                "this CPU has neither AMX nor AVX512-BF16 (nor Arm BF16), so bf16 would be emulated and slow"
                if device.type == "cpu" else f"device {device.type} has no bf16 support in ofactl")
        raise OfactlError(f"--precision bf16: {what}", hint="use --precision fp32 (or auto, which picks it here)")
    return "bf16"


def autocast(device, precision: str):
    """The autocast context of a resolved ``precision`` (``"fp32"``: autocast off) on ``device``."""
    import torch

    device = torch.device(device)
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext()
    raise ValueError(f"resolve the precision first: expected fp32 or bf16, found {precision!r}")
