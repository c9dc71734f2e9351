"""Pretraining step time: OFA lambda sampling against lambda = 0, on the same batches.

Both runs do the full step of ``ofactl.train`` (student forward at lambda,
teacher forward, CIF pooling of the targets, losses, backward, AdamW update)
on identical batches, interleaved step by step; OFA draws lambda ~ U[0, 2)
per step as pretraining does.  The ratio is of the mean step times (the total
is what counts), with a 95% bootstrap interval over the paired steps.
Goal (issue 4): OFA costs at most 5% more per step than lambda = 0.

Run: python benchmarks/bench_pretrain.py [--preset tiny|distilhubert] [--steps N]
(or all benchmarks in one table: python benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from ofactl.model import OFAStudent, StudentConfig
from ofactl.teacher import Teacher, TeacherConfig, init_student_from_teacher, load_teacher
from ofactl.pretrain_config import PretrainConfig
from ofactl.train import param_groups, step_lambda, step_losses

from common import Result, at_most, info, keep_freed_memory, timing_ratio  # benchmarks/common.py (the script's directory is on sys.path)


def make_teacher(preset: str) -> Teacher:
    if preset == "tiny":
        return load_teacher("tiny-random")
    base = TeacherConfig(conv_layers=StudentConfig().conv_layers, norm_mode="group_norm", conv_bias=False,
                         embed_dim=768, num_layers=12, num_heads=12, ffn_dim=3072, pos_conv_kernel=128,
                         pos_conv_groups=16, layer_norm_first=False)
    return Teacher(base)


def make_batches(steps: int, batch: int, seconds: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` random batches of ``batch`` utterances, lengths between half and all of ``seconds`` (seed 0)."""
    g = torch.Generator().manual_seed(0)
    n = int(seconds * 16000)
    batches = []
    for _ in range(steps):
        lengths = torch.randint(n // 2, n + 1, (batch,), generator=g)
        lengths[0] = n
        batches.append((torch.randn(batch, n, generator=g) * 0.1, lengths))
    return batches


def make_stepper(preset: str, precision: str = "fp32",
                 teacher_precision: str = "fp32") -> Callable[[torch.Tensor, torch.Tensor, float], tuple[float, float]]:
    """A fresh student (initialised from a fresh teacher, seed 0) and its optimiser; returns ``step(audio, lengths,
    lam) -> (seconds, mean output period in ms)``, one full pretraining step of ``ofactl.train``."""
    torch.manual_seed(0)
    teacher = make_teacher(preset)
    student = OFAStudent(StudentConfig.preset(preset))
    init_student_from_teacher(student, teacher)
    student.train()
    cfg = PretrainConfig(precision=precision, teacher_precision=teacher_precision)
    opt = torch.optim.AdamW(param_groups(student, 0.01), lr=2e-4)

    def step(audio: torch.Tensor, lengths: torch.Tensor, lam: float) -> tuple[float, float]:
        t0 = time.perf_counter()
        parts, out = step_losses(student, teacher, audio, lengths, lam, student.config.target_layers, cfg)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        opt.step()
        seconds = time.perf_counter() - t0
        return seconds, 1000 * float(lengths.sum()) / 16000 / max(int(out.lengths.sum()), 1)

    return step


def side_by_side(runs: dict[str, tuple[Callable, list[float]]], batches, warmup: int
                 ) -> dict[str, tuple[list[float], list[float]]]:
    """Each run's step times (after ``warmup`` steps) and output periods, the runs interleaved step by step on the
    same batches (run name -> (stepper, lambda per step)), so that step i of every run shares its moment."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runs}
    for i, (audio, lengths) in enumerate(batches):
        for name, (step, lams) in runs.items():
            seconds, period = step(audio, lengths, lams[i])
            if i >= warmup:
                out[name][0].append(seconds)
            out[name][1].append(period)
    return out


def measure(
    quick: bool = False,
    preset: str = "tiny",
    steps: int | None = None,
    batch: int = 8,
    seconds: float = 4.0,
    log: Callable[[str], None] | None = None,
) -> list[Result]:
    """Time pretraining steps, OFA against lambda = 0; ``log`` gets the detailed table's lines.

    ``quick`` runs 12 steps instead of 30 (unless ``steps`` is given).  Results:
    the OFA / lambda = 0 step-time ratio (goal <= 1.05x), both step times and
    the OFA run's throughput in audio-s/s.
    """
    log = log or (lambda line: None)
    if steps is None:
        steps = 12 if quick else 30
    batches = make_batches(steps, batch, seconds)
    ofa_cfg = PretrainConfig(lambda_max=2 - 1e-5, seed=0)
    ofa_lams = [step_lambda(ofa_cfg, s) for s in range(steps)]
    warmup = min(3, steps // 4)
    log(f"# pretraining step time, preset {preset}, batch {batch} x {seconds:g} s, "
        f"{steps} steps; {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    timed = side_by_side({"zero": (make_stepper(preset), [0.0] * steps),
                          "ofa": (make_stepper(preset), ofa_lams)}, batches, warmup)
    (times_zero, p_zero), (times_ofa, p_ofa) = timed["zero"], timed["ofa"]
    t_zero, t_ofa = statistics.mean(times_zero), statistics.mean(times_ofa)
    ratio = timing_ratio(times_ofa, times_zero, paired=True, statistic="mean")
    log(f"{'run':<22} {'ms/step':>9} {'mean period ms':>15}")
    log(f"{'lambda = 0':<22} {1e3 * t_zero:9.1f} {sum(p_zero) / len(p_zero):15.1f}")
    log(f"{'OFA, lambda ~ U[0,2)':<22} {1e3 * t_ofa:9.1f} {sum(p_ofa) / len(p_ofa):15.1f}")
    log(f"OFA / lambda=0 step time (means of {ratio.n} interleaved steps): {ratio.value:.3f} "
        f"[{ratio.low:.3f}, {ratio.high:.3f}] (goal <= 1.05)")
    step_audio_s = sum(float(lengths.sum()) for _, lengths in batches[warmup:]) / 16000 / (steps - warmup)
    return [
        at_most("pretrain", "pretrain.step_ratio", f"OFA step / lambda=0 step ({preset}, {batch} x {seconds:g} s)",
                ratio.value, 1.05).with_interval(ratio),
        info("pretrain", "pretrain.step_ms_zero", "lambda=0 step", 1e3 * t_zero, "ms"),
        info("pretrain", "pretrain.step_ms_ofa", "OFA step, lambda ~ U[0,2)", 1e3 * t_ofa, "ms"),
        info("pretrain", "pretrain.speed_ofa", "OFA pretraining throughput", step_audio_s / t_ofa, "audio-s/s"),
    ]


def main() -> None:
    keep_freed_memory()  # as `ofactl extract` does (benchmarks/common.py says why)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "distilhubert"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    measure(preset=args.preset, steps=args.steps, batch=args.batch, seconds=args.seconds, log=print)


if __name__ == "__main__":
    main()
