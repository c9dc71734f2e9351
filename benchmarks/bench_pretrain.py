"""Pretraining step time: OFA lambda sampling against lambda = 0, on the same batches.

Both runs do the full step of ``ofactl.train`` (student forward at lambda,
teacher forward, CIF pooling of the targets, losses, backward, AdamW update)
on identical batches; OFA draws lambda ~ U[0, 2) per step as pretraining does.
Goal (issue 4): OFA costs at most 5% more per step than lambda = 0.

Run: python benchmarks/bench_pretrain.py [--preset tiny|distilhubert] [--steps N]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from ofactl.model import OFAStudent, StudentConfig
from ofactl.teacher import Teacher, TeacherConfig, init_student_from_teacher, load_teacher
from ofactl.train import PretrainConfig, param_groups, step_lambda, step_losses


def make_teacher(preset: str) -> Teacher:
    if preset == "tiny":
        return load_teacher("tiny-random")
    base = TeacherConfig(conv_layers=StudentConfig().conv_layers, norm_mode="group_norm", conv_bias=False,
                         embed_dim=768, num_layers=12, num_heads=12, ffn_dim=3072, pos_conv_kernel=128,
                         pos_conv_groups=16, layer_norm_first=False)
    return Teacher(base)


def run(preset: str, batches, lams, warmup: int) -> tuple[float, list[float]]:
    torch.manual_seed(0)
    teacher = make_teacher(preset)
    student = OFAStudent(StudentConfig.preset(preset))
    init_student_from_teacher(student, teacher)
    student.train()
    cfg = PretrainConfig(precision="fp32")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "distilhubert"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    n = int(args.seconds * 16000)
    batches = []
    for _ in range(args.steps):
        lengths = torch.randint(n // 2, n + 1, (args.batch,), generator=g)
        lengths[0] = n
        audio = torch.randn(args.batch, n, generator=g) * 0.1
        batches.append((audio, lengths))
    ofa_cfg = PretrainConfig(lambda_max=2 - 1e-5, seed=0)
    ofa_lams = [step_lambda(ofa_cfg, s) for s in range(args.steps)]
    warmup = min(3, args.steps // 4)
    print(f"# pretraining step time, preset {args.preset}, batch {args.batch} x {args.seconds:g} s, "
          f"{args.steps} steps; {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    t_zero, p_zero = run(args.preset, batches, [0.0] * args.steps, warmup)
    t_ofa, p_ofa = run(args.preset, batches, ofa_lams, warmup)
    print(f"{'run':<22} {'ms/step':>9} {'mean period ms':>15}")
    print(f"{'lambda = 0':<22} {1e3 * t_zero:9.1f} {sum(p_zero) / len(p_zero):15.1f}")
    print(f"{'OFA, lambda ~ U[0,2)':<22} {1e3 * t_ofa:9.1f} {sum(p_ofa) / len(p_ofa):15.1f}")
    print(f"OFA / lambda=0 step time: {t_ofa / t_zero:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
