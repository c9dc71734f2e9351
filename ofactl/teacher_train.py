"""Train a small HuBERT-shaped teacher on a corpus with phone labels (the demo's teacher).

ofactl distils a frozen teacher (HuBERT Base for real work).  Where no
pretrained teacher can be had, as on the CI machine or in the mini recipe, a
randomly initialised one makes the distillation targets noise.  This module
makes a small teacher that carries the two kinds of information the SUPERB
probes look for, in a few minutes on CPU:

* **phonetic**: a CTC phone recogniser over the last layer (index 0 is the
  blank), trained on the ``*.phones.txt`` labels of a LibriSpeech-layout
  corpus (the synthetic corpus writes them; real LibriSpeech has none);
* **speaker**: a speaker classifier on the mean of a middle layer's valid
  frames (``speaker_layer``, default ``num_layers // 2``) over the training
  speakers, with weight ``speaker_weight``.

The network is :class:`~ofactl.teacher.Teacher` (wav2vec2/HuBERT shapes,
default :meth:`~ofactl.teacher.TeacherConfig.tiny`) trained from scratch with
Adam, warm-up then linear decay, on length-bucketed batches of whole
utterances in a seeded order.  It is written as a torchaudio-keyed state dict
``teacher.pth`` with its config in the sidecar ``teacher.pth.json`` (the
format :func:`~ofactl.teacher.load_teacher` reads; the CTC head is stored as
torchaudio's ``aux`` layer and dropped on loading), the phone inventory in
``phones.txt`` and the training curve in ``train_log.csv``; every file is
written atomically.  A run is short, so it does not resume: run it again.

    >>> result = train_teacher("corpus/LibriSpeech", "exp/teacher", steps=800)
    >>> load_teacher(result.path)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ofactl.atomic import atomic_write, atomic_write_text
from ofactl.data.pipeline import iter_batches
from ofactl.data.problems import Problem
from ofactl.errors import OfactlError
from ofactl.layers import run_encoder, valid_mask
from ofactl.progress import Progress
from ofactl.teacher import Teacher, TeacherConfig

__all__ = ["TeacherTrainResult", "default_config", "phone_error_rate", "train_teacher"]

WEIGHTS_FILE = "teacher.pth"


@dataclass
class TeacherTrainResult:
    """What :func:`train_teacher` wrote and measured."""

    path: Path                      # the teacher file (``--teacher`` takes it)
    steps: int
    seconds: float
    phones: list[str]
    dev_per: float                  # greedy CTC phone error rate on the dev split (nan without one)
    dev_utterances: int
    train_utterances: int
    train_speakers: int
    first_loss: dict[str, float] = field(default_factory=dict)   # mean over the first 20 steps
    last_loss: dict[str, float] = field(default_factory=dict)    # mean over the last 20 steps
    problems: list[Problem] = field(default_factory=list)       # files that could not be read (left out)


class _Trainable(nn.Module):
    """The teacher network with its two training heads (the heads are not part of the teacher)."""

    def __init__(self, config: TeacherConfig, n_phones: int, n_speakers: int, speaker_layer: int):
        super().__init__()
        net = Teacher(config)
        net.requires_grad_(True)
        self.feature_extractor = net.feature_extractor
        self.encoder = net.encoder
        self.aux = nn.Linear(config.embed_dim, n_phones + 1)       # torchaudio's name for the CTC head
        self.speaker = nn.Linear(config.embed_dim, max(n_speakers, 1))
        self.speaker_layer = speaker_layer
        self.num_layers = config.num_layers

    def forward(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features, frames = self.feature_extractor(audio, lengths)
        hidden = run_encoder(self.encoder, features, frames, self.num_layers)
        logits = self.aux(hidden[-1])
        mid = hidden[self.speaker_layer]
        mask = valid_mask(frames, mid.shape[1]).unsqueeze(-1).to(mid.dtype)
        pooled = (mid * mask).sum(1) / frames.clamp(min=1).unsqueeze(-1).to(mid.dtype)
        return logits, frames, self.speaker(pooled)


def default_config() -> TeacherConfig:
    """The ``tiny-random`` sizes (so the ``tiny`` student can copy its CNN and layers), pre-LN.

    Pre-LN because a post-LN transformer trained from scratch stalls on the
    CTC plateau far longer at this size and learning rate.
    """
    return dataclasses.replace(TeacherConfig.tiny(), layer_norm_first=True)


def _labelled(data: str | Path, split: str, layout: str | None) -> list:
    from ofactl.data.corpora import probe, read_corpus

    corpus = probe(read_corpus(data, layout, split=split))
    return [u for u in corpus.utterances if u.labels.get("phones") and u.duration_s]


def phone_error_rate(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """Edit distance over reference length, summed over utterances (torchaudio's edit distance)."""
    from torchaudio.functional import edit_distance

    errors = sum(edit_distance(h, r) for h, r in zip(hyps, refs))
    total = sum(len(r) for r in refs)
    return errors / total if total else float("nan")


def _greedy(logits: Tensor, frames: Tensor) -> list[list[int]]:
    best = logits.argmax(-1)
    out = []
    for b in range(best.shape[0]):
        seq = torch.unique_consecutive(best[b, : int(frames[b])]).tolist()
        out.append([s for s in seq if s != 0])
    return out


def train_teacher(
    data: str | Path,
    out_dir: str | Path,
    *,
    split: str = "train-clean-100",
    dev_split: str | None = "dev-clean",
    layout: str | None = None,
    config: TeacherConfig | None = None,
    steps: int = 1000,
    lr: float = 6e-3,
    warmup_ratio: float = 0.05,
    max_batch_s: float = 40.0,
    speaker_weight: float = 0.5,
    speaker_layer: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    precision: str = "auto",
) -> TeacherTrainResult:
    """Train a teacher on ``data``'s phone labels (and speakers) and write it to ``out_dir``.

    Args:
        data: a corpus whose utterances carry ``phones`` labels (the synthetic
            LibriSpeech, or any LibriSpeech-layout tree with ``*.phones.txt``).
        out_dir: folder for ``teacher.pth`` (+ ``.json`` sidecar), ``phones.txt``
            and ``train_log.csv``.
        split / dev_split: training split; split for the reported phone error rate (None: none).
        config: network sizes (default :func:`default_config`).
        steps: optimiser steps (one batch each).
        speaker_weight: weight of the speaker cross-entropy (0 turns it off).
        speaker_layer: transformer layer whose mean feeds the speaker head.
        progress: called as ``progress(step, steps, "ctc ... speaker ...")`` (the step's losses) after every step.
        precision: ``fp32``, ``bf16`` or ``auto`` (see :mod:`ofactl.precision`); training runs on the CPU.
    """
    from ofactl.train import lr_factor

    config = config or default_config()
    if steps < 1:
        raise OfactlError(f"steps must be at least 1, found {steps}")
    if speaker_layer is None:
        speaker_layer = max(1, config.num_layers // 2)
    if not 0 <= speaker_layer <= config.num_layers:
        raise OfactlError(f"speaker_layer must be in [0, {config.num_layers}], found {speaker_layer}")
    train_utts = _labelled(data, split, layout)
    if not train_utts:
        raise OfactlError(f"{data}: split {split!r} has no utterances with phone labels",
                          hint="a teacher is trained on *.phones.txt labels (the synthetic corpus from "
                               "`ofactl data synth` has them)")
    dev_utts = _labelled(data, dev_split, layout) if dev_split else []
    phones = sorted({p for u in train_utts for p in u.labels["phones"]})
    phone_index = {p: i + 1 for i, p in enumerate(phones)}
    speakers = sorted({u.speaker for u in train_utts if u.speaker})
    speaker_index = {s: i for i, s in enumerate(speakers)}

    from ofactl.precision import autocast, resolve_precision

    precision = resolve_precision(precision, torch.device("cpu"), config.embed_dim)  # forward under bf16 autocast, losses in fp32
    torch.manual_seed(seed)
    model = _Trainable(config, len(phones), len(speakers), speaker_layer)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_factor(s, steps, warmup_ratio))
    problems: dict[str, Problem] = {}  # unreadable files, once each (the rest trains)
    log: list[dict] = []
    t0 = time.perf_counter()
    step, epoch = 0, 0
    model.train()
    while step < steps:
        batches = 0
        for batch in iter_batches(train_utts, max_batch_s=max_batch_s, shuffle=True, seed=seed, epoch=epoch,
                                  num_workers=0):
            if isinstance(batch, Problem):
                problems.setdefault(batch.id, batch)
                continue
            if step >= steps:
                break
            batches += 1
            indices = batch.indices
            with autocast("cpu", precision):
                logits, frames, spk_logits = model(batch.audio, batch.lengths)
            logits, spk_logits = logits.float(), spk_logits.float()
            targets = [[phone_index[p] for p in train_utts[i].labels["phones"]] for i in indices]
            ctc = nn.functional.ctc_loss(
                logits.log_softmax(-1).transpose(0, 1), torch.tensor([t for seq in targets for t in seq]),
                frames, torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
            spk_target = torch.tensor([speaker_index.get(train_utts[i].speaker, -100) for i in indices])
            spk = nn.functional.cross_entropy(spk_logits, spk_target, ignore_index=-100) if speakers else ctc * 0
            loss = ctc + speaker_weight * spk
            optim.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optim.step()
            sched.step()
            step += 1
            row = {"step": step, "ctc": float(ctc.detach()), "speaker": float(spk.detach()), "lr": sched.get_last_lr()[0]}
            log.append(row)
            if progress is not None:
                progress(step, steps, f"ctc {row['ctc']:.3f} speaker {row['speaker']:.3f}")
        if not batches:
            raise OfactlError(f"{data}: none of the {len(train_utts)} training utterances could be read",
                              hint="run `ofactl data inspect` on it")
        epoch += 1
    model.eval()

    dev_per = float("nan")
    if dev_utts:
        hyps, refs = [], []
        with torch.no_grad():
            for batch in iter_batches(dev_utts, max_batch_s=max_batch_s, num_workers=0):
                if isinstance(batch, Problem):
                    problems.setdefault(batch.id, batch)
                    continue
                with autocast("cpu", precision):
                    logits, frames, _ = model(batch.audio, batch.lengths)
                logits = logits.float()
                hyps += [[phones[j - 1] for j in seq] for seq in _greedy(logits, frames)]
                refs += [dev_utts[i].labels["phones"] for i in batch.indices]
        dev_per = phone_error_rate(hyps, refs)
    seconds = time.perf_counter() - t0

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("speaker.")}
    path = out / WEIGHTS_FILE
    meta = {**config.to_dict(), "trained_by": "ofactl teacher train", "steps": steps, "seed": seed, "precision": precision,
            "speaker_layer": speaker_layer, "dev_per": None if math.isnan(dev_per) else round(dev_per, 4)}
    atomic_write_text(out / "phones.txt", "".join(p + "\n" for p in phones))
    _write_log(out / "train_log.csv", log)
    # sidecar first: a teacher.pth is never there without the config it needs
    sidecar = {k: v for k, v in meta.items() if k in TeacherConfig.__dataclass_fields__}
    atomic_write_text(Path(f"{path}.json"), json.dumps(sidecar, indent=1) + "\n")
    atomic_write_text(out / "teacher.info.json", json.dumps(meta, indent=1) + "\n")
    atomic_write(path, lambda f: torch.save(state, f))

    def mean(rows: list[dict]) -> dict[str, float]:
        return {k: sum(r[k] for r in rows) / len(rows) for k in ("ctc", "speaker")} if rows else {}

    return TeacherTrainResult(path=path, steps=steps, seconds=seconds, phones=phones, dev_per=dev_per,
                              dev_utterances=len(dev_utts), train_utterances=len(train_utts),
                              train_speakers=len(speakers), first_loss=mean(log[:20]), last_loss=mean(log[-20:]),
                              problems=list(problems.values()))


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "ctc", "speaker", "lr"], lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
