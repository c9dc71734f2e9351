"""SUPERB's probe heads for frame features: mean-pooled linear (utterance tasks), linear CTC and BiLSTM CTC.

Each takes ``(x (B, T, D), lengths (B,))`` and returns logits; index 0 of a
CTC head's output is the blank.  The ``st`` task's encoder-decoder lives in
:mod:`ofactl.tasks.seq2seq`.
"""

from __future__ import annotations

from torch import Tensor, nn

from ofactl.layers import valid_mask

class MeanPoolHead(nn.Module):
    """SUPERB's utterance-level probe: linear projection -> mean over valid frames -> linear."""

    def __init__(self, in_dim: int, n_out: int, proj_dim: int = 256):
        super().__init__()
        self.proj = nn.Linear(in_dim, proj_dim)
        self.out = nn.Linear(proj_dim, n_out)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        h = self.proj(x)
        mask = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(h.dtype)
        pooled = (h * mask).sum(1) / lengths.clamp(min=1).unsqueeze(-1).to(h.dtype)
        return self.out(pooled)


class LinearCTCHead(nn.Module):
    """SUPERB's PR probe: one linear layer over frames; index 0 is the CTC blank."""

    def __init__(self, in_dim: int, n_tokens: int):
        super().__init__()
        self.out = nn.Linear(in_dim, n_tokens + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self.out(x)


class BiLSTMCTCHead(nn.Module):
    """SUPERB's ASR probe: a 2-layer bidirectional LSTM, then a linear layer; index 0 is the blank."""

    def __init__(self, in_dim: int, n_tokens: int, hidden: int = 256, layers: int = 2, dropout: float = 0.2):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, bidirectional=True, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(2 * hidden, n_tokens + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.out(out)
