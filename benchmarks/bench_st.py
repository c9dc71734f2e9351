"""ST probe benchmark: incremental beam-search decoding against recomputing the whole prefix, side by side.

The ``st`` task scores dev after every epoch with a beam search of 20 beams,
so decoding dominates a probe run.  For SUPERB's probe shapes (fairseq's
``s2t_transformer``: 512 wide, 3 + 3 layers) over 10 s utterances at 20 ms,
``batch x 20`` hypotheses decode ``steps`` positions two ways, interleaved
round by round (medians of ``repeat`` rounds, the speed-up with a 95%
bootstrap interval):

* full: the decoder over the whole prefix at every step (what a plain
  ``nn.TransformerDecoder`` call does), keeping the last position;
* incremental: :meth:`ofactl.tasks.seq2seq.Seq2SeqHead.step`, one position per
  step with each layer's earlier inputs cached (what the beam search uses).

Reported: the speed-up (goal >= 3x at the default 60 steps), the largest
difference between the two logits (they must agree), and the time of one
training step (batch 16, label-smoothed cross entropy, backward, Adam).

Run: python benchmarks/bench_st.py [--quick] [--threads N]
(or all benchmarks in one table: python benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import platform
import statistics

import torch

from ofactl.tasks.seq2seq import Seq2SeqConfig, Seq2SeqHead, teacher_forcing

from common import (  # benchmarks/common.py (the script's directory is on sys.path)
    Result, at_least, info, keep_freed_memory, side_by_side, timing_ratio,
)

GOAL_INCREMENTAL = 3.0
BEAM = 20


@torch.no_grad()
def _decode_full(head: Seq2SeqHead, tokens: torch.Tensor, memory, pad) -> torch.Tensor:
    out = None
    for t in range(1, tokens.shape[1] + 1):
        out = head.decode(tokens[:, :t], memory, pad)[:, -1]
    return out


@torch.no_grad()
def _decode_incremental(head: Seq2SeqHead, tokens: torch.Tensor, memory, pad) -> torch.Tensor:
    state = head.start(memory, pad)
    out = None
    for t in range(tokens.shape[1]):
        out = head.step(state, tokens[:, t])
    return out


def measure(quick: bool = False, log=None, *, config: Seq2SeqConfig | None = None, batch: int | None = None,
            steps: int | None = None, seconds: float = 10.0, in_dim: int = 768, vocab: int = 200,
            repeat: int | None = None) -> list[Result]:
    log = log or (lambda line: None)
    config = config or Seq2SeqConfig()
    batch = batch or (2 if quick else 4)
    steps = steps or (30 if quick else 60)
    repeat = repeat or (2 if quick else 3)
    torch.manual_seed(0)
    head = Seq2SeqHead(in_dim, vocab, config).eval()
    frames = int(seconds * 50)
    x = torch.randn(batch, frames, in_dim)
    lengths = torch.full((batch,), frames)
    with torch.no_grad():
        memory, pad = head.encode(x, lengths)
    memory, pad = memory.repeat_interleave(BEAM, 0), pad.repeat_interleave(BEAM, 0)
    tokens = torch.randint(4, vocab, (batch * BEAM, steps))
    times = side_by_side({"full": lambda: _decode_full(head, tokens, memory, pad),
                          "incremental": lambda: _decode_incremental(head, tokens, memory, pad)}, repeat)
    speedup = timing_ratio(times["full"], times["incremental"], paired=True)
    full, incremental = statistics.median(times["full"]), statistics.median(times["incremental"])
    diff = float((_decode_full(head, tokens, memory, pad) - _decode_incremental(head, tokens, memory, pad)).abs().max())

    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=1e-4)
    targets = [torch.randint(4, vocab, (steps,)).tolist() for _ in range(16)]
    xb, lb = torch.randn(16, frames, in_dim), torch.full((16,), frames)

    def train_step():
        prefix, gold = teacher_forcing(targets)
        logits = head(xb, lb, prefix)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), gold.reshape(-1), ignore_index=0,
                                                 label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step_s = statistics.median(side_by_side({"step": train_step}, repeat, warmup=True)["step"])
    log(f"{'hypotheses':>10} {'steps':>6} {'full s':>8} {'incr. s':>8} {'speed-up':>9} {'max |diff|':>11} "
        f"{'train ms/step':>14}")
    log(f"{batch * BEAM:>10} {steps:>6} {full:>8.3f} {incremental:>8.3f} {full / incremental:>8.1f}x {diff:>11.2e} "
        f"{step_s * 1000:>14.0f}")
    return [
        at_least("st", "st.incremental_speedup", f"beam decoding, incremental vs full prefix ({steps} steps)",
                 speedup.value, GOAL_INCREMENTAL).with_interval(speedup),
        info("st", "st.max_logit_diff", "largest logit difference, incremental vs full", diff, ""),
        info("st", "st.train_step_ms", f"training step, batch 16 x {seconds:g} s", step_s * 1000, "ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # as `ofactl extract` does (benchmarks/common.py says why)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          "threads; measure on a quiet machine")
    for r in measure(quick=args.quick, log=print):
        print(f"{r.quantity}: {r.value:.4g}{r.unit} {r.goal or ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
