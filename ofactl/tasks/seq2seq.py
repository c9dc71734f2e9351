"""SUPERB's ST probe: a small transformer encoder-decoder over frozen features, and its beam search.

The shapes follow fairseq's ``s2t_transformer`` as s3prl's ST recipe
configures it (``downstream/speech_translation/config.yaml``): a convolutional
subsampler (two 1-D convolutions, kernel 5, stride 2, each followed by a GLU,
1024 channels inside), 512-dimensional pre-norm transformer layers with 8
heads and 2048-wide ReLU feed-forward blocks, 3 encoder and 3 decoder layers,
dropout 0.1, sinusoidal positions, embeddings scaled by sqrt(512), a final
LayerNorm on each side, at most 6000 source frames.  One change: the
subsampler zeroes the frames past each utterance's end after every
convolution, so that an utterance gives the same output alone and in a
padded batch.  The subsampler divides
the frame rate by four, so that one output frame covers 80 ms of 20 ms
features; an utterance of a single frame still gives one encoder frame, so a
sequence-to-sequence probe never runs out of frames the way a CTC probe does.

:func:`beam_search` is batched (every sentence's beams decode as one batch),
decodes incrementally (each step runs one position through the decoder, see
:meth:`Seq2SeqHead.step`), and scores a finished hypothesis by its summed log-probability divided by its
length, end of sentence included (fairseq's default length penalty of 1); a
sentence stops when it has ``beam`` finished hypotheses, or at ``max_len``
tokens, where the end of sentence is forced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ofactl.tasks.subwords import BOS, EOS, PAD


@dataclass(frozen=True)
class Seq2SeqConfig:
    """The probe's shapes (defaults: SUPERB's ST probe)."""

    d_model: int = 512
    ffn: int = 2048
    heads: int = 8
    encoder_layers: int = 3
    decoder_layers: int = 3
    conv_channels: int = 1024
    conv_kernels: tuple[int, ...] = (5, 5)
    dropout: float = 0.1
    max_source_positions: int = 6000
    max_target_positions: int = 1024


def subsampled_lengths(lengths: Tensor, n_convs: int) -> Tensor:
    """Frames after ``n_convs`` stride-2 convolutions with ``padding = kernel // 2`` (odd kernels)."""
    out = lengths.clone()
    for _ in range(n_convs):
        out = torch.div(out - 1, 2, rounding_mode="floor") + 1
    return out.clamp(min=1)


class Conv1dSubsampler(nn.Module):
    """Stride-2 convolutions with GLU: ``(B, T, in) -> (B, ceil(T / 2**k), out)``."""

    def __init__(self, in_dim: int, mid: int, out: int, kernels: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(in_dim if i == 0 else mid // 2, (mid if i < len(kernels) - 1 else out * 2), k, stride=2,
                      padding=k // 2)
            for i, k in enumerate(kernels))

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        h = x.transpose(1, 2)
        for i, conv in enumerate(self.convs):
            h = nn.functional.glu(conv(h), dim=1)
            # zero the frames past each utterance's end, so that the next convolution sees the same zeros as
            # it would without padding (fairseq does not, and its outputs depend on the batch)
            valid = subsampled_lengths(lengths, i + 1).to(h.device)
            h = h * (torch.arange(h.shape[-1], device=h.device)[None, :] < valid[:, None]).unsqueeze(1).to(h.dtype)
        return h.transpose(1, 2), subsampled_lengths(lengths, len(self.convs))


def sinusoids(n: int, dim: int, device=None) -> Tensor:
    """fairseq's sinusoidal positions: sines in the first half of the dimensions, cosines in the second."""
    half = dim // 2
    scale = math.log(10000) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=device) * -scale)
    angles = torch.arange(n, dtype=torch.float32, device=device)[:, None] * freqs[None, :]
    out = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(out, (0, dim - 2 * half))


class Seq2SeqHead(nn.Module):
    """Encoder-decoder over ``(B, T, in_dim)`` features and target prefixes; see the module docstring."""

    def __init__(self, in_dim: int, n_tokens: int, config: Seq2SeqConfig = Seq2SeqConfig()):
        super().__init__()
        c = self.config = config
        self.n_tokens = n_tokens
        self.subsample = Conv1dSubsampler(in_dim, c.conv_channels, c.d_model, c.conv_kernels)
        self.scale = math.sqrt(c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        enc = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ffn, c.dropout, activation="relu", batch_first=True,
                                         norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, c.encoder_layers, norm=nn.LayerNorm(c.d_model),
                                             enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(c.d_model, c.heads, c.ffn, c.dropout, activation="relu", batch_first=True,
                                         norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, c.decoder_layers, norm=nn.LayerNorm(c.d_model))
        self.embed = nn.Embedding(n_tokens, c.d_model, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=c.d_model ** -0.5)
        with torch.no_grad():
            self.embed.weight[PAD].zero_()
        self.out = nn.Linear(c.d_model, n_tokens, bias=False)
        nn.init.normal_(self.out.weight, std=c.d_model ** -0.5)

    def encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(memory (B, S, d), padding mask (B, S), True = padding)``."""
        limit = self.config.max_source_positions
        x, lengths = x[:, :limit], lengths.clamp(max=limit)
        h, out_lengths = self.subsample(x, lengths)
        pad = torch.arange(h.shape[1], device=h.device)[None, :] >= out_lengths.to(h.device)[:, None]
        h = self.dropout(h * self.scale + sinusoids(h.shape[1], h.shape[-1], h.device).to(h.dtype))
        return self.encoder(h, src_key_padding_mask=pad), pad

    def decode(self, prefix: Tensor, memory: Tensor, memory_pad: Tensor) -> Tensor:
        """Next-token logits ``(B, U, n_tokens)`` for every position of ``prefix`` (B, U)."""
        n = prefix.shape[1]
        y = self.embed(prefix) * self.scale + sinusoids(n, memory.shape[-1], prefix.device).to(memory.dtype)
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool, device=prefix.device), diagonal=1)
        h = self.decoder(self.dropout(y), memory, tgt_mask=causal, tgt_key_padding_mask=prefix == PAD,
                         memory_key_padding_mask=memory_pad, tgt_is_causal=True)
        return self.out(h)

    def forward(self, x: Tensor, lengths: Tensor, prefix: Tensor) -> Tensor:
        memory, pad = self.encode(x, lengths)
        return self.decode(prefix, memory, pad)

    def start(self, memory: Tensor, memory_pad: Tensor) -> "DecoderState":
        """An empty incremental decoding state over ``memory`` (for :meth:`step`): each decoder layer's keys
        and values of the memory, projected once."""
        memory_kv = [_project_kv(layer.multihead_attn, memory) for layer in self.decoder.layers]
        keep = (~memory_pad)[:, None, None, :]  # (B, 1, 1, S): True where a memory frame may be attended
        return DecoderState(memory_kv, keep, [None] * len(self.decoder.layers), 0)

    def step(self, state: "DecoderState", tokens: Tensor) -> Tensor:
        """Next-token logits ``(B, n_tokens)`` after feeding ``tokens`` (B,) at the state's position.

        The same numbers as the last position of :meth:`decode` over the whole prefix (tested), at the
        cost of one position: the memory's keys and values are projected once (:meth:`start`), and each
        layer keeps the keys and values of the earlier positions (a position attends only to itself and
        the past).
        """
        pos = state.position
        h = self.embed(tokens)[:, None] * self.scale
        h = h + sinusoids(pos + 1, h.shape[-1], h.device)[pos].to(h.dtype)
        h = self.dropout(h)
        for i, layer in enumerate(self.decoder.layers):
            a = layer.norm1(h)
            k, v = _project_kv(layer.self_attn, a)
            if state.self_kv[i] is not None:
                k, v = torch.cat([state.self_kv[i][0], k], dim=2), torch.cat([state.self_kv[i][1], v], dim=2)
            state.self_kv[i] = (k, v)
            h = h + layer.dropout1(_attend(layer.self_attn, a, k, v, None))
            b = layer.norm2(h)
            mk, mv = state.memory_kv[i]
            h = h + layer.dropout2(_attend(layer.multihead_attn, b, mk, mv, state.memory_keep))
            c = layer.norm3(h)
            h = h + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(c)))))
        state.position = pos + 1
        return self.out(self.decoder.norm(h))[:, 0]


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """``(B, T, d) -> (B, heads, T, d / heads)``."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _project_kv(attn: nn.MultiheadAttention, x: Tensor) -> tuple[Tensor, Tensor]:
    """The keys and values ``attn`` computes from ``x`` (B, T, d), split into heads."""
    d = attn.embed_dim
    w, b = attn.in_proj_weight, attn.in_proj_bias
    k = nn.functional.linear(x, w[d: 2 * d], None if b is None else b[d: 2 * d])
    v = nn.functional.linear(x, w[2 * d:], None if b is None else b[2 * d:])
    return _split_heads(k, attn.num_heads), _split_heads(v, attn.num_heads)


def _attend(attn: nn.MultiheadAttention, query: Tensor, k: Tensor, v: Tensor, keep: Tensor | None) -> Tensor:
    """``attn`` for one query position ``(B, 1, d)`` over projected keys and values (what its forward does)."""
    d = attn.embed_dim
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = _split_heads(nn.functional.linear(query, w[:d], None if b is None else b[:d]), attn.num_heads)
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                                     dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(query.shape[0], 1, d))


@dataclass
class DecoderState:
    """Incremental decoding state: per decoder layer the memory's keys and values and those of the positions
    decoded so far."""

    memory_kv: list
    memory_keep: Tensor
    self_kv: list
    position: int

    def reorder(self, rows: Tensor, memory: bool = True) -> None:
        """Keep the hypotheses ``rows`` (beam search moves its beams).  ``memory=False`` leaves the memory's
        keys and values as they are: right when every row moves within its own utterance's block of rows,
        whose memory rows are equal (as in :func:`beam_search`)."""
        self.self_kv = [None if kv is None else (kv[0][rows], kv[1][rows]) for kv in self.self_kv]
        if memory:
            self.memory_kv = [(k[rows], v[rows]) for k, v in self.memory_kv]
            self.memory_keep = self.memory_keep[rows]


def teacher_forcing(targets: list[list[int]], device=None) -> tuple[Tensor, Tensor]:
    """``(prefix, gold)``: BOS + target and target + EOS, padded with :data:`PAD` to the longest."""
    n = max(len(t) for t in targets) + 1
    prefix = torch.full((len(targets), n), PAD, dtype=torch.long)
    gold = torch.full((len(targets), n), PAD, dtype=torch.long)
    for i, t in enumerate(targets):
        prefix[i, 0] = BOS
        prefix[i, 1: len(t) + 1] = torch.as_tensor(list(t), dtype=torch.long)
        gold[i, : len(t)] = torch.as_tensor(list(t), dtype=torch.long)
        gold[i, len(t)] = EOS
    return prefix.to(device), gold.to(device)


@torch.no_grad()
def beam_search(head: Seq2SeqHead, x: Tensor, lengths: Tensor, beam: int, max_len: int) -> list[list[int]]:
    """The best hypothesis of each utterance (token ids, without BOS/EOS); see the module docstring."""
    memory, pad = head.encode(x, lengths)
    batch, device = memory.shape[0], memory.device
    k = max(1, beam)
    state = head.start(memory.repeat_interleave(k, dim=0), pad.repeat_interleave(k, dim=0))
    seqs = torch.full((batch * k, 1), BOS, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")  # at step 0 only one beam is live, so the k first candidates differ
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(max_len + 1):
        logp = head.step(state, seqs[:, -1]).float().log_softmax(-1)  # (B*k, V)
        logp[:, PAD] = logp[:, BOS] = float("-inf")
        if step == max_len:  # force the end
            keep = logp[:, EOS].clone()
            logp.fill_(float("-inf"))
            logp[:, EOS] = keep
        cand = (scores.view(-1, 1) + logp).view(batch, -1)  # (B, k*V)
        top, idx = cand.topk(min(2 * k, cand.shape[1]), dim=1)
        vocab = logp.shape[1]
        new_rows, new_tokens, new_scores = [], [], []
        for b in range(batch):
            rows, toks, scs = [], [], []
            for s, j in zip(top[b].tolist(), idx[b].tolist()):
                if s == float("-inf"):
                    break
                row, tok = b * k + j // vocab, j % vocab
                if tok == EOS:
                    if not done[b] and len(finished[b]) < k:
                        hyp = seqs[row, 1:].tolist()
                        finished[b].append((s / (len(hyp) + 1), hyp))
                elif len(rows) < k:
                    rows.append(row)
                    toks.append(tok)
                    scs.append(s)
                if len(rows) == k:
                    break
            if len(finished[b]) >= k or not rows:
                done[b] = True
            while len(rows) < k:  # dead beams: padded, never chosen again
                rows.append(b * k)
                toks.append(EOS)
                scs.append(float("-inf"))
            new_rows += rows
            new_tokens += toks
            new_scores += scs
        if all(done):
            break
        rows_t = torch.tensor(new_rows, device=device)
        seqs = torch.cat([seqs[rows_t], torch.tensor(new_tokens, device=device)[:, None]], dim=1)
        state.reorder(rows_t, memory=False)  # beams move within their utterance's block
        scores = torch.tensor(new_scores, device=device).view(batch, k)
        for b in range(batch):
            if done[b]:
                scores[b] = float("-inf")
    out = []
    for b in range(batch):
        best = max(finished[b], key=lambda f: f[0]) if finished[b] else (0.0, [])
        out.append(best[1])
    return out
