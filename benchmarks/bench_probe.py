"""Probes at scale: peak memory and epoch time as the features grow; streaming against in-memory; sweep fan-out.

1. Synthetic features (random float16, 768 dims, utterances of 2-15 s at
   20 ms, no model) are written straight into the cache layout at 1x, 4x
   and 16x a base size (default 1 GB of features; ``--quick``: 0.25 GB).  At
   each size a fresh process trains a SID-style probe (mean-pooling head,
   100 classes) for one epoch on them, streaming from disk, and reports its
   peak RSS and the seconds of the epoch (train pass and a small dev pass).
   At 1x a second process loads every feature into memory first and trains
   the same epoch from there: the streaming/in-memory ratio is measured side
   by side.  Goals: peak RSS at 16x <= 1.3x the RSS at 1x; streaming epoch
   <= 1.2x the in-memory epoch.
2. A 2-period x 2-learning-rate sweep of a tiny random model on a synthetic
   SID corpus (espeak-ng), features cached beforehand, with ``--jobs 1``
   (this process) and ``--jobs 2`` (two local processes).  Goal: jobs 2 <=
   0.65x the time of jobs 1 on 2 cores.  Each job trains 1000 epochs (about
   7 s): a worker process costs about 2.5 s to start (torch import, model
   load, the first read of the features), so jobs much shorter than that
   cannot halve the time; real probe jobs take minutes to hours.

Peak RSS is the process's high-water mark (``ru_maxrss``) and does not count
the page cache.  The numbers are meaningful only on a quiet machine.

Run: python benchmarks/bench_probe.py [--quick] [--base-gb G] [--dir DIR] [--no-sweep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from ofactl import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Result, at_most, info  # noqa: E402

DIM = 768
CLASSES = 100
SCALES = (1, 4, 16)


# ----------------------------------------------------------------------------- synthetic features


def write_features(path: Path, total_bytes: float, dim: int = DIM, seed: int = 0) -> int:
    """A complete features file of about ``total_bytes`` of float16 features; returns its utterances."""
    import h5py
    import numpy as np

    from ofactl.features import FORMAT, FORMAT_VERSION

    rng = np.random.default_rng(seed)
    block = rng.standard_normal((20000, dim)).astype(np.float16)  # slices of it: no generation cost per byte
    path.parent.mkdir(parents=True, exist_ok=True)
    frames_left = int(total_bytes / (dim * 2))
    n, total_frames = 0, 0
    with h5py.File(path, "w", libver=("v108", "v110")) as f:
        while frames_left > 0:
            frames = min(int(rng.integers(100, 750)), frames_left)  # 2-15 s at 20 ms
            start = int(rng.integers(0, block.shape[0] - frames))
            g = f.create_group(f"spk{n % CLASSES:03d}/utt{n:07d}")
            g.create_dataset("features", data=block[start:start + frames])
            g.create_dataset("frame_times_s", data=(np.arange(frames) + 0.5) * 0.02)
            g.attrs["duration_s"] = frames * 0.02
            g.attrs["lambda"] = 0.0
            frames_left -= frames
            total_frames += frames
            n += 1
        f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "layer": 12,
                        "lambda": 0.0, "model_sha256": "0" * 64, "n_utterances": n, "total_frames": total_frames,
                        "total_duration_s": total_frames * 0.02, "measured_period_ms": 20.0, "feature_dim": dim,
                        "dtype": "float16", "skipped": "[]", "n_skipped": 0})
    return n


def _child(train: Path, dev: Path, mode: str) -> dict:
    """One probe epoch in this process (run as a fresh process per measurement)."""
    import torch

    from ofactl.stream import Stored, load, stored_lengths
    from ofactl.tasks import get_task
    from ofactl.tasks.base import Example
    from ofactl.tasks.loop import Standardize, fit

    task = get_task("sid")
    vocab = [[f"{i:03d}" for i in range(CLASSES)]]

    def examples(path: Path) -> list:
        return [Example(u, Stored(str(path), u), n, (int(u[3:6]),)) for u, (n, _) in sorted(stored_lengths(path).items())]

    t0 = time.perf_counter()
    train_ex, dev_ex = examples(train), examples(dev)
    if mode == "memory":
        train_ex = [Example(e.id, load(e.inputs), e.n_frames, e.target) for e in train_ex]
        dev_ex = [Example(e.id, load(e.inputs), e.n_frames, e.target) for e in dev_ex]
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    norm = Standardize.fit(e.inputs for e in train_ex)
    t_norm = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit(task, train_ex, dev_ex, vocab, DIM, lr=1e-3, seed=0, max_epochs=1, patience=1, upstream=norm)
    t_epoch = time.perf_counter() - t0
    return {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "epoch_s": t_epoch, "standardize_s": t_norm, "load_s": t_load, "utterances": len(train_ex),
            "frames": sum(e.n_frames for e in train_ex), "threads": torch.get_num_threads()}


def _run_child(train: Path, dev: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(train), str(dev)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"probe child ({mode}) failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_memory(base_gb: float, scales=SCALES, root: Path | None = None,
                   log: Callable[[str], None] | None = None) -> list[Result]:
    log = log or (lambda line: None)
    results: list[Result] = []
    own = root is None
    root = Path(tempfile.mkdtemp(prefix="bench_probe_")) if own else Path(root)
    try:
        dev = root / "dev.h5"
        write_features(dev, 0.02 * base_gb * 2**30, seed=1)
        log(f"{'size':>5} {'GB':>6} {'utts':>7} {'mode':>7} {'peak RSS MB':>12} {'worker MB':>10} {'s/epoch':>8} "
            f"{'std. s':>7}")
        rss = {}
        for k in scales:
            train = root / f"train-{k}x.h5"
            t0 = time.perf_counter()
            write_features(train, k * base_gb * 2**30)
            written = time.perf_counter() - t0
            modes = ("stream", "memory") if k == scales[0] else ("stream",)
            got = {mode: _run_child(train, dev, mode) for mode in modes}
            for mode, r in got.items():
                log(f"{k:>4}x {train.stat().st_size / 2**30:6.2f} {r['utterances']:7d} {mode:>7} {r['rss_mb']:12.0f} "
                    f"{r['worker_rss_mb']:10.0f} {r['epoch_s']:8.1f} {r['standardize_s']:7.1f}")
            rss[k] = got["stream"]["rss_mb"]
            results.append(info("probe", f"probe.rss_mb_{k}x", f"peak RSS, streaming, {k}x ({k * base_gb:g} GB)",
                                rss[k], "MB"))
            results.append(info("probe", f"probe.epoch_s_{k}x", f"s/epoch, streaming, {k}x", got["stream"]["epoch_s"],
                                "s"))
            if "memory" in got:
                results.append(info("probe", "probe.rss_mb_memory_1x", "peak RSS, in memory, 1x",
                                    got["memory"]["rss_mb"], "MB"))
                results.append(at_most("probe", "probe.stream_vs_memory_1x",
                                       "epoch, streaming / in memory, 1x (side by side)",
                                       got["stream"]["epoch_s"] / got["memory"]["epoch_s"], 1.2))
            log(f"      (written in {written:.0f} s)")
            train.unlink()
        top = scales[-1]
        results.append(at_most("probe", "probe.rss_growth", f"peak RSS {top}x / 1x", rss[top] / rss[scales[0]], 1.3))
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return results


# ----------------------------------------------------------------------------- sweep fan-out


def measure_sweep(log: Callable[[str], None] | None = None, epochs: int = 1000) -> list[Result]:
    """A 2-period x 2-lr sweep, features cached: ``--jobs 2`` (local processes) against ``--jobs 1``."""
    log = log or (lambda line: None)
    if shutil.which("espeak-ng") is None:
        log("sweep: espeak-ng is not installed; skipped")
        return []
    import torch

    from ofactl.checkpoint import save_model
    from ofactl.testing.synth import synthesize_corpus
    from ofactl.launch import Inline, LocalPool
    from ofactl.model import OFAStudent, StudentConfig
    from ofactl.sweep import run_sweep

    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    try:
        synthesize_corpus(root / "corpus", speakers=8, utterances=240, seed=0)
        torch.manual_seed(0)
        model = save_model(root / "model", OFAStudent(StudentConfig.preset("tiny")))
        kw = dict(lambdas=[0.5, 1.0], lrs=[1e-3, 3e-3], max_epochs=epochs, patience=epochs,
                  features_dir=root / "features")
        data = root / "corpus" / "VoxCeleb1"
        run_sweep("sid", data, load_model(model), results=root / "warm.csv", max_epochs=1, patience=1, lambdas=[0.5, 1.0],
                  lrs=[1e-3], features_dir=root / "features")  # extracts (and caches) the features
        times = {}
        for jobs, launcher in ((1, Inline()), (2, LocalPool(2))):
            t0 = time.perf_counter()
            summary = run_sweep("sid", data, load_model(model), results=root / f"jobs{jobs}.csv", launcher=launcher, **kw)
            times[jobs] = time.perf_counter() - t0
            if summary.failed:
                raise RuntimeError(f"sweep failed: {summary.failed}")
            log(f"sweep --jobs {jobs}: {times[jobs]:.1f} s ({len(summary.chosen)} points, 2 lrs each, {epochs} epochs"
                f"{f'; {times[1] / 4:.1f} s per job in this process' if jobs == 1 else ''})")
        return [info("probe", "probe.sweep_s_jobs1", "2x2 sweep, --jobs 1", times[1], "s"),
                info("probe", "probe.sweep_s_jobs2", "2x2 sweep, --jobs 2", times[2], "s"),
                at_most("probe", "probe.sweep_jobs2_vs_1", "2x2 sweep time, --jobs 2 / --jobs 1 (side by side)",
                        times[2] / times[1], 0.65)]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(quick: bool = False, base_gb: float | None = None, scales=SCALES, sweep: bool = True,
            sweep_epochs: int | None = None, root: Path | None = None,
            log: Callable[[str], None] | None = None) -> list[Result]:
    """Both parts; ``quick`` uses a 0.25 GB base and a shorter sweep."""
    base = base_gb if base_gb is not None else (0.25 if quick else 1.0)
    results = measure_memory(base, scales, root, log)
    if sweep:
        results += measure_sweep(log, epochs=sweep_epochs or (400 if quick else 1000))
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(_child(Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.25 GB base, shorter sweep")
    parser.add_argument("--base-gb", type=float, default=None, help="feature bytes at 1x (default 1 GB)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the features (default: a temp dir)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the sweep fan-out measurement")
    args = parser.parse_args()
    print("# measure on a quiet machine: nothing else running")
    results = measure(args.quick, args.base_gb, sweep=not args.no_sweep, root=args.dir, log=print)
    for r in results:
        met = "" if r.met is None else ("  goal " + r.goal + (" met" if r.met else " MISSED"))
        value = f"{r.value:.3f}x" if r.unit == "x" else f"{r.value:.1f} {r.unit}"
        print(f"{r.quantity}: {value}{met}")


if __name__ == "__main__":
    main()
