"""An ofactl model as a lhotse feature extractor: ``CutSet.compute_and_store_features`` at a chosen period.

::

    from ofactl.lhotse_extractor import OfactlExtractor, OfactlExtractorConfig
    extractor = OfactlExtractor(OfactlExtractorConfig(model="exp/ofa-lmax2", period_ms=90.0))
    cuts = cuts.compute_and_store_features(extractor, storage_path="feats", num_jobs=1)

It runs in exact-rate mode: each cut gets ``round(duration / period)`` frames,
so that lhotse's ``frame_shift`` is the period (lhotse assumes one frame shift
per feature matrix).  Importing this module registers the extractor with
lhotse under the name ``ofactl``, so manifests that name it load back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    from lhotse.features.base import FeatureExtractor, register_extractor
except ImportError as err:  # pragma: no cover - exercised where lhotse is absent
    from ofactl.errors import OfactlError

    raise OfactlError("the lhotse feature extractor needs the lhotse package",
                      hint="pip install 'ofactl[lhotse]' (or pip install lhotse)") from err

__all__ = ["OfactlExtractor", "OfactlExtractorConfig"]

_MODELS: dict[tuple[str, str, str], Any] = {}  # one loaded model per (directory, device, precision) in a process


@dataclass
class OfactlExtractorConfig:
    """What the extractor runs: the model directory, the period, the layer, where and in which precision."""

    model: str = ""
    period_ms: float = 90.0
    layer: str = "last"
    device: str = "cpu"
    precision: str = "fp32"


@register_extractor
class OfactlExtractor(FeatureExtractor):
    """``extract(samples, sampling_rate)`` -> ``(round(duration / period), dim)`` float32 features."""

    name = "ofactl"
    config_type = OfactlExtractorConfig

    def _model(self):
        from ofactl.inference import load_model

        c = self.config
        key = (c.model, c.device, c.precision)
        if key not in _MODELS:
            _MODELS[key] = load_model(c.model, device=c.device, precision=c.precision)
        return _MODELS[key]

    @property
    def frame_shift(self) -> float:
        return self.config.period_ms / 1000.0

    def feature_dim(self, sampling_rate: int) -> int:
        return int(self._model().student.config.embed_dim)

    def extract(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        import torch

        from ofactl.inference import parse_layer
        from ofactl.period import FramePeriod

        model = self._model()
        layer = parse_layer(self.config.layer, len(model.student.encoder.transformer.layers))
        if layer == "all":
            from ofactl.errors import OfactlError

            raise OfactlError("a lhotse feature matrix is (frames, dim): choose one layer, not all")
        wave = torch.as_tensor(np.asarray(samples, dtype=np.float32))
        encoded = model.extract(wave, sampling_rate, period=FramePeriod(float(self.config.period_ms)), exact=True,
                                layer=layer)
        return encoded.features.float().numpy()
