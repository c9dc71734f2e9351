"""The entry point: synthesize_corpus builds every layout in a hidden folder and moves it into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ofactl.errors import OfactlError
from ofactl.progress import Progress
from ofactl.testing.synth.audio import _espeak_version, _find_espeak, _render_all
from ofactl.testing.synth.common import (
    _MAX_SPEAKERS,
    _MAX_UTTERANCES,
    _MIN_SPEAKERS,
    DONE_FILE,
    FORMAT_VERSION,
    LAYOUT_ROOTS,
    SAMPLE_RATE,
    _Sizes,
)
from ofactl.testing.synth.metadata import _write_metadata
from ofactl.testing.synth.plan import _plan

# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class SynthReport:
    """What :func:`synthesize_corpus` wrote.

    Attributes:
        out_dir: the directory holding every layout.
        librispeech: ``out_dir/LibriSpeech``.
        speech_commands: ``out_dir/speech_commands_v0.01``.
        speech_commands_test: ``out_dir/speech_commands_test_set_v0.01``.
        voxceleb1: ``out_dir/VoxCeleb1``.
        fluent_commands: ``out_dir/fluent_speech_commands_dataset``.
        quesst14: ``out_dir/quesst14Database``.
        snips: ``out_dir/SNIPS`` (Audio SNIPS).
        covost2: ``out_dir/CoVoST2`` (CoVoST 2 En->De).
        counts: audio files per layout (keys of :data:`LAYOUT_ROOTS`, plus
            ``background_noise``).
        n_files: audio files in all.
        total_hours: hours of audio in all (background noise included).
        seconds: wall-clock seconds the build took (of the original build when
            ``reused``).
        seed, speakers, utterances: the arguments.
        reused: True when a finished corpus with these arguments was found and
            nothing was written.
    """

    out_dir: Path
    librispeech: Path
    speech_commands: Path
    speech_commands_test: Path
    voxceleb1: Path
    fluent_commands: Path
    quesst14: Path
    snips: Path
    covost2: Path
    counts: dict[str, int]
    n_files: int
    total_hours: float
    seconds: float
    seed: int
    speakers: int
    utterances: int
    reused: bool = False

    @classmethod
    def _make(cls, out_dir: Path, record: dict, reused: bool) -> SynthReport:
        roots = {key: out_dir / name for key, name in LAYOUT_ROOTS.items()}
        return cls(
            out_dir=out_dir,
            **roots,
            counts=dict(record["counts"]),
            n_files=int(record["n_files"]),
            total_hours=float(record["total_hours"]),
            seconds=float(record["seconds"]),
            seed=int(record["seed"]),
            speakers=int(record["speakers"]),
            utterances=int(record["utterances"]),
            reused=reused,
        )


# --------------------------------------------------------------------------- entry point


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``directory`` (POSIX; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _check_int(name: str, value: object, low: int, high: int, hint: str | None = None) -> int:
    hint = hint or f"pass a whole number from {low} to {high}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OfactlError(f"{name} must be a whole number, got {value!r}", hint=hint)
    if not low <= int(value) <= high:
        raise OfactlError(f"{name} must be between {low} and {high}, got {value}", hint=hint)
    return int(value)


def _read_done(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def synthesize_corpus(
    out_dir: str | os.PathLike[str],
    speakers: int = 8,
    utterances: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    held_out_speakers: int | None = None,
    dev_utterances: int | None = None,
    test_utterances: int | None = None,
) -> SynthReport:
    """Speak a small synthetic corpus into ``out_dir`` in the public dataset layouts.

    Writes LibriSpeech (train-clean-100 / dev-clean / test-clean, with our
    ``*.phones.txt``), Speech Commands v0.01 and its test set, VoxCeleb1 (for
    identification), Fluent Speech Commands, QUESST 2014 (English) and
    Audio SNIPS (slot filling) and CoVoST 2 En->De; see the module docstring for
    the exact paths and the rule that sizes each layout.  Everything is built
    in a hidden folder inside ``out_dir`` and moved into place at the end;
    ``out_dir/.done`` is written last.  Calling again with the same arguments
    returns at once (``reused=True``).

    Args:
        out_dir: directory to write into (created if needed).
        speakers: number of synthetic speakers (3 to 200): dev and test get
            ``max(1, round(speakers / 10))`` each, train the rest.
        utterances: number of LibriSpeech utterances (at least ``speakers``).
        seed: everything (texts, voices, noise, ids) is drawn from it; the same
            seed gives byte-identical files on the same espeak-ng.
        progress: called as ``progress(done, total, "")`` from the calling thread
            as audio files are written (first with ``done=0``).
        overwrite: replace a corpus built with other arguments, or layout
            folders not written by this function.
        workers: espeak-ng processes run at once (default: ``min(4, max(2, cpus))``).
        held_out_speakers: speakers for dev and for test, each (default
            ``max(1, round(speakers / 10))``).
        dev_utterances, test_utterances: make the dev / test split of
            LibriSpeech, Speech Commands (dev; its separate test set for test),
            VoxCeleb1 and Fluent Speech Commands at least this large, by giving
            each held-out speaker (every speaker for VoxCeleb1, which is
            closed-set) as many utterances as it takes, and CoVoST 2's dev / test
            that many pairs; the training splits keep their sizes.  Default: the sizes of the module docstring.

    Returns:
        A :class:`SynthReport` with the layout roots, counts, hours and seconds.

    Raises:
        OfactlError: bad arguments, espeak-ng missing or failing, or ``out_dir``
            holding another corpus (or other layout folders) without ``overwrite``.
    """
    t0 = time.perf_counter()
    speakers = _check_int(
        "speakers", speakers, _MIN_SPEAKERS, _MAX_SPEAKERS, hint="train, dev and test need a speaker each: 3 or more"
    )
    utterances = _check_int(
        "utterances", utterances, speakers, _MAX_UTTERANCES, hint="at least one LibriSpeech utterance per speaker"
    )
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    if held_out_speakers is not None:
        held_out_speakers = _check_int("held_out_speakers", held_out_speakers, 1, (speakers - 1) // 2,
                                       hint="train needs at least one speaker besides dev and test")
    for name, value in (("dev_utterances", dev_utterances), ("test_utterances", test_utterances)):
        if value is not None:
            _check_int(name, value, 1, _MAX_UTTERANCES)
    sizes = _Sizes(held_out_speakers, dev_utterances, test_utterances)
    if workers is None:
        workers = min(4, max(2, os.cpu_count() or 1))
    workers = _check_int("workers", workers, 1, 64)
    out = Path(out_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise OfactlError(f"{out} exists and is not a directory", hint="pass a directory for the corpus")
    wanted = {"format_version": FORMAT_VERSION, "seed": seed, "speakers": speakers, "utterances": utterances,
              "held_out_speakers": held_out_speakers, "dev_utterances": dev_utterances,
              "test_utterances": test_utterances}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OfactlError(f"cannot create {out}: {err}", hint="choose a writable directory") from err

    with _locked(out):
        done_path = out / DONE_FILE
        record = _read_done(done_path) if done_path.is_file() else None
        ours = record is not None
        complete = ours and all((out / name).is_dir() for name in LAYOUT_ROOTS.values())
        if record is not None and not overwrite:
            if {k: record.get(k) for k in wanted} == wanted:
                if complete:
                    return SynthReport._make(out, record, reused=True)
            else:
                keys = [k for k in wanted if record.get(k) != wanted[k]]
                was = ", ".join(f"{k}={record.get(k)}" for k in keys)
                now = ", ".join(f"{k}={wanted[k]}" for k in keys)
                raise OfactlError(
                    f"{out} already holds a synthetic corpus built with {was}; asked for {now}",
                    hint="use another directory, or overwrite it (overwrite=True, `--overwrite`)",
                )
        existing = [name for name in LAYOUT_ROOTS.values() if (out / name).exists()]
        if existing and not ours and not overwrite:
            raise OfactlError(
                f"{out} already has {', '.join(existing)}, not written by `ofactl data synth`",
                hint="use an empty directory, or overwrite them (overwrite=True, `--overwrite`)",
            )

        exe = _find_espeak()
        version = _espeak_version(exe)
        plan = _plan(speakers, utterances, seed, sizes)
        for stale in out.glob(".synth-tmp-*"):  # left by a killed run; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        stage = Path(tempfile.mkdtemp(prefix=".synth-tmp-", dir=out))
        try:
            results = _render_all(plan, exe, stage, seed, progress, workers)
            _write_metadata(plan, results, stage)
            counts: dict[str, int] = {}
            for job in plan.jobs:
                counts[job.layout] = counts.get(job.layout, 0) + 1
            samples = sum(n for n, _ in results)
            done_path.unlink(missing_ok=True)
            for name in LAYOUT_ROOTS.values():
                target = out / name
                if target.is_symlink() or target.is_file():
                    target.unlink()
                elif target.exists():
                    shutil.rmtree(target)
                os.replace(stage / name, target)
            record = {
                **wanted,
                "espeak_ng": version,
                "counts": counts,
                "n_files": len(plan.jobs),
                "total_hours": round(samples / SAMPLE_RATE / 3600, 6),
                "seconds": round(time.perf_counter() - t0, 3),
                "voices": {s.index: {"role": s.role, **s.voice.__dict__} for s in plan.speakers},
            }
            tmp_done = stage / DONE_FILE
            tmp_done.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp_done, done_path)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return SynthReport._make(out, record, reused=False)
