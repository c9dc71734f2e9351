"""Extraction benchmark: time per period against the CNN floor and a student without CIF; bytes per hour; long-audio memory.

Everything is measured side by side in one run on the same batches (10-s
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
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ofactl.calibrate import alpha_stats, build_calibration
from ofactl.features import FeatureWriter, Record
from ofactl.inference import OFAModel
from ofactl.layers import run_encoder
from ofactl.model import OFAStudent, StudentConfig

PERIODS_MS = (20, 40, 90, 160, 960)


def timed(fn, batches, repeat: int) -> float:
    """Best-of-``repeat`` total seconds over all batches."""
    fn(*batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for b in batches:
            fn(*b)
        best = min(best, time.perf_counter() - t0)
    return best


def long_audio_peak(preset: str, minutes: float, chunk_s: float) -> dict:
    """Run encode_long on ``minutes`` of audio in a child process; return its peak RSS."""
    code = f"""
import json, resource, time, torch
from ofactl.inference import OFAModel
from ofactl.model import OFAStudent, StudentConfig
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="distilhubert", choices=["distilhubert", "tiny"])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=0.0, help="also measure memory on this much audio")
    args = parser.parse_args()

    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset(args.preset)).eval()
    model = OFAModel(student, Path("."), "bench", None, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    n = int(args.seconds * 16000)
    batches = [(torch.randn(args.batch, n, generator=g) * 0.1, torch.full((args.batch,), n)) for _ in range(args.batches)]
    audio_s = args.seconds * args.batch * args.batches

    with torch.inference_mode():
        stats = []
        for audio, lengths in batches:
            _, frames, alpha = student.front(audio, lengths)
            stats.append(alpha_stats(alpha, frames))
        from ofactl.calibrate import AlphaStats

        cal = build_calibration([args.seconds] * args.batch * args.batches, AlphaStats.cat(stats))

        def cnn(audio, lengths):
            student.feature_extractor(audio, lengths)

        def no_cif(audio, lengths):
            feats, frames = student.feature_extractor(audio, lengths)
            run_encoder(student.encoder, feats, frames)

        def ofa(lam):
            def run(audio, lengths):
                model.encode_batch(audio, lengths, lam)
            return run

        print(f"# extraction, preset {args.preset}, {args.batches} batches of {args.batch} x {args.seconds:g} s; "
              f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
        t_cnn = timed(cnn, batches, args.repeat)
        t_plain = timed(no_cif, batches, args.repeat)
        print(f"{'run':<18} {'lambda':>7} {'period ms':>10} {'audio-s/s':>10} {'x CNN floor':>12} {'x no-CIF':>9} "
              f"{'MB/hour':>9}")
        print(f"{'CNN floor':<18} {'':>7} {'':>10} {audio_s / t_cnn:10.1f} {1.0:12.3f} {t_cnn / t_plain:9.3f} {'':>9}")
        print(f"{'no CIF @ 20 ms':<18} {'':>7} {20.0:10.1f} {audio_s / t_plain:10.1f} {t_plain / t_cnn:12.3f} "
              f"{1.0:9.3f} {'':>9}")
        sizes = {}
        for period in PERIODS_MS:
            lam = 0.0 if period == 20 else cal.lam_for(float(period))
            t = timed(ofa(lam), batches, args.repeat)
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
            print(f"{f'OFA @ {period} ms':<18} {lam:7.3f} {measured:10.1f} {audio_s / t:10.1f} {t / t_cnn:12.3f} "
                  f"{t / t_plain:9.3f} {sizes[period]:9.1f}")
        print(f"# goals: 90 ms <= 1.10x CNN floor; 20 ms <= 1.03x no CIF; 90 ms file <= 1/4 of 20 ms "
              f"(measured {sizes[90] / sizes[20]:.3f})")

    if args.long_minutes > 0:
        r = long_audio_peak(args.preset, args.long_minutes, 30.0)
        print(f"# long audio: {args.long_minutes:g} min in one file at lambda 1 -> {r['frames']} frames in "
              f"{r['seconds']:.1f} s; peak RSS {r['peak_mb']:.0f} MB (process before the run: {r['before_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
