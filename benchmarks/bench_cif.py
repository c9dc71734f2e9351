"""CIF benchmark: cif() against the memory-bandwidth floor, its former version and a loop, side by side.

For a few batch shapes and three lambdas, one torch thread, all measured in the
same run (the median of interleaved rounds, each ratio with a 95% bootstrap
interval over the rounds):

* cif() forward against one in-place ``index_add_`` pass of the same
  ``(batch * frames, dim)`` input into a preallocated pooled output (the floor:
  any pooling reads every input row and writes every output row once), and
  against the same pass into a fresh output (cif() returns a new tensor);
* cif() forward against the version before issue 14 (two out-of-place
  ``index_add`` passes, kept here as ``_cif_before``);
* cif() forward, and forward + backward (given a dense output gradient),
  against a plain per-frame loop (the textbook algorithm, as in the tests);

then how many firing decisions a float32 prefix sum would move compared with
the float64 one cif() uses.

Run: python benchmarks/bench_cif.py [--quick] [--threads N]
(or all benchmarks in one table: python benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable

import torch

from ofactl.cif import FIRE_EPS, cif, modify_alpha
from ofactl.layers import valid_mask

from common import (  # benchmarks/common.py (the script's directory is on sys.path)
    RatioEstimate, Result, above, at_most, info, keep_freed_memory, side_by_side, timing_ratio,
)

GOAL_VS_INDEX_ADD = 2.0  # forward <= 2x one index_add_ pass
GOAL_FWD_SPEEDUP = 8.0  # forward >= 8x faster than the loop
GOAL_FWD_BWD_SPEEDUP = 50.0  # forward + backward >= 50x faster than the loop's
LAMBDAS = (0.0, 1.0, 1.5)


def loop_cif(x: torch.Tensor, alpha: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Per-utterance, per-frame integrate-and-fire (the plain reference).

    Frames are taken apart with ``unbind`` so that the backward of the loop
    does not materialise a full-size gradient per frame (as ``x[b, t]`` would).
    """
    outs = []
    for b in range(x.shape[0]):
        n = int(lengths[b])
        acc_w = torch.zeros((), dtype=x.dtype)
        acc = torch.zeros(x.shape[2], dtype=x.dtype)
        frames = []
        for xt, a in zip(x[b, :n].unbind(0), alpha[b, :n].unbind(0)):
            if float(acc_w.detach()) + float(a.detach()) >= 1.0 - FIRE_EPS:
                first = 1.0 - acc_w
                frames.append(acc + first * xt)
                acc_w = a - first
                acc = acc_w * xt
            else:
                acc_w = acc_w + a
                acc = acc + a * xt
        outs.append(torch.stack(frames) if frames else x.new_zeros(0, x.shape[2]))
    return outs


def _cif_before(x: torch.Tensor, alpha: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cif() as it was before issue 14 (forward only, no argument checks): two out-of-place index_add passes."""
    batch, max_len, dim = x.shape
    device = x.device
    valid = valid_mask(lengths, max_len)
    acc_dtype = torch.promote_types(x.dtype, torch.float32)
    a64 = alpha.to(torch.float64).masked_fill(~valid, 0.0)
    csum = torch.cumsum(a64, dim=1)
    with torch.no_grad():
        fires_after = torch.floor(csum + FIRE_EPS).long()
        fires_before = torch.nn.functional.pad(fires_after[:, :-1], (1, 0))
        fired = (fires_after > fires_before) & valid
        out_lengths = fires_after[:, -1]
        n_max = int(out_lengths.max()) if batch else 0
    remainder = torch.where(fired, (csum - fires_after.to(csum.dtype)).clamp(min=0.0), torch.zeros_like(csum))
    remainder = torch.minimum(remainder, a64)
    w_next = remainder
    w_prev = a64 - remainder
    slots = n_max + 1
    base = (torch.arange(batch, device=device) * slots)[:, None]
    idx_prev = (base + fires_before.clamp(max=slots - 1)).reshape(-1)
    idx_next = (base + fires_after.clamp(max=slots - 1)).reshape(-1)
    xs = x.to(acc_dtype).masked_fill(~valid[..., None], 0.0).reshape(-1, dim)
    out = torch.zeros(batch * slots, dim, dtype=acc_dtype, device=device)
    out = out.index_add(0, idx_prev, xs * w_prev.to(acc_dtype).reshape(-1, 1))
    out = out.index_add(0, idx_next, xs * w_next.to(acc_dtype).reshape(-1, 1))
    out = out.view(batch, slots, dim)[:, :n_max]
    keep = valid_mask(out_lengths, n_max)
    out = out.masked_fill(~keep[..., None], 0.0).to(x.dtype)
    with torch.no_grad():
        t_index = torch.arange(max_len, device=device, dtype=torch.float64).expand(batch, max_len).reshape(-1)
        centers = torch.zeros(batch * slots, dtype=torch.float64, device=device)
        centers.index_add_(0, idx_prev, t_index * w_prev.detach().reshape(-1))
        centers.index_add_(0, idx_next, t_index * w_next.detach().reshape(-1))
        centers = centers.view(batch, slots)[:, :n_max].masked_fill(~keep, 0.0)
    return out, centers


def _x(estimate: RatioEstimate) -> str:
    """A ratio and its interval for the detailed table."""
    digits = 2 if estimate.value < 10 else 0
    return f"{estimate.value:.{digits}f}x [{estimate.low:.{digits}f},{estimate.high:.{digits}f}]".rjust(17)


def index_add_floor(x: torch.Tensor, alpha_mod: torch.Tensor) -> tuple[Callable[[], object], Callable[[], object]]:
    """One ``index_add_`` of every input row into its output row (CIF's mapping): into a preallocated
    output, and into a fresh one (as cif() must return: on this kind of machine the first touch of a
    large fresh tensor, page faults, can cost as much as the pass)."""
    batch, _, dim = x.shape
    fires = torch.floor(torch.cumsum(alpha_mod.double(), 1) + FIRE_EPS).long()
    n_max = max(int(fires[:, -1].max()), 1)
    before = torch.nn.functional.pad(fires[:, :-1], (1, 0)).clamp(max=n_max - 1)
    idx = (torch.arange(batch)[:, None] * n_max + before).reshape(-1)
    rows = x.reshape(-1, dim)
    buf = torch.zeros(batch * n_max, dim, dtype=x.dtype)
    return (lambda: buf.index_add_(0, idx, rows),
            lambda: torch.zeros(batch * n_max, dim, dtype=x.dtype).index_add_(0, idx, rows))


def measure(
    quick: bool = False,
    shapes: list[tuple[int, int, int]] | None = None,
    repeat: int | None = None,
    n_utt: int | None = None,
    log: Callable[[str], None] | None = None,
    threads: int | None = 1,
) -> list[Result]:
    """Time cif() against the index_add_ floor, its former version and the loop; count float32 firing moves.

    ``log`` gets the detailed table's lines; ``threads`` (default 1, the goals'
    setting; None: leave torch's) is restored afterwards.  Results, per shape,
    each the worst of the three lambdas: cif() forward over one in-place
    ``index_add_`` pass (goal <= 2x), the loop's forward over cif()'s (goal >
    8x), the loop's forward + backward over cif()'s (goal > 50x); cif() forward
    over an ``index_add_`` into a fresh output and the former cif() forward over
    the new one (informative); the times at the last shape (lambda 1); the
    float32 vs float64 firing differences (informative).
    """
    log = log or (lambda line: None)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(quick, shapes, repeat, n_utt, log)
    finally:
        torch.set_num_threads(saved_threads)


def _measure(quick, shapes, repeat, n_utt, log) -> list[Result]:
    torch.manual_seed(0)
    if shapes is None:
        shapes = [(8, 250, 512), (8, 750, 512), (8, 1000, 768)]
        if not quick:
            shapes.insert(2, (24, 780, 512))
    if repeat is None:
        repeat = 2 if quick else 5
    rounds = 10 * repeat  # the fast functions: more rounds, cheap
    log(f"# CIF benchmark on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; medians of {rounds} interleaved rounds (the former cif() and "
        f"the loop: of {repeat}), each round the faster of two calls; ratios with a 95% bootstrap interval "
        f"[low,high] over the rounds (a quiet machine makes them narrow)")
    log(f"{'batch x frames x dim':>22} {'lam':>5} {'cif fwd ms':>11} {'index_add_ ms':>14} {'cif/ia':>17} "
        f"{'fresh ia ms':>12} {'cif/fresh':>17} "
        f"{'before ms':>10} {'before/cif':>17} {'loop fwd ms':>12} {'loop/cif':>17} "
        f"{'cif fwd+bwd ms':>15} {'loop fwd+bwd ms':>16} {'loop/cif fb':>17}")
    results = []
    last = {}
    for batch, frames, dim in shapes:
        x = torch.randn(batch, frames, dim)
        lengths = torch.randint(frames // 2, frames + 1, (batch,))
        lengths[0] = frames
        alpha = torch.rand(batch, frames)
        rows = []
        for lam in LAMBDAS:
            alpha_mod = modify_alpha(alpha, lam, lengths)
            xg = x.clone().requires_grad_(True)
            ag = alpha_mod.clone().requires_grad_(True)
            res = cif(x, alpha_mod, lengths)
            grad_out = torch.randn(res.out.shape)  # a dense output gradient, as from a real loss
            grad_loop = [grad_out[b, :n] for b, n in enumerate(res.lengths.tolist())]

            def fwd_bwd():
                xg.grad = ag.grad = None
                cif(xg, ag, lengths).out.backward(grad_out)

            def loop_fwd_bwd():
                xg.grad = ag.grad = None
                torch.autograd.backward(loop_cif(xg, ag, lengths), grad_loop)

            ia, ia_fresh = index_add_floor(x, alpha_mod)
            # (the forward + backward in rounds of its own: it reads a copy of x, which would evict x from
            # the caches between the calls that are compared with each other)
            # each round: the faster of two calls in a row (each function also measured with its data in the caches)
            fast = side_by_side({"cif": lambda: cif(x, alpha_mod, lengths), "ia": ia, "ia_fresh": ia_fresh}, rounds, 2)
            fast |= side_by_side({"fwd_bwd": fwd_bwd}, rounds, 2)
            fast["before"] = side_by_side({"before": lambda: _cif_before(x, alpha_mod, lengths)}, repeat, 2)["before"]
            slow = side_by_side({"loop": lambda: loop_cif(x, alpha_mod, lengths), "loop_fwd_bwd": loop_fwd_bwd},
                                repeat, 2)
            samples = {**fast, **slow}
            t = {name: statistics.median(values) for name, values in samples.items()}
            r = {"vs_ia": timing_ratio(samples["cif"], samples["ia"], paired=True),
                 "vs_fresh": timing_ratio(samples["cif"], samples["ia_fresh"], paired=True),
                 "before": timing_ratio(samples["before"], samples["cif"], paired=False),
                 "loop": timing_ratio(samples["loop"], samples["cif"], paired=False),
                 "loop_fb": timing_ratio(samples["loop_fwd_bwd"], samples["fwd_bwd"], paired=False)}
            rows.append(r)
            log(f"{f'{batch} x {frames} x {dim}':>22} {lam:5.1f} {1e3 * t['cif']:11.2f} {1e3 * t['ia']:14.2f} "
                f"{_x(r['vs_ia'])} {1e3 * t['ia_fresh']:12.2f} {_x(r['vs_fresh'])} "
                f"{1e3 * t['before']:10.2f} {_x(r['before'])} "
                f"{1e3 * t['loop']:12.1f} {_x(r['loop'])} {1e3 * t['fwd_bwd']:15.2f} "
                f"{1e3 * t['loop_fwd_bwd']:16.1f} {_x(r['loop_fb'])}")
            if lam == 1.0:
                last = {"shape": f"{batch} x {frames} x {dim}", **t}
        shape = f"{batch}x{frames}x{dim}"
        label = f"{batch} x {frames} x {dim}, worst of 3 lambdas"
        # the worst lambda: the slowest against the floor, the smallest speed-up
        worst = {name: (max if name.startswith("vs_") else min)((r[name] for r in rows), key=lambda e: e.value)
                 for name in rows[0]}
        results += [
            at_most("cif", f"cif.vs_index_add.{shape}", f"cif() fwd / one index_add_ pass, {label}",
                    worst["vs_ia"].value, GOAL_VS_INDEX_ADD).with_interval(worst["vs_ia"]),
            above("cif", f"cif.speedup.{shape}", f"cif() fwd speed-up over loop, {label}",
                  worst["loop"].value, GOAL_FWD_SPEEDUP).with_interval(worst["loop"]),
            above("cif", f"cif.fwd_bwd_speedup.{shape}", f"cif() fwd+bwd speed-up over loop, {label}",
                  worst["loop_fb"].value, GOAL_FWD_BWD_SPEEDUP).with_interval(worst["loop_fb"]),
            info("cif", f"cif.vs_fresh_index_add.{shape}",
                 f"cif() fwd / one index_add_ pass into a fresh output, {label}",
                 worst["vs_fresh"].value, "x").with_interval(worst["vs_fresh"]),
            info("cif", f"cif.vs_before.{shape}", f"cif() fwd speed-up over the version before issue 14, {label}",
                 worst["before"].value, "x").with_interval(worst["before"]),
        ]
    shape = last["shape"]
    results += [
        info("cif", "cif.fwd_ms", f"cif() fwd, {shape}, lambda 1", 1e3 * last["cif"], "ms"),
        info("cif", "cif.index_add_ms", f"one index_add_ pass, {shape}, lambda 1", 1e3 * last["ia"], "ms"),
        info("cif", "cif.before_fwd_ms", f"cif() fwd before issue 14, {shape}, lambda 1", 1e3 * last["before"], "ms"),
        info("cif", "cif.fwd_bwd_ms", f"cif() fwd+bwd, {shape}, lambda 1", 1e3 * last["fwd_bwd"], "ms"),
    ]

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
    keep_freed_memory()  # as `ofactl extract` does (benchmarks/common.py says why)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, the goals' setting)")
    args = parser.parse_args()
    for r in measure(quick=args.quick, log=print, threads=args.threads):
        if r.goal:
            print(f"# {r.quantity}: {r.value:.2f}{r.unit} (goal {r.goal}: {'met' if r.met else 'MISSED'})")


if __name__ == "__main__":
    main()
