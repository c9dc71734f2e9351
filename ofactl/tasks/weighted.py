"""SUPERB's weighted sum of layers: a probe upstream that learns one weight per layer of the upstream model.

SUPERB probes the softmax-weighted sum of all the upstream model's hidden
states, the weights learned with the probe (s3prl's ``Featurizer``).
``--layer weighted`` asks for it: the features of every layer are extracted
once (``layer="all"``), each stored utterance is read as ``(frames, layers x
dim)``, standardised per layer and dimension with training-set statistics
(where s3prl layer-normalises each frame), and :class:`WeightedLayers` sums
the layers with ``softmax(w)`` before the head sees ``(frames, dim)``.  The
weights start equal, train with the head (same optimiser settings), and the
dev-best weights are kept with the dev-best head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: the ``--layer`` value that asks for the weighted sum
WEIGHTED = "weighted"


class WeightedLayers:
    """An upstream: ``inputs -> (softmax(w)-weighted sum over layers (B, T, dim), lengths)``.

    ``standardize`` turns the stored ``(frames, layers x dim)`` inputs into a padded, standardised batch.
    """

    def __init__(self, standardize, n_layers: int, dim: int):
        self.standardize = standardize
        self.n_layers, self.dim = int(n_layers), int(dim)
        self.weights = torch.zeros(self.n_layers, requires_grad=True)

    def parameters(self) -> list[Tensor]:
        return [self.weights]

    def layer_weights(self) -> list[float]:
        """The current softmax weights, one per layer (0 = the transformer's input)."""
        return torch.softmax(self.weights.detach(), 0).tolist()

    def __call__(self, inputs: list[Any]) -> tuple[Tensor, Tensor]:
        x, lengths = self.standardize(inputs)
        stacked = x.view(x.shape[0], x.shape[1], self.n_layers, self.dim)
        return torch.einsum("btld,l->btd", stacked, torch.softmax(self.weights, 0)), lengths


def weights_note(weights: list[float]) -> str:
    """``layer weights 0.21/0.33/0.46`` for a results row's note."""
    return "layer weights " + "/".join(f"{w:.2f}" for w in weights)
