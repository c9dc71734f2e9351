"""Pretraining step time: OFA lambda sampling against lambda = 0, on the same batches.

Both runs do the full step of ``ofactl.train`` (student forward at lambda,
teacher forward, CIF pooling of the targets, losses, backward, AdamW update)
on identical batches; OFA draws lambda ~ U[0, 2) per step as pretraining does.
Goal (issue 4): OFA costs at most 5% more per step than lambda = 0.

Run: python benchmarks/bench_pretrain.py [--preset tiny|distilhubert] [--steps N]
(or all benchmarks in one table: python benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch

from ofactl.model import OFAStudent, StudentConfig
from ofactl.teacher import Teacher, TeacherConfig, init_student_from_teacher, load_teacher
from ofactl.pretrain_config import PretrainConfig
from ofactl.train import param_groups, step_lambda, step_losses

from common import Result, at_most, info  # benchmarks/common.py (the script's directory is on sys.path)


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


def run(preset: str, batches, lams, warmup: int, precision: str = "fp32",
        teacher_precision: str = "fp32") -> tuple[float, list[float]]:
    torch.manual_seed(0)
    teacher = make_teacher(preset)
    student = OFAStudent(StudentConfig.preset(preset))
    init_student_from_teacher(student, teacher)
    student.train()
    cfg = PretrainConfig(precision=precision, teacher_precision=teacher_precision)
    opt = torch.optim.AdamW(param_groups(student, 0.01), lr=2e-4)
    times, periods = [], []
    for i, ((audio, lengths), lam) in enumerate(zip(batches, lams)):
        t0 = time.perf_counter()
        parts, out = step_losses(student, teacher, audio, lengths, lam, student.config.target_layers, cfg)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        periods.append(1000 * float(lengths.sum()) / 16000 / max(int(out.lengths.sum()), 1))
    return sum(times) / len(times), periods


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
    t_zero, p_zero = run(preset, batches, [0.0] * steps, warmup)
    t_ofa, p_ofa = run(preset, batches, ofa_lams, warmup)
    log(f"{'run':<22} {'ms/step':>9} {'mean period ms':>15}")
    log(f"{'lambda = 0':<22} {1e3 * t_zero:9.1f} {sum(p_zero) / len(p_zero):15.1f}")
    log(f"{'OFA, lambda ~ U[0,2)':<22} {1e3 * t_ofa:9.1f} {sum(p_ofa) / len(p_ofa):15.1f}")
    log(f"OFA / lambda=0 step time: {t_ofa / t_zero:.3f} (goal <= 1.05)")
    step_audio_s = sum(float(lengths.sum()) for _, lengths in batches[warmup:]) / 16000 / (steps - warmup)
    return [
        at_most("pretrain", "pretrain.step_ratio", f"OFA step / lambda=0 step ({preset}, {batch} x {seconds:g} s)",
                t_ofa / t_zero, 1.05),
        info("pretrain", "pretrain.step_ms_zero", "lambda=0 step", 1e3 * t_zero, "ms"),
        info("pretrain", "pretrain.step_ms_ofa", "OFA step, lambda ~ U[0,2)", 1e3 * t_ofa, "ms"),
        info("pretrain", "pretrain.speed_ofa", "OFA pretraining throughput", step_audio_s / t_ofa, "audio-s/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "distilhubert"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    measure(preset=args.preset, steps=args.steps, batch=args.batch, seconds=args.seconds, log=print)


if __name__ == "__main__":
    main()
