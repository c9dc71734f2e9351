"""OFA pretraining: one explicit loop, readable top to bottom.

Each optimiser step draws one lambda ~ U[0, lambda_max] (or uses
``fixed_lambda``), runs the student at that lambda, pools the frozen teacher's
target layers with the *same* CIF weights (detached), and minimises the
DistilHuBERT distillation loss plus the guidance loss on the original alpha.
``lambda_max = 0`` is plain DistilHuBERT; ``fixed_lambda = 1`` is Meng et al.'s
fixed-rate model: baselines come from the same code.

Runs as one process or under ``torchrun`` (DistributedDataParallel, NCCL on
GPUs, gloo on CPU).  Checkpoints are written atomically every
``save_every`` steps and on SIGTERM/SIGINT; ``resume=True`` restores model,
optimiser, scheduler, RNG state and data position, so a resumed run logs the
same losses as an uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ofactl.atomic import atomic_write
from ofactl.config import save_yaml, to_plain
from ofactl.data.problems import Problem
from ofactl.errors import OfactlError
from ofactl.period import SAMPLE_RATE
from ofactl.pretrain_config import PretrainConfig
from ofactl.progress import Progress

TRAIN_STATE = "train_state.pt"
TRAIN_LOG = "train_log.csv"
RESOLVED_CONFIG = "pretrain.yaml"
LOG_FIELDS = ["step", "epoch", "lambda", "loss", "distill", "l1", "cos", "guidance_seg", "guidance_frame",
              "measured_period_ms", "audio_s", "audio_s_per_s", "lr", "grad_norm"]


# ----------------------------------------------------------------------------- helpers


def step_lambda(cfg: PretrainConfig, step: int) -> float:
    """The lambda of optimiser step ``step``: a pure function of (seed, step), equal on every rank."""
    if cfg.fixed_lambda is not None:
        return float(cfg.fixed_lambda)
    if cfg.lambda_max == 0.0:
        return 0.0
    digest = hashlib.blake2b(f"lambda:{cfg.seed}:{step}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    return float(u * cfg.lambda_max)


def lr_factor(step: int, total: int, warmup_ratio: float) -> float:
    """Linear warm-up over ``warmup_ratio * total`` steps, then linear decay to 0 at ``total``."""
    warmup = max(int(round(warmup_ratio * total)), 0)
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(total - warmup, 1))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases and norm parameters)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]




def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _StopRequest:
    """SIGTERM/SIGINT set a flag; the loop checkpoints at the end of the step and exits."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns."""

    model_dir: Path
    step: int
    finished: bool
    interrupted_by: str | None
    last_losses: dict[str, float]
    seconds: float
    problems: list[Problem]  # the inputs left out: the corpus's, and files that could not be read
    weights_sha256: str = ""
    #: ``resume=True`` found no checkpoint (a run killed before its first one) and started afresh
    started_fresh: bool = False
    #: the finished model became the workspace default; else the default it left in place (``kept_default``)
    recorded_default: bool = False
    kept_default: Path | None = None


def step_losses(model: nn.Module, teacher: nn.Module, audio: torch.Tensor, lengths: torch.Tensor, lam: float,
                target_layers, cfg: PretrainConfig, segments: tuple[torch.Tensor, torch.Tensor] | None = None,
                precision: str | None = None, teacher_precision: str | None = None):
    """The losses of one batch at one lambda.

    The student runs at ``lam`` under ``precision`` (resolved: fp32 or bf16; None resolves ``cfg.precision``
    on the audio's device, see :mod:`ofactl.precision`: the CNN and transformer in bf16, alpha and CIF firing
    in float32); the
    frozen teacher runs under ``teacher_precision`` (None resolves ``cfg.teacher_precision``; fp32 by default,
    as the method has it); its ``target_layers`` are pooled by the same
    CIF with the student's ``alpha_mod`` (detached); the guidance loss uses the
    original alpha and ``segments = (ends (batch, K), counts (batch,))``.

    Returns ``(parts, student_output)``: ``parts`` maps loss, distill, l1, cos,
    guidance_seg, guidance_frame to 0-d tensors (``loss`` carries the graph).
    """
    from ofactl.distill import distillation_loss, guidance_loss, pool_targets

    from ofactl.precision import autocast, resolve_precision

    with autocast(audio.device, precision or resolve_precision(cfg.precision, audio.device)):
        s_out = model(audio, lengths, lam)
    if teacher_precision is None:
        teacher_precision = resolve_precision(cfg.teacher_precision, audio.device, teacher.config.embed_dim)
    with torch.no_grad(), autocast(audio.device, teacher_precision):  # fp32 unless the config asks otherwise
        t_out = teacher(audio, lengths, layers=target_layers)
    if not torch.equal(t_out.lengths, s_out.frame_lengths):
        raise OfactlError("teacher and student CNNs give different frame counts",
                          hint="the student's conv_layers must match the teacher's")
    targets, _ = pool_targets(t_out.hidden_states, target_layers, s_out.alpha_mod, s_out.frame_lengths)
    d = distillation_loss(s_out.predictions.float(), targets.float(), s_out.lengths)
    zero = torch.zeros((), device=audio.device)
    parts = {"loss": d.total, "distill": d.total, "l1": d.l1.mean(), "cos": d.cos.mean(),
             "guidance_seg": zero, "guidance_frame": zero}
    if segments is not None:
        ends, counts = segments
        g = guidance_loss(s_out.alpha.float(), s_out.frame_lengths, ends.to(audio.device), counts.to(audio.device),
                          w_seg=cfg.w_seg, w_frame=cfg.w_frame)
        parts.update(loss=d.total + g.total, guidance_seg=g.seg, guidance_frame=g.frame)
    return parts, s_out


# ----------------------------------------------------------------------------- the loop


def pretrain(cfg: PretrainConfig, resume: bool = False, progress: Progress | None = None) -> PretrainResult:
    """Run (or resume) OFA pretraining as described by ``cfg``; returns where it ended.

    ``progress(step, steps, summary)`` is called on the main rank when the run starts and after every step,
    ``summary`` being the step's loss parts, lambda, measured frame period and audio seconds per second.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ofactl import distributed as D
    from ofactl.checkpoint import save_model
    from ofactl.data.corpora import probe, read_corpus
    from ofactl.data.pipeline import iter_batches
    from ofactl.model import OFAStudent, StudentConfig
    from ofactl.teacher import init_student_from_teacher, load_teacher

    from ofactl.precision import resolve_precision

    t_start = time.time()
    env = D.setup(cfg.device)
    out = Path(cfg.out)
    state_path = out / TRAIN_STATE
    if env.is_main:
        if state_path.exists() and not resume:
            raise OfactlError(f"{out} already holds a training run", hint="pass --resume to continue it, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        for tmp in out.glob(".*.tmp"):  # a checkpoint write killed half-way: the file it was replacing is intact
            tmp.unlink(missing_ok=True)
    # a scheduler re-runs the same command after a preemption: --resume before the first checkpoint starts afresh
    started_fresh = resume and not state_path.exists()
    D.barrier(env)
    if started_fresh:
        resume = False

    # --- the teacher first: a wrong spec fails before any data is read
    cfg.check_inputs()
    teacher = load_teacher(cfg.teacher, device=env.device)

    # --- data
    corpus = read_corpus(cfg.data.path, cfg.data.layout)
    splits = cfg.data.splits or [s for s in corpus.splits() if s.startswith("train")] or corpus.splits()
    keep = set(splits)
    corpus.utterances = [u for u in corpus.utterances if u.split in keep]
    corpus = probe(corpus)
    utts = [u for u in corpus.utterances if (u.duration_s or 0.0) >= cfg.data.min_duration_s]
    if not utts:
        raise OfactlError(f"{cfg.data.path}: no usable training utterances in splits {', '.join(splits)}",
                          hint="check the path, the layout and data.splits")
    num_workers = min(cfg.data.num_workers, os.cpu_count() or 1)  # more workers than cores only thrash

    def epoch_batches(epoch: int, start: int = 0):
        """This rank's crops of ``epoch`` from its ``start``-th batch on (files that cannot be read are left out)."""
        for item in iter_batches(utts, max_batch_s=cfg.data.max_batch_s, max_batch_size=cfg.data.max_batch_size,
                                 crop_s=cfg.data.crop_s, shuffle=True, seed=cfg.seed, epoch=epoch, start=start,
                                 rank=env.rank, world_size=env.world_size, num_workers=num_workers,
                                 pin_memory=env.device.type == "cuda"):
            if isinstance(item, Problem):
                problems.setdefault(item.id, item)
            else:
                yield item

    problems: dict[str, Problem] = {}  # read failures, once each

    segments = None
    if cfg.segments:
        from ofactl.segments import SegmentTable

        segments = SegmentTable.load(cfg.segments)
        missing = sum(1 for u in utts if u.id not in segments)
        if missing == len(utts):
            raise OfactlError(f"{cfg.segments}: has segments for none of the {len(utts)} training utterances",
                              hint="make them with `ofactl segment` on the same data")

    # --- models
    torch.manual_seed(cfg.seed)
    initial = _initial_student(cfg.init_student, cfg.seed) if cfg.init_student else None
    student_cfg = initial.config if initial is not None else StudentConfig.preset(cfg.student)
    if cfg.student_overrides:
        student_cfg = StudentConfig.from_dict({**student_cfg.to_dict(), **cfg.student_overrides})
    precision = resolve_precision(cfg.precision, env.device, student_cfg.embed_dim)  # auto: bf16 where it is faster
    teacher_precision = resolve_precision(cfg.teacher_precision, env.device, teacher.config.embed_dim)
    if max(student_cfg.target_layers) > teacher.config.num_layers:
        raise OfactlError(f"the student predicts teacher layers {list(student_cfg.target_layers)} but the teacher has "
                          f"{teacher.config.num_layers}", hint="set student_overrides.target_layers")
    student = OFAStudent(student_cfg)
    if initial is not None:
        try:
            student.load_state_dict(initial.state_dict())
        except RuntimeError:
            raise OfactlError(f"student_overrides change the architecture of the --init-student weights "
                              f"({cfg.init_student})", hint="override training settings only (dropouts, "
                              "feature_grad_mult), not sizes") from None
    elif cfg.init_from_teacher:
        init_student_from_teacher(student, teacher)
    student.to(env.device).train()
    model: nn.Module = DDP(student) if env.distributed else student
    optimizer = torch.optim.AdamW(param_groups(student, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                  betas=cfg.optim.betas, eps=cfg.optim.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, cfg.optim.warmup_ratio))

    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        from ofactl.safe_load import torch_load

        state = torch_load(state_path, kind="an ofactl training state")
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        _set_rng_state(state["rng"][min(env.rank, len(state["rng"]) - 1)])
    elif env.is_main:
        save_yaml(cfg, out / RESOLVED_CONFIG)

    log_path = out / TRAIN_LOG
    if env.is_main:
        _prepare_log(log_path, step)

    def training_state() -> dict[str, Any]:
        return {"step": step, "max_steps": cfg.steps, "lambda_max": cfg.lambda_max, "fixed_lambda": cfg.fixed_lambda,
                "teacher": cfg.teacher, "segments": cfg.segments, "data": cfg.data.path, "splits": splits,
                "seed": cfg.seed, "finished": step >= cfg.steps, "world_size": env.world_size, "precision": precision,
                "teacher_precision": teacher_precision}

    def checkpoint() -> None:
        rngs = _gather_rng(env)
        if env.is_main:
            state = {"model": student.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
                     "batch_in_epoch": batch_in_epoch, "rng": rngs, "config": to_plain(cfg)}
            atomic_write(state_path, lambda f: torch.save(state, f))
            save_model(out, student, training=training_state())
        D.barrier(env)

    say = progress if progress is not None and env.is_main else None
    if say:
        say(step, cfg.steps, "")
    last: dict[str, float] = {}
    interrupted: str | None = None
    with _StopRequest() as stop:
        batches = epoch_batches(epoch, start=batch_in_epoch)
        while step < cfg.steps:
            lam = step_lambda(cfg, step)
            t0 = time.time()
            sums = {k: 0.0 for k in ("loss", "distill", "l1", "cos", "guidance_seg", "guidance_frame")}
            audio_s = 0.0
            out_frames = 0
            optimizer.zero_grad(set_to_none=True)
            for micro in range(cfg.accumulate):
                try:
                    batch = next(batches)
                except StopIteration:
                    epoch += 1
                    batch_in_epoch = 0
                    batches = epoch_batches(epoch)
                    batch = next(batches)
                batch_in_epoch += 1
                audio = batch.audio.to(env.device, non_blocking=True)
                lengths = batch.lengths.to(env.device)
                sync = micro == cfg.accumulate - 1 or not env.distributed
                ctx = model.no_sync() if (env.distributed and not sync) else _nullcontext()
                segs = None
                if segments is not None:
                    frames = student.feature_extractor.output_lengths(batch.lengths).tolist()
                    crops = [(start // student.hop_samples, int(n)) for start, n in zip(batch.starts, frames)]
                    segs = segments.batch(batch.ids, crops)
                with ctx:
                    parts, s_out = step_losses(model, teacher, audio, lengths, lam, student_cfg.target_layers, cfg,
                                               segs, precision, teacher_precision)
                    loss = parts["loss"]
                    (loss / cfg.accumulate).backward()
                for key in sums:
                    sums[key] += float(parts[key].detach()) / cfg.accumulate
                audio_s += float(batch.lengths.sum()) / SAMPLE_RATE
                out_frames += int(s_out.lengths.sum())
            grad_norm = float(torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.optim.grad_clip))
            optimizer.step()
            scheduler.step()
            step += 1

            reduced = D.all_reduce_sum(env, [sums[k] for k in sums] + [audio_s, float(out_frames)])
            n = env.world_size
            row = {k: reduced[i] / n for i, k in enumerate(sums)}
            total_audio, total_frames = reduced[-2], reduced[-1]
            elapsed = max(time.time() - t0, 1e-9)
            row.update({"step": step, "epoch": epoch, "lambda": lam,
                        "measured_period_ms": 1000 * total_audio / max(total_frames, 1.0),
                        "audio_s": total_audio, "audio_s_per_s": total_audio / elapsed,
                        "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm})
            last = row
            if env.is_main:
                _append_log(log_path, row)
            if say:
                say(step, cfg.steps, step_summary(row))

            stop_now = D.broadcast_flag(env, stop.signum is not None)
            if step % cfg.save_every == 0 or step >= cfg.steps or stop_now:
                checkpoint()
            if stop_now:
                interrupted = signal.Signals(stop.signum).name if stop.signum else "peer"
                break

    recorded, kept = False, None
    if env.is_main and step >= cfg.steps:
        recorded, kept = _record_default(out)
    digest = state_dict_digest(student.state_dict())
    D.cleanup(env)
    return PretrainResult(out, step, step >= cfg.steps, interrupted, last, time.time() - t_start,
                          corpus.problems + list(problems.values()), digest, started_fresh, recorded, kept)


def _initial_student(source: str, seed: int) -> nn.Module:
    """The student weights ``--init-student`` names: an ofactl model directory, or an s3prl DistilHuBERT
    checkpoint (imported on the fly, with a fresh alpha module)."""
    path = Path(source)
    if path.is_dir() or path.name == "model.pt":
        from ofactl.checkpoint import load_student

        return load_student(path if path.is_dir() else path.parent)
    from ofactl.s3prl_import import student_from_distiller

    return student_from_distiller(path, seed=seed)


def _record_default(out: Path) -> tuple[bool, Path | None]:
    """Record the finished model as the workspace default unless the workspace already names another model that
    exists (a default the user set is never replaced silently): ``(recorded, the default kept)``."""
    from ofactl.workspace import MODEL_FILE, find_workspace, set_default_model

    ws = find_workspace()
    current = ws.model if ws is not None else None
    if current is not None and (current / MODEL_FILE).is_file() and current.resolve() != out.resolve():
        return False, current
    set_default_model(out)
    return True, None


def state_dict_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and exact bytes (equal weights <=> equal digest)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _gather_rng(env) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank order), so a resumed DDP run continues each rank's dropout stream."""
    state = _rng_state()
    if not env.distributed:
        return [state]
    import torch.distributed as dist

    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _prepare_log(path: Path, step: int) -> None:
    """Keep the rows up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    rows = []
    if path.exists() and step > 0:
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow({k: _fmt(row[k]) for k in LOG_FIELDS})
        f.flush()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return value


def step_summary(row: dict[str, Any]) -> str:
    """One line for a training step: the loss parts, lambda, measured frame period and audio seconds per second."""
    return (f"loss {row['loss']:.3f} (l1 {row['l1']:.3f} cos {row['cos']:.3f} seg {row['guidance_seg']:.3f} "
            f"frame {row['guidance_frame']:.3f}) λ {row['lambda']:.2f} {row['measured_period_ms']:.0f}ms "
            f"{row['audio_s_per_s']:.0f} audio-s/s")
