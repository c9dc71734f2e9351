"""Extraction benchmark: time per period against the CNN floor and a student without CIF; bytes per hour; long-audio memory.

Everything is measured side by side in one run on the same batches, the runs
interleaved round by round (medians; the goal ratios with a 95% bootstrap
interval over the rounds; 10-s
utterances, batch 8 by default, the distilhubert preset with random weights:
compute does not depend on the weights, only the frame counts do, and lambda
is chosen per period from a calibration of this very model on these batches).

* CNN floor: the CNN front-end alone (what no compression can remove).
* no CIF @ 20 ms: CNN -> projection -> transformer (plain DistilHuBERT).
* OFA @ P: CNN -> alpha -> CIF at the lambda giving period P -> transformer.
* bytes/hour: an HDF5 file written by ofactl.features (float16) per hour of audio.
* long audio: peak resident memory of extracting one long file (a child process).

Goals (issue 5): at 90 ms the extraction <= 1.10x the CNN floor; at 20 ms CIF
costs <= 3% over no CIF; at 90 ms the file is <= 1/4 the size of 20 ms.

Run: python benchmarks/bench_extract.py [--preset distilhubert|tiny] [--batches N] [--long-minutes M]
(or all benchmarks in one table: python benchmarks/run_all.py)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ofactl.calibrate import alpha_stats, build_calibration
from ofactl.features import FeatureWriter, Record
from ofactl.inference import OFAModel
from ofactl.layers import run_encoder
from ofactl.model import OFAStudent, StudentConfig

from common import (  # benchmarks/common.py (the script's directory is on sys.path)
    Result, at_most, info, keep_freed_memory, side_by_side, timing_ratio,
)

PERIODS_MS = (20, 40, 90, 160, 960)


def _over(fn: Callable, batches) -> Callable[[], None]:
    """``fn`` over every batch, as one call."""
    def run() -> None:
        for batch in batches:
            fn(*batch)
    return run


def long_audio_peak(preset: str, minutes: float, chunk_s: float) -> dict:
    """Run encode_long on ``minutes`` of audio in a child process; return its peak RSS."""
    code = f"""
import json, resource, time, torch
from ofactl.inference import OFAModel
from ofactl.malloc_tuning import keep_freed_memory
from ofactl.model import OFAStudent, StudentConfig
keep_freed_memory()  # as `ofactl extract` does
torch.manual_seed(0)
m = OFAModel(OFAStudent(StudentConfig.preset({preset!r})).eval(), None, "x", None, torch.device("cpu"))
wave = torch.randn(int({minutes} * 60 * 16000)) * 0.1
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
out = m.encode_long(wave, 1.0, chunk_s={chunk_s})
print(json.dumps({{"frames": int(out.features.shape[0]), "seconds": time.perf_counter() - t0,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "before_mb": base / 1024}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(
    quick: bool = False,
    preset: str = "distilhubert",
    batches: int | None = None,
    batch: int = 8,
    seconds: float = 10.0,
    repeat: int = 4,
    long_minutes: float = 0.0,
    log: Callable[[str], None] | None = None,
) -> list[Result]:
    """Time extraction per period against the CNN floor and no CIF; ``log`` gets the detailed table's lines.

    ``quick`` uses one batch instead of three (unless ``batches`` is given).
    Results: the three goals of issue 5 as ratios, throughputs in audio-s/s,
    MB per hour at 20 and 90 ms, and with ``long_minutes`` the peak RSS of
    extracting one file that long (goal < 4 GB).
    """
    log = log or (lambda line: None)
    if batches is None:
        batches = 1 if quick else 3
    n_batches = batches
    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset(preset)).eval()
    model = OFAModel(student, Path("."), "bench", None, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n = int(seconds * 16000)
    batches = [(torch.randn(batch, n, generator=g) * 0.1, torch.full((batch,), n)) for _ in range(n_batches)]
    audio_s = seconds * batch * n_batches

    with torch.inference_mode():
        stats = []
        for audio, lengths in batches:
            _, frames, alpha = student.front(audio, lengths)
            stats.append(alpha_stats(alpha, frames))
        from ofactl.calibrate import AlphaStats

        cal = build_calibration([seconds] * batch * n_batches, AlphaStats.cat(stats))

        def cnn(audio, lengths):
            student.feature_extractor(audio, lengths)

        def no_cif(audio, lengths):
            feats, frames = student.feature_extractor(audio, lengths)
            run_encoder(student.encoder, feats, frames)

        def ofa(lam):
            def run(audio, lengths):
                model.encode_batch(audio, lengths, lam)
            return run

        log(f"# extraction, preset {preset}, {n_batches} batches of {batch} x {seconds:g} s; "
            f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; medians of "
            f"{repeat} interleaved rounds")
        lams = {period: 0.0 if period == 20 else cal.lam_for(float(period)) for period in PERIODS_MS}
        fns = {"cnn": cnn, "no_cif": no_cif, **{p: ofa(lam) for p, lam in lams.items()}}
        for fn in fns.values():
            fn(*batches[0])  # warm-up: kernel selection, allocator
        samples = side_by_side({name: _over(fn, batches) for name, fn in fns.items()}, repeat)
        t_cnn, t_plain = statistics.median(samples["cnn"]), statistics.median(samples["no_cif"])
        ratio_90 = timing_ratio(samples[90], samples["cnn"], paired=True)
        ratio_20 = timing_ratio(samples[20], samples["no_cif"], paired=True)
        log(f"{'run':<18} {'lambda':>7} {'period ms':>10} {'audio-s/s':>10} {'x CNN floor':>12} {'x no-CIF':>9} "
            f"{'MB/hour':>9}")
        log(f"{'CNN floor':<18} {'':>7} {'':>10} {audio_s / t_cnn:10.1f} {1.0:12.3f} {t_cnn / t_plain:9.3f} {'':>9}")
        log(f"{'no CIF @ 20 ms':<18} {'':>7} {20.0:10.1f} {audio_s / t_plain:10.1f} {t_plain / t_cnn:12.3f} "
            f"{1.0:9.3f} {'':>9}")
        sizes, times = {}, {}
        for period in PERIODS_MS:
            lam = lams[period]
            t = times[period] = statistics.median(samples[period])
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "f.h5"
                frames = 0
                with FeatureWriter(out, {"layer": 2, "lambda": lam, "model_sha256": "bench"}) as w:
                    for bi, (audio, lengths) in enumerate(batches):
                        enc = model.encode_batch(audio, lengths, lam)
                        frames += sum(e.features.shape[0] for e in enc)
                        w.write([Record(f"b{bi}u{i}", e.features, e.frame_times_s, e.duration_s, lam)
                                 for i, e in enumerate(enc)])
                sizes[period] = out.stat().st_size / (audio_s / 3600) / 2**20
            measured = 1000 * audio_s / frames
            log(f"{f'OFA @ {period} ms':<18} {lam:7.3f} {measured:10.1f} {audio_s / t:10.1f} {t / t_cnn:12.3f} "
                f"{t / t_plain:9.3f} {sizes[period]:9.1f}")
        log(f"# goals: 90 ms <= 1.10x CNN floor (measured {ratio_90.value:.3f} [{ratio_90.low:.3f}, "
            f"{ratio_90.high:.3f}]); 20 ms <= 1.03x no CIF ({ratio_20.value:.3f} [{ratio_20.low:.3f}, "
            f"{ratio_20.high:.3f}]); 90 ms file <= 1/4 of 20 ms ({sizes[90] / sizes[20]:.3f})")

    what = f"{preset}, {batch} x {seconds:g} s"
    results = [
        at_most("extract", "extract.ratio_90_cnn", f"extract 90 ms / CNN floor ({what})", ratio_90.value,
                1.10).with_interval(ratio_90),
        at_most("extract", "extract.ratio_20_nocif", "extract 20 ms, CIF / no CIF", ratio_20.value,
                1.03).with_interval(ratio_20),
        at_most("extract", "extract.size_ratio_90_20", "90 ms file / 20 ms file (float16)", sizes[90] / sizes[20], 0.25),
        info("extract", "extract.speed_cnn", "CNN floor throughput", audio_s / t_cnn, "audio-s/s"),
        info("extract", "extract.speed_nocif", "no CIF @ 20 ms throughput", audio_s / t_plain, "audio-s/s"),
        info("extract", "extract.speed_90", "OFA @ 90 ms throughput", audio_s / times[90], "audio-s/s"),
        info("extract", "extract.mb_hour_20", "feature file @ 20 ms", sizes[20], "MB/hour"),
        info("extract", "extract.mb_hour_90", "feature file @ 90 ms", sizes[90], "MB/hour"),
    ]

    if long_minutes > 0:
        r = long_audio_peak(preset, long_minutes, 30.0)
        log(f"# long audio: {long_minutes:g} min in one file at lambda 1 -> {r['frames']} frames in "
            f"{r['seconds']:.1f} s; peak RSS {r['peak_mb']:.0f} MB (process before the run: {r['before_mb']:.0f} MB)")
        results.append(Result("extract", f"one {long_minutes:g}-min file ({preset}, chunked): peak RSS",
                              r["peak_mb"], "MB", "< 4096 MB", r["peak_mb"] < 4096, "extract.long_peak_mb"))
        results.append(info("extract", "extract.long_speed", f"one {long_minutes:g}-min file: throughput",
                            long_minutes * 60 / r["seconds"], "audio-s/s"))
    return results


def main() -> None:
    keep_freed_memory()  # as `ofactl extract` does (benchmarks/common.py says why)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="distilhubert", choices=["distilhubert", "tiny"])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--long-minutes", type=float, default=0.0, help="also measure memory on this much audio")
    args = parser.parse_args()
    measure(preset=args.preset, batches=args.batches, batch=args.batch, seconds=args.seconds, repeat=args.repeat,
            long_minutes=args.long_minutes, log=print)


if __name__ == "__main__":
    main()
