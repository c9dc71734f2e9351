"""bf16 against fp32, side by side in one run: extraction speed, feature agreement, pretraining step.

* Extraction throughput of the ``distilhubert`` student (random weights) at
  20 ms and 90 ms, batch 8 x 10 s: bf16 / fp32 (goal >= 2.0x).
* Agreement on the same audio at lambdas 0, 0.5, 1, 1.5, 1.9 and in exact
  mode at 90 ms: the fraction of utterances with the same frame count as fp32
  (goal 100%) and the smallest per-frame cosine similarity (goal >= 0.999).
* A pretraining step (student forward at lambda ~ U[0, 2), a teacher of
  HuBERT Base's shapes in fp32, losses, backward, AdamW) at batch 8 x 4 s:
  bf16 / fp32 (goal <= 0.6x); the same with the teacher in bf16 too (the
  config's opt-in ``teacher_precision: bf16``), and how close a bf16
  teacher's target layers stay to fp32's (smallest cosine, every frame).

The ratios are side by side: extraction as medians of interleaved rounds,
pretraining as means of steps interleaved on the same batches and lambdas,
each with a 95% bootstrap interval over its rounds or steps.  The machine's
CPU decides what bf16 can gain: AMX and AVX512-BF16 compute it
natively; without them the ratios show the cost of emulation.  Measure on a
quiet machine.

Run: python benchmarks/bench_precision.py [--quick]
(or all benchmarks in one table: python benchmarks/run_all.py --only precision)
"""

from __future__ import annotations

import argparse
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import torch

from ofactl.calibrate import AlphaStats, alpha_stats, build_calibration
from ofactl.inference import OFAModel
from ofactl.model import OFAStudent, StudentConfig
from ofactl.precision import cpu_bf16_flags

from common import (  # benchmarks/common.py (the script's directory is on sys.path)
    RatioEstimate, Result, at_least, at_most, info, keep_freed_memory, side_by_side, timing_ratio,
)

LAMBDAS = (0.0, 0.5, 1.0, 1.5, 1.9)


def extraction(preset: str, batch: int, seconds: float, repeat: int, log: Callable[[str], None]) -> list[Result]:
    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset(preset)).eval()
    args = (student, Path("."), "bench", None, torch.device("cpu"))
    fp32, bf16 = OFAModel(*args, precision="fp32"), OFAModel(*args, precision="bf16")
    g = torch.Generator().manual_seed(0)
    n = int(seconds * 16000)
    audio = torch.randn(batch, n, generator=g) * 0.1
    lengths = torch.tensor([n - (n // (4 * batch)) * i for i in range(batch)])  # unequal lengths: padding too
    with torch.inference_mode():
        _, frames, alpha = student.front(audio, lengths)
        cal = build_calibration((lengths.double() / 16000).tolist(), AlphaStats.cat([alpha_stats(alpha, frames)]))
    audio_s = float(lengths.sum()) / 16000
    speed: dict[tuple[str, int], float] = {}
    ratio: dict[int, RatioEstimate] = {}
    for period in (20, 90):
        lam = 0.0 if period == 20 else cal.lam_for(float(period))
        # interleaved rounds: fp32 and bf16 share each round's moment
        times = side_by_side({name: (lambda m=model: m.encode_batch(audio, lengths, lam))
                              for name, model in (("fp32", fp32), ("bf16", bf16))}, repeat, warmup=True)
        for name in times:
            speed[name, period] = audio_s / statistics.median(times[name])
        ratio[period] = timing_ratio(times["fp32"], times["bf16"], paired=True)
        log(f"extract @ {period} ms (lambda {lam:.3f}): fp32 {speed['fp32', period]:.1f} audio-s/s, "
            f"bf16 {speed['bf16', period]:.1f} audio-s/s (medians of {repeat} interleaved rounds), ratio "
            f"{ratio[period].value:.2f}x [{ratio[period].low:.2f}, {ratio[period].high:.2f}]")

    same = total = 0
    worst = 1.0
    front32, front16 = fp32.encode_front(audio, lengths), bf16.encode_front(audio, lengths)
    modes: list[tuple[str, dict]] = [(f"lambda {lam:g}", {"lam": lam}) for lam in LAMBDAS]
    modes.append(("exact 90 ms", {"exact_period_ms": 90.0}))
    for label, kwargs in modes:
        ref, got = fp32.encode_back(front32, lengths, **kwargs), bf16.encode_back(front16, lengths, **kwargs)
        mode_same = sum(r.features.shape == o.features.shape for r, o in zip(ref, got))
        cos = min(float(torch.nn.functional.cosine_similarity(r.features, o.features, dim=-1).min())
                  for r, o in zip(ref, got) if r.features.shape == o.features.shape and len(r.features))
        same, total, worst = same + mode_same, total + len(ref), min(worst, cos)
        log(f"agreement at {label}: {mode_same}/{len(ref)} identical frame counts, min cosine {cos:.5f}")
    what = f"{preset}, {batch} x {seconds:g} s"
    return [
        at_least("precision", "precision.extract_20", f"extract 20 ms, bf16 / fp32 speed ({what})",
                 ratio[20].value, 2.0).with_interval(ratio[20]),
        at_least("precision", "precision.extract_90", "extract 90 ms, bf16 / fp32 speed",
                 ratio[90].value, 2.0).with_interval(ratio[90]),
        info("precision", "precision.speed_bf16_20", "bf16 extraction @ 20 ms", speed["bf16", 20], "audio-s/s"),
        info("precision", "precision.speed_bf16_90", "bf16 extraction @ 90 ms", speed["bf16", 90], "audio-s/s"),
        at_least("precision", "precision.same_lengths", f"identical frame counts, {total} utterance-lambdas",
                 100.0 * same / total, 100.0, unit="%"),
        at_least("precision", "precision.min_cosine", "min cosine bf16 vs fp32, every frame", worst, 0.999, unit=""),
    ]


def pretraining(preset: str, steps: int, batch: int, seconds: float, log: Callable[[str], None]) -> list[Result]:
    # the same step as benchmarks/bench_pretrain.py, the three runs interleaved step by step
    from bench_pretrain import make_batches, make_stepper, side_by_side

    from ofactl.pretrain_config import PretrainConfig
    from ofactl.train import step_lambda

    batches = make_batches(steps, batch, seconds)
    lams = [step_lambda(PretrainConfig(seed=0), s) for s in range(steps)]
    warmup = 1
    timed = side_by_side({"fp32": (make_stepper(preset, "fp32"), lams), "bf16": (make_stepper(preset, "bf16"), lams),
                          "both": (make_stepper(preset, "bf16", teacher_precision="bf16"), lams)}, batches, warmup)
    t32, t16, both = (statistics.mean(timed[name][0]) for name in ("fp32", "bf16", "both"))
    r16 = timing_ratio(timed["bf16"][0], timed["fp32"][0], paired=True, statistic="mean")
    r_both = timing_ratio(timed["both"][0], timed["fp32"][0], paired=True, statistic="mean")
    log(f"pretraining step ({preset}, {batch} x {seconds:g} s, means of {steps - warmup} interleaved steps): fp32 "
        f"{1e3 * t32:.0f} ms; bf16 student, fp32 teacher (the default) {1e3 * t16:.0f} ms, ratio {r16.value:.2f}x "
        f"[{r16.low:.2f}, {r16.high:.2f}]; bf16 student and teacher (teacher_precision: bf16) {1e3 * both:.0f} ms, "
        f"ratio {r_both.value:.2f}x [{r_both.low:.2f}, {r_both.high:.2f}]")
    cosine = teacher_agreement(preset, batches[0])
    log(f"teacher targets in bf16 against fp32 ({preset} teacher, its target layers, every valid frame): "
        f"min cosine {cosine:.5f}")
    return [
        at_most("precision", "precision.pretrain_step", f"pretraining step, bf16 / fp32 ({preset}, {batch} x "
                f"{seconds:g} s)", r16.value, 0.6).with_interval(r16),
        info("precision", "precision.pretrain_ms_bf16", "bf16 pretraining step", 1e3 * t16, "ms"),
        at_most("precision", "precision.pretrain_step_teacher_bf16", "pretraining step, bf16 student and teacher / "
                "fp32 (teacher_precision: bf16)", r_both.value, 0.6).with_interval(r_both),
        at_least("precision", "precision.teacher_cosine", "min cosine of bf16 teacher targets vs fp32", cosine, 0.999,
                 unit=""),
    ]


def teacher_agreement(preset: str, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    """The smallest cosine between a teacher's target layers run in bf16 and in fp32, over every valid frame."""
    from bench_pretrain import make_teacher

    from ofactl.layers import valid_mask
    from ofactl.precision import autocast

    torch.manual_seed(0)
    teacher = make_teacher(preset).eval()
    layers = list(StudentConfig.preset(preset).target_layers)
    audio, lengths = batch
    with torch.no_grad():
        ref = teacher(audio, lengths, layers=layers)
        with autocast(torch.device("cpu"), "bf16"):
            half = teacher(audio, lengths, layers=layers)
    mask = valid_mask(ref.lengths, ref.hidden_states[layers[0]].shape[1])
    return min(float(torch.nn.functional.cosine_similarity(ref.hidden_states[i][mask],
                                                           half.hidden_states[i].float()[mask], dim=-1).min())
               for i in layers)


def measure(quick: bool = False, preset: str = "distilhubert", batch: int | None = None, seconds: float | None = None,
            steps: int | None = None, log: Callable[[str], None] | None = None) -> list[Result]:
    """Side-by-side bf16 / fp32 ratios (see the module docstring); ``quick`` uses 2 x 4 s and fewer steps."""
    log = log or (lambda line: None)
    flags = ", ".join(sorted(cpu_bf16_flags())) or "none (bf16 is emulated)"
    log(f"# bf16 vs fp32; {platform.machine()}, CPU bf16 flags: {flags}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads")
    batch = batch or (2 if quick else 8)
    seconds = seconds or (4.0 if quick else 10.0)
    results = extraction(preset, batch, seconds, 2 if quick else 5, log)
    results += pretraining(preset, steps or (3 if quick else 5), batch, min(seconds, 4.0), log)
    return results


def main() -> None:
    keep_freed_memory()  # as `ofactl extract` does (benchmarks/common.py says why)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for r in measure(quick=args.quick, log=print):
        print(r)


if __name__ == "__main__":
    main()
