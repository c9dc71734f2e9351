"""All benchmarks in one run, one table: CIF, extraction, pretraining, probes at scale.

Runs ``measure()`` of bench_cif.py, bench_extract.py, bench_pretrain.py, bench_probe.py, bench_precision.py,
bench_st.py and bench_malloc.py (each
still runnable on its own, with its detailed table) and prints one table,
benchmark | quantity | measured | goal | met, under a line naming the machine.
Ratios ("x") are measured side by side in one run, so they hold on a noisy
machine where absolute times do not; where a benchmark measures how sure a
ratio is, the table gives its 95% interval and the n of rounds behind it.  A missed goal is marked in the table,
never an error: the exit status is 0 whenever the benchmarks ran.

Run: python benchmarks/run_all.py [--quick] [--long-minutes N] [--only cif,extract,pretrain,probe,precision,st,malloc]
                                  [--threads N] [--json FILE] [--verbose]
(``make bench ARGS=--quick``).  ``--tiny`` runs the smallest sizes, for tests:
its numbers only show that everything runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench_*.py modules and common.py

import bench_cif  # noqa: E402
import bench_extract  # noqa: E402
import bench_precision  # noqa: E402
import bench_pretrain  # noqa: E402
import bench_probe  # noqa: E402
import bench_malloc  # noqa: E402
import bench_st  # noqa: E402
from common import Result, format_interval, keep_freed_memory  # noqa: E402

BENCHMARKS = {"cif": bench_cif, "extract": bench_extract, "pretrain": bench_pretrain, "probe": bench_probe,
              "precision": bench_precision, "st": bench_st, "malloc": bench_malloc}

# --tiny: the smallest sizes that run every code path (tests; numbers not meaningful)
TINY = {
    "cif": {"shapes": [(2, 120, 64)], "repeat": 1, "n_utt": 8},
    "extract": {"preset": "tiny", "batches": 1, "batch": 2, "seconds": 1.0, "repeat": 1},
    "pretrain": {"preset": "tiny", "steps": 4, "batch": 2, "seconds": 1.0},
    "probe": {"base_gb": 0.004, "scales": (1, 2), "sweep": False},
    "precision": {"preset": "tiny", "batch": 2, "seconds": 1.0, "steps": 2},
    "st": {"batch": 1, "steps": 6, "seconds": 1.0, "repeat": 1},
    "malloc": {"preset": "tiny", "batch": 1, "seconds": 1.0, "rounds": 1},
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the numbers were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": usable,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(m: dict) -> str:
    return (f"# machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, torch {m['torch']}, "
            f"{m['threads']} threads, python {m['python']}; {m['date']}")


def table(results: list[Result]) -> str:
    """The one table, as Markdown (pads columns so it also reads in a terminal)."""
    rows = [("benchmark", "quantity", "measured", "goal", "met")]
    for r in results:
        met = "-" if r.met is None else "yes" if r.met else "NO"
        rows.append((r.benchmark, r.quantity, format_interval(r), r.goal or "-", met))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    right = (False, False, True, False, False)

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2) for w, r in zip(widths, right)) + "|"
    return "\n".join([line(rows[0]), sep, *(line(row) for row in rows[1:])])


def summary(results: list[Result]) -> str:
    goals = [r for r in results if r.met is not None]
    missed = [r for r in goals if not r.met]
    text = f"# {len(goals) - len(missed)} of {len(goals)} goals met"
    if missed:
        text += "; MISSED: " + "; ".join(f"{r.quantity} {format_interval(r)} (goal {r.goal})"
                                         for r in missed)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a fast pass: fewer shapes, batches and steps")
    size.add_argument("--tiny", action="store_true", help="smallest sizes (tests: checks that it runs, numbers "
                      "not meaningful)")
    parser.add_argument("--long-minutes", type=float, default=0.0,
                        help="extraction: also measure peak memory on one file of this many minutes")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="comma-separated subset of: " + ",".join(BENCHMARKS))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    parser.add_argument("--json", type=Path, help="also write machine, settings and results to this file")
    parser.add_argument("--verbose", action="store_true", help="also print each benchmark's detailed table")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as `ofactl extract` does (benchmarks/common.py says why)

    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown or not only:
        parser.error(f"--only: unknown benchmark(s) {','.join(unknown)}; choose from {','.join(BENCHMARKS)}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    m = machine()
    preset = "tiny" if args.tiny else "quick" if args.quick else "default"
    log = print if args.verbose else None
    results: list[Result] = []
    wall = {}
    for name in only:
        options = dict(TINY[name]) if args.tiny else {}
        if name == "extract":
            options["long_minutes"] = args.long_minutes
        print(f"# running {name} ({preset}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results += BENCHMARKS[name].measure(quick=args.quick, log=log, **options)
        wall[name] = time.perf_counter() - t0
        if args.verbose:
            print()

    print(machine_line(m))
    print(f"# settings: {preset} sizes; {', '.join(only)}"
          + (f", long audio {args.long_minutes:g} min" if args.long_minutes > 0 else "")
          + "; wall " + ", ".join(f"{name} {s:.0f} s" for name, s in wall.items()))
    print(table(results))
    print(summary(results))
    bad = [r.key for r in results if not math.isfinite(r.value)]
    if bad:
        print(f"# not finite: {', '.join(bad)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "settings": {"size": preset, "only": only,
                                                                    "long_minutes": args.long_minutes},
                                         "wall_s": wall, "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
