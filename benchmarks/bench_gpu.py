"""GPU throughput: pretraining steps per second and extraction audio-seconds per second, bf16, +/- torch.compile.

Run on any CUDA GPU with ``bash benchmarks/gpu.sh`` (it calls this script);
``--device cpu --preset tiny --no-compile`` runs every code path on a CPU
(numbers not meaningful).  Prints one table and, with ``--json FILE``, the
numbers with the GPU's name, for the README.

* extraction: the ``distilhubert`` student (random weights), batch 8 x 10 s,
  at 20 ms (lambda 0) and 90 ms (lambda from a calibration on the same audio),
  in fp32 and bf16 (``OFAModel``, as ``ofactl extract`` runs it);
* pretraining: the full step of ``ofactl pretrain`` (student at lambda ~ U[0, 2),
  a teacher of HuBERT Base's shapes in fp32, losses, backward, AdamW), batch
  8 x 4 s, in fp32 and bf16;
* each bf16 measurement once more with the CNN and the transformer compiled
  (``torch.compile``; the alpha module and the CIF stay eager).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ofactl.calibrate import AlphaStats, alpha_stats, build_calibration  # noqa: E402
from ofactl.inference import OFAModel  # noqa: E402
from ofactl.model import OFAStudent, StudentConfig  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, repeat: int) -> float:
    for _ in range(2):  # warm-up: kernel selection, autotuning, compilation
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeat


def _compiled(student: OFAStudent) -> OFAStudent:
    student.feature_extractor = torch.compile(student.feature_extractor, dynamic=True)
    student.encoder = torch.compile(student.encoder, dynamic=True)
    return student


def extraction(preset: str, device: torch.device, batch: int, seconds: float, repeat: int, compile_: bool) -> dict:
    torch.manual_seed(0)
    n = int(seconds * 16000)
    audio = torch.randn(batch, n, device=device) * 0.1
    lengths = torch.full((batch,), n, device=device)
    out = {}
    variants = [("fp32", False), ("bf16", False)] + ([("bf16", True)] if compile_ else [])
    for precision, comp in variants:
        torch.manual_seed(0)
        student = OFAStudent(StudentConfig.preset(preset)).eval().to(device)
        if comp:
            student = _compiled(student)
        model = OFAModel(student, Path("."), "bench", None, device, precision=precision)
        with torch.inference_mode():
            _, frames, alpha = model.encode_front(audio, lengths)
            cal = build_calibration([seconds] * batch, AlphaStats.cat([alpha_stats(alpha.float().cpu(),
                                                                                   frames.cpu())]))
        for period in (20, 90):
            lam = 0.0 if period == 20 else cal.lam_for(90.0)
            t = _timed(lambda: model.encode_batch(audio, lengths, lam), device, repeat)
            out[f"extract_{period}ms_{precision}{'_compiled' if comp else ''}"] = batch * seconds / t
    return out


def pretraining(preset: str, device: torch.device, batch: int, seconds: float, steps: int, compile_: bool) -> dict:
    from bench_pretrain import make_teacher

    from ofactl.pretrain_config import PretrainConfig
    from ofactl.teacher import init_student_from_teacher
    from ofactl.train import param_groups, step_lambda, step_losses

    n = int(seconds * 16000)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch, n, generator=g).mul(0.1).to(device), torch.full((batch,), n, device=device))
               for _ in range(steps)]
    out = {}
    variants = [("fp32", False), ("bf16", False)] + ([("bf16", True)] if compile_ else [])
    for precision, comp in variants:
        torch.manual_seed(0)
        teacher = make_teacher(preset).to(device).eval()
        student = OFAStudent(StudentConfig.preset(preset))
        init_student_from_teacher(student, teacher)
        student.to(device).train()
        if comp:
            student = _compiled(student)
        cfg = PretrainConfig(seed=0)
        opt = torch.optim.AdamW(param_groups(student, 0.01), lr=2e-4)
        state = {"step": 0}

        def step() -> None:
            audio, lengths = batches[state["step"] % steps]
            lam = step_lambda(cfg, state["step"])
            parts, _ = step_losses(student, teacher, audio, lengths, lam, student.config.target_layers, cfg,
                                   precision=precision)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            state["step"] += 1

        t = _timed(step, device, steps)
        out[f"pretrain_steps_per_s_{precision}{'_compiled' if comp else ''}"] = 1.0 / t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="distilhubert", choices=["distilhubert", "tiny"])
    parser.add_argument("--steps", type=int, default=20, help="timed pretraining steps (after 2 warm-up steps)")
    parser.add_argument("--repeat", type=int, default=10, help="timed extraction batches (after 2 warm-up batches)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to torch (check nvidia-smi and the torch build)", file=sys.stderr)
        sys.exit(2)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# {name}; torch {torch.__version__}; preset {args.preset}")
    numbers = {**extraction(args.preset, device, 8, 10.0, args.repeat, not args.no_compile),
               **pretraining(args.preset, device, 8, 4.0, args.steps, not args.no_compile)}
    for key, value in numbers.items():
        unit = "steps/s" if key.startswith("pretrain") else "audio-s/s"
        print(f"| {key:<36} | {value:12.2f} {unit} |")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "preset": args.preset,
                                         "results": numbers}, indent=1))


if __name__ == "__main__":
    main()
