"""Extraction with freed memory kept in the process (what `ofactl extract` does) against glibc's default.

glibc returns every freed allocation above its mmap threshold to the kernel,
so each batch page-faults the CNN's large tensors in again;
``ofactl.malloc_tuning.keep_freed_memory`` keeps them (the command line does
so for ``extract`` and ``calibrate``).  The setting is process-wide and
cannot be undone, so each measurement is a child process: per round one child
of each kind (interleaved), each timing one batch after a warm-up batch, in
fp32 and in bf16.  Reported: the speed-up (default / kept time, median of the
rounds with a 95% bootstrap interval), the minor page faults per batch and
the peak resident memory of both.

Run: python benchmarks/bench_malloc.py [--quick]
(or all benchmarks in one table: python benchmarks/run_all.py --only malloc)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable

from common import Result, info, timing_ratio  # benchmarks/common.py (the script's directory is on sys.path)

CHILD = """
import json, resource, sys, time
from pathlib import Path
import torch
from ofactl.inference import OFAModel
from ofactl.malloc_tuning import keep_freed_memory
from ofactl.model import OFAStudent, StudentConfig
mode, preset, precision, batch, seconds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
if mode == "kept":
    assert keep_freed_memory(), "mallopt refused"
torch.manual_seed(0)
model = OFAModel(OFAStudent(StudentConfig.preset(preset)).eval(), Path("."), "bench", None, torch.device("cpu"),
                 precision=precision)
n = int(seconds * 16000)
audio, lengths = torch.randn(batch, n) * 0.1, torch.full((batch,), n)
model.encode_batch(audio, lengths, 1.0)  # warm-up
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t0 = time.perf_counter()
model.encode_batch(audio, lengths, 1.0)
seconds = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
# this process's own high-water mark (ru_maxrss would carry the parent's over from the fork)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "faults": usage.ru_minflt - faults, "peak_mb": peak_kb / 1024}))
"""


def _child(mode: str, preset: str, precision: str, batch: int, seconds: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, preset, precision, str(batch), str(seconds)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(quick: bool = False, preset: str = "distilhubert", batch: int | None = None,
            seconds: float | None = None, rounds: int | None = None,
            log: Callable[[str], None] | None = None) -> list[Result]:
    """Default / kept extraction time per precision (see the module docstring)."""
    log = log or (lambda line: None)
    batch = batch or (4 if quick else 8)
    seconds = seconds or 10.0
    rounds = rounds or (2 if quick else 3)
    log(f"# extraction with freed memory kept vs glibc's default ({preset}, {batch} x {seconds:g} s, lambda 1); "
        f"one child process per measurement, {rounds} interleaved rounds")
    log(f"{'precision':>9} {'default s':>10} {'kept s':>8} {'speed-up':>22} {'faults default':>15} "
        f"{'faults kept':>12} {'peak MB default':>16} {'peak MB kept':>13}")
    results = []
    for precision in ("fp32", "bf16"):
        runs: dict[str, list[dict]] = {"default": [], "kept": []}
        for _ in range(rounds):
            for mode in runs:
                runs[mode].append(_child(mode, preset, precision, batch, seconds))
        times = {mode: [r["seconds"] for r in rs] for mode, rs in runs.items()}
        speedup = timing_ratio(times["default"], times["kept"], paired=True)
        med = {mode: {key: statistics.median(r[key] for r in rs) for key in ("seconds", "faults", "peak_mb")}
               for mode, rs in runs.items()}
        log(f"{precision:>9} {med['default']['seconds']:10.2f} {med['kept']['seconds']:8.2f} "
            f"{f'{speedup.value:.2f}x [{speedup.low:.2f}, {speedup.high:.2f}]':>22} "
            f"{med['default']['faults']:15.0f} {med['kept']['faults']:12.0f} {med['default']['peak_mb']:16.0f} "
            f"{med['kept']['peak_mb']:13.0f}")
        results += [
            info("malloc", f"malloc.speedup_{precision}", f"extraction, freed memory kept / default speed, "
                 f"{precision} ({preset}, {batch} x {seconds:g} s)", speedup.value, "x").with_interval(speedup),
            info("malloc", f"malloc.faults_default_{precision}", f"minor page faults per batch, default, {precision}",
                 med["default"]["faults"], ""),
            info("malloc", f"malloc.faults_kept_{precision}", f"minor page faults per batch, kept, {precision}",
                 med["kept"]["faults"], ""),
            info("malloc", f"malloc.peak_{precision}", f"peak RSS, kept / default, {precision}",
                 med["kept"]["peak_mb"] / med["default"]["peak_mb"], "x"),
        ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    measure(quick=args.quick, log=print)


if __name__ == "__main__":
    main()
