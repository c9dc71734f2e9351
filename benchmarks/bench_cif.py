"""CIF benchmark: the vectorised cif() against a loop over time, side by side.

Prints, for a few batch shapes, the time of cif() forward and forward+backward,
the time of a plain per-frame loop (the textbook algorithm, as in the tests),
and the ratio; then how many firing decisions a float32 prefix sum would move
compared with the float64 one cif() uses.

Run: python benchmarks/bench_cif.py [--quick]
(or all benchmarks in one table: python benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from ofactl.cif import FIRE_EPS, cif, modify_alpha

from common import Result, above, info  # benchmarks/common.py (the script's directory is on sys.path)


def loop_cif(x: torch.Tensor, alpha: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Per-utterance, per-frame integrate-and-fire (the plain reference)."""
    outs = []
    for b in range(x.shape[0]):
        acc_w = torch.zeros((), dtype=x.dtype)
        acc = torch.zeros(x.shape[2], dtype=x.dtype)
        frames = []
        for t in range(int(lengths[b])):
            a = alpha[b, t]
            if float(acc_w) + float(a) >= 1.0 - FIRE_EPS:
                first = 1.0 - acc_w
                frames.append(acc + first * x[b, t])
                acc_w = a - first
                acc = acc_w * x[b, t]
            else:
                acc_w = acc_w + a
                acc = acc + a * x[b, t]
        outs.append(torch.stack(frames) if frames else x.new_zeros(0, x.shape[2]))
    return outs


def timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(
    quick: bool = False,
    shapes: list[tuple[int, int, int]] | None = None,
    repeat: int | None = None,
    n_utt: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Result]:
    """Time cif() against the loop and count float32 firing moves; ``log`` gets the detailed table's lines.

    Results: per shape, the forward speed-up of cif() over the loop (the median
    over the three lambdas; goal > 1x), cif() forward+backward ms at the last
    (largest) shape, and the float32 vs float64 firing differences (informative).
    """
    log = log or (lambda line: None)
    torch.manual_seed(0)
    if shapes is None:
        shapes = [(8, 250, 512), (8, 750, 512)] if quick else [(8, 250, 512), (8, 750, 512), (24, 780, 512)]
    if repeat is None:
        repeat = 2 if quick else 5
    log(f"# CIF benchmark on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads")
    log(f"{'batch x frames x dim':>22} {'lam':>5} {'cif fwd ms':>11} {'cif fwd+bwd ms':>15} {'loop fwd ms':>12} {'loop/cif':>9}")
    results = []
    fwd_bwd_ms = []
    for batch, frames, dim in shapes:
        x = torch.randn(batch, frames, dim)
        lengths = torch.randint(frames // 2, frames + 1, (batch,))
        lengths[0] = frames
        alpha = torch.rand(batch, frames)
        speedups = []
        for lam in (0.0, 1.0, 1.5):
            alpha_mod = modify_alpha(alpha, lam, lengths)
            t_fwd = timeit(lambda: cif(x, alpha_mod, lengths), repeat)
            xg = x.clone().requires_grad_(True)
            ag = alpha_mod.clone().requires_grad_(True)

            def fwd_bwd():
                cif(xg, ag, lengths).out.sum().backward()

            t_bwd = timeit(fwd_bwd, repeat)
            t_loop = timeit(lambda: loop_cif(x, alpha_mod, lengths), 1)
            speedups.append(t_loop / t_fwd)
            if lam == 1.0:
                fwd_bwd_ms.append((f"{batch} x {frames} x {dim}", 1e3 * t_bwd))
            log(f"{f'{batch} x {frames} x {dim}':>22} {lam:5.1f} {1e3 * t_fwd:11.2f} {1e3 * t_bwd:15.2f} "
                f"{1e3 * t_loop:12.1f} {t_loop / t_fwd:8.0f}x")
        results.append(above("cif", f"cif.speedup.{batch}x{frames}x{dim}",
                             f"vectorised cif() fwd speed-up over loop, {batch} x {frames} x {dim} (median of 3 lambdas)",
                             statistics.median(speedups), 1.0))
    shape, ms = fwd_bwd_ms[-1]
    results.append(info("cif", "cif.fwd_bwd_ms", f"cif() fwd+bwd, {shape}, lambda 1", ms, "ms"))

    # float32 vs float64 prefix sums: how many firing decisions move
    if n_utt is None:
        n_utt = 50 if quick else 200
    frames = 3000
    alpha = torch.sigmoid(torch.randn(n_utt, frames) * 2)
    moved = 0
    fires = 0
    differing = 0
    for lam in (0.5, 1.0, 1.5):
        a = modify_alpha(alpha, lam)
        f64 = torch.floor(torch.cumsum(a.double(), 1) + FIRE_EPS)
        f32 = torch.floor(torch.cumsum(a, 1) + FIRE_EPS).double()
        fire64 = torch.diff(f64, dim=1, prepend=torch.zeros(n_utt, 1, dtype=torch.float64)) > 0
        fire32 = torch.diff(f32, dim=1, prepend=torch.zeros(n_utt, 1, dtype=torch.float64)) > 0
        moved += int((fire64 != fire32).sum()) // 2
        fires += int(fire64.sum())
        differing += int((fire64 != fire32).any(dim=1).sum())
    log(f"# float32 prefix sum at T = {frames}: {moved} of {fires} firings move "
        f"({moved / max(fires, 1):.1e}); {differing} of {3 * n_utt} utterances segmented differently "
        f"({100 * differing / (3 * n_utt):.1f}%). cif() decides in float64.")
    results.append(info("cif", "cif.f32_firings_moved", f"float32 prefix sum, T = {frames}: fraction of firings moved",
                        moved / max(fires, 1), ""))
    results.append(info("cif", "cif.f32_utts_differing", f"float32 prefix sum, T = {frames}: utterances segmented differently",
                        100 * differing / (3 * n_utt), "%"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    args = parser.parse_args()
    measure(quick=args.quick, log=print)


if __name__ == "__main__":
    main()
