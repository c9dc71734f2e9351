"""ofactl: once-for-all sequence compression of self-supervised speech models.

Importing this package is cheap: torch is only imported by the submodules that
need it (``ofactl.cif``, ``ofactl.model``, ...), so ``ofactl --help`` is instant.
"""

__version__ = "0.2.0.dev0"


def load_model(path=None, device="cpu", precision="auto"):
    """Load an OFA model directory; see :func:`ofactl.inference.load_model`.

    ``model.extract(waveform, sample_rate, period="90ms")`` (or ``lam=...``)
    returns features and frame times.  ``precision`` is ``"auto"`` (bf16 where
    it is faster: a GPU with bf16, or a CPU with AMX/AVX512-BF16 for a wide
    model), ``"fp32"`` or ``"bf16"``; in bf16 the CNN and transformer run in
    bfloat16 while the frame counts are still decided in float32.
    """
    from ofactl.inference import load_model as _load

    return _load(path, device=device, precision=precision)


__all__ = ["__version__", "load_model"]
