"""OFA pretraining: config strictness, schedules, learning, exact resume, crash safety, DDP with gloo."""

from __future__ import annotations

import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from ofactl.errors import OfactlError
from ofactl.pretrain_config import PretrainConfig, load_pretrain_config
from ofactl.train import (lr_factor, pretrain, step_lambda,
                          state_dict_digest)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from ofactl.testing.synth import synthesize_corpus

    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, speakers=4, utterances=24, seed=1)
    return out / "LibriSpeech"


@pytest.fixture(scope="module")
def segments(corpus, tmp_path_factory):
    """HuBERT-code guidance segments from the tiny random teacher (smoothing suited to its features)."""
    from ofactl.data.corpora import probe, read_corpus
    from ofactl.segments import compute_segments

    table = compute_segments(probe(read_corpus(corpus)).utterances, "tiny-random", n_clusters=20, smoothing=2.0,
                             num_workers=0)
    path = tmp_path_factory.mktemp("seg") / "segments.tsv"
    table.save(path)
    return path


def write_config(path: Path, corpus: Path, out: Path, **extra) -> Path:
    lines = [f"out: {out}", "student: tiny", "teacher: tiny-random", "seed: 3",
             "data:", f"  path: {corpus}", "  crop_s: 2.0", "  max_batch_s: 12.0", "  max_batch_size: 6",
             "  num_workers: 1"]
    for key, value in extra.items():
        lines.insert(0, f"{key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- config and schedules


def test_unknown_key_lists_valid_ones(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 10\nlearning_rate: 0.1\n")
    with pytest.raises(OfactlError) as err:
        load_pretrain_config(cfg)
    assert "learning_rate" in err.value.message and "lambda_max" in err.value.hint
    cfg.write_text("data:\n  pth: x\n")
    with pytest.raises(OfactlError, match="pth"):
        load_pretrain_config(cfg)
    cfg.write_text("steps: ten\n")
    with pytest.raises(OfactlError, match="steps"):
        load_pretrain_config(cfg)
    with pytest.raises(OfactlError, match="lambda_max"):
        PretrainConfig(lambda_max=2.0)


def test_overrides_win_over_the_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 10\ndata:\n  path: a\n")
    loaded = load_pretrain_config(cfg, **{"data.path": "b", "steps": 5, "teacher": None})
    assert loaded.data.path == "b" and loaded.steps == 5 and loaded.teacher == ""


def test_set_assignments_are_yaml_values_checked_strictly(tmp_path):
    from typer.testing import CliRunner

    from ofactl.cli import app
    from ofactl.config import parse_assignments

    got = parse_assignments(["optim.lr=5e-4", "fixed_lambda=1", "data.splits=[a, b]", "teacher=t.pth",
                             "init_from_teacher=false", "student_overrides={layer_norm_first: true}"])
    assert got == {"optim.lr": 5e-4, "fixed_lambda": 1, "data.splits": ["a", "b"], "teacher": "t.pth",
                   "init_from_teacher": False, "student_overrides": {"layer_norm_first": True}}
    cfg = load_pretrain_config(None, **got)
    assert cfg.optim.lr == 5e-4 and cfg.fixed_lambda == 1.0 and cfg.data.splits == ["a", "b"]
    for bad in ("lr", "=1", "a..b=1"):
        with pytest.raises(OfactlError, match="expected KEY=VALUE"):
            parse_assignments([bad])
    with pytest.raises(OfactlError, match="__import__"):  # a string, never evaluated; then rejected as a float
        load_pretrain_config(None, **parse_assignments(["lambda_max=__import__('os')"]))
    result = CliRunner().invoke(app, ["pretrain", "--set", "bogus=1", "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "unknown key(s) bogus" in str(result.exception)


def test_step_lambda_is_uniform_deterministic_and_supports_baselines():
    cfg = PretrainConfig(lambda_max=1.5, seed=7)
    lams = [step_lambda(cfg, s) for s in range(4000)]
    assert lams == [step_lambda(cfg, s) for s in range(4000)]
    assert 0 <= min(lams) and max(lams) < 1.5
    assert abs(sum(lams) / len(lams) - 0.75) < 0.03
    assert sum(lam < 0.5 for lam in lams) / len(lams) == pytest.approx(1 / 3, abs=0.03)
    assert step_lambda(PretrainConfig(lambda_max=0.0), 5) == 0.0
    assert step_lambda(PretrainConfig(fixed_lambda=1.0), 5) == 1.0


def test_lr_schedule_warms_up_then_decays():
    total, ratio = 100, 0.07
    f = [lr_factor(s, total, ratio) for s in range(total)]
    assert f[0] == pytest.approx(1 / 7) and f[6] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[6:], f[7:])) and f[-1] == pytest.approx(1 / 93)


# ----------------------------------------------------------------------------- training runs


def test_pretraining_lowers_the_losses_and_writes_a_model(corpus, segments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_pretrain_config(write_config(tmp_path / "c.yaml", corpus, tmp_path / "m", steps=50, save_every=25,
                                            segments=segments))
    result = pretrain(cfg)
    assert result.finished and result.step == 50
    rows = read_log(tmp_path / "m" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 51))

    def mean(key, part):
        return sum(float(r[key]) for r in part) / len(part)

    assert mean("distill", rows[-10:]) < 0.9 * mean("distill", rows[:10])
    guidance = [float(r["guidance_seg"]) + float(r["guidance_frame"]) for r in rows]
    assert sum(guidance[-10:]) < 0.9 * sum(guidance[:10])
    assert all(float(r["guidance_seg"]) > 0 for r in rows)
    # the measured frame period follows lambda: 20 ms at lambda ~ 0, longer as lambda grows
    by_lam = sorted((float(r["lambda"]), float(r["measured_period_ms"])) for r in rows)
    low = [p for lam, p in by_lam if lam < 0.3]
    high = [p for lam, p in by_lam if lam > 1.5]
    assert max(low) < 35 and min(high) > 2 * max(low)
    from ofactl.checkpoint import load_student, read_checkpoint

    ckpt = read_checkpoint(tmp_path / "m")
    assert ckpt.training["step"] == 50 and ckpt.training["finished"]
    assert ckpt.training["precision"] == "fp32"  # auto keeps the tiny preset in fp32 on a CPU (ofactl.precision)
    model = load_student(tmp_path / "m")
    assert state_dict_digest(model.state_dict()) == result.weights_sha256
    from ofactl.workspace import resolve_model

    assert resolve_model(None, env={}, cwd=tmp_path) == (tmp_path / "m").resolve()  # the workspace default
    assert (tmp_path / "m" / "pretrain.yaml").exists()


def run_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ofactl", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_rows(log: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and len(read_log(log)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    raise AssertionError("training did not log in time")


def test_sigterm_then_resume_logs_the_same_losses(corpus, tmp_path):
    steps = 12
    ref_cfg = write_config(tmp_path / "ref.yaml", corpus, tmp_path / "ref", steps=steps, save_every=4)
    ref = pretrain(load_pretrain_config(ref_cfg))

    cfg = write_config(tmp_path / "int.yaml", corpus, tmp_path / "int", steps=steps, save_every=4)
    proc = run_cli(["pretrain", "--config", str(cfg), "--quiet"], tmp_path)
    wait_for_rows(tmp_path / "int" / "train_log.csv", 5, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # 128 + SIGTERM: a scheduler reads a preempted run as not done
    assert "stopped by SIGTERM" in out
    stopped_at = len(read_log(tmp_path / "int" / "train_log.csv"))
    assert stopped_at < steps

    resumed = pretrain(load_pretrain_config(cfg), resume=True)
    assert resumed.finished
    cols = ["step", "epoch", "lambda", "loss", "distill", "l1", "cos", "measured_period_ms", "lr", "grad_norm"]
    got = [{c: r[c] for c in cols} for r in read_log(tmp_path / "int" / "train_log.csv")]
    want = [{c: r[c] for c in cols} for r in read_log(tmp_path / "ref" / "train_log.csv")]
    assert got == want
    assert resumed.weights_sha256 == ref.weights_sha256


def test_kill9_never_leaves_an_unloadable_checkpoint(corpus, tmp_path):
    from ofactl.checkpoint import load_student

    cfg = write_config(tmp_path / "k.yaml", corpus, tmp_path / "k", steps=16, save_every=1)
    rng = random.Random(0)
    resume = False
    for attempt in range(3):
        args = ["pretrain", "--config", str(cfg), "--quiet"] + (["--resume"] if resume else [])
        proc = run_cli(args, tmp_path)
        wait_for_rows(tmp_path / "k" / "train_log.csv", 2 + 3 * attempt, proc)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        state = torch.load(tmp_path / "k" / "train_state.pt", map_location="cpu", weights_only=True)
        model = load_student(tmp_path / "k")
        assert state["step"] >= 1 and model.checkpoint.training["step"] >= 1
        resume = True
    final = pretrain(load_pretrain_config(cfg), resume=True)
    assert final.finished and final.step == 16


def test_ddp_two_cpu_ranks_end_with_identical_weights(corpus, tmp_path):
    cfg = write_config(tmp_path / "d.yaml", corpus, tmp_path / "d", steps=4, save_every=2)
    script = tmp_path / "run_ddp.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from ofactl.pretrain_config import load_pretrain_config
        from ofactl.train import pretrain
        result = pretrain(load_pretrain_config({str(cfg)!r}))
        rank = os.environ["RANK"]
        open(os.path.join({str(tmp_path)!r}, f"rank{{rank}}.sha"), "w").write(result.weights_sha256)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(29500 + os.getpid() % 1000), str(script)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (tmp_path / "rank0.sha").read_text(), (tmp_path / "rank1.sha").read_text()
    assert a == b and len(a) == 64
    rows = read_log(tmp_path / "d" / "train_log.csv")
    assert len(rows) == 4
    from ofactl.checkpoint import read_checkpoint

    assert read_checkpoint(tmp_path / "d").training["world_size"] == 2


def test_gradient_accumulation_consumes_several_batches_per_step(corpus, tmp_path):
    one = pretrain(load_pretrain_config(write_config(tmp_path / "a.yaml", corpus, tmp_path / "a", steps=3)))
    two = pretrain(load_pretrain_config(write_config(tmp_path / "b.yaml", corpus, tmp_path / "b", steps=3,
                                                     accumulate=2)))
    assert one.finished and two.finished
    a = read_log(tmp_path / "a" / "train_log.csv")
    b = read_log(tmp_path / "b" / "train_log.csv")
    audio_a = sum(float(r["audio_s"]) for r in a)
    audio_b = sum(float(r["audio_s"]) for r in b)
    assert 1.5 * audio_a < audio_b < 2.5 * audio_a
    assert one.weights_sha256 != two.weights_sha256



class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_TRAIN_STATE",))


def test_a_malicious_train_state_is_refused_in_ofactl_s_words(corpus, tmp_path):
    """--resume on a train_state.pt that holds code: one ofactl line (what, that nothing was loaded, where),
    never torch's suggestion to load it with weights_only=False; the payload never runs."""
    from ofactl.errors import OfactlError

    cfg = write_config(tmp_path / "c.yaml", corpus, tmp_path / "m", steps=2, save_every=1)
    pretrain(load_pretrain_config(cfg))
    torch.save({"model": _Payload()}, tmp_path / "m" / "train_state.pt")
    with pytest.raises(OfactlError) as info:
        pretrain(load_pretrain_config(cfg), resume=True)
    text = f"{info.value} {info.value.hint}"
    assert "train_state.pt" in text and "refused, nothing in it was loaded" in text and "training state" in text
    assert "weights_only" not in text and "likely succeed" not in text and "\n" not in text
    assert not list(tmp_path.rglob("PWNED_BY_TRAIN_STATE")) and not (Path.cwd() / "PWNED_BY_TRAIN_STATE").exists()


def test_killed_in_its_first_checkpoint_write_then_resume_starts_afresh_and_leaves_no_temp_files(corpus, tmp_path):
    """A scheduler re-runs the same `pretrain --resume` after a preemption: with no checkpoint yet it starts
    afresh (one warning line) instead of failing forever, and the half-written checkpoint's temporary file is
    removed (OFACTL_FAULT kills the first write of train_state.pt after its temporary file is written)."""
    from ofactl.faults import ENV

    cfg = write_config(tmp_path / "c.yaml", corpus, tmp_path / "m", steps=3, save_every=2)
    cmd = [sys.executable, "-m", "ofactl", "pretrain", "--config", str(cfg), "--resume", "--quiet"]
    killed = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, ENV: "atomic-write:train_state.pt"})
    assert killed.returncode == -9, killed.stderr
    assert list((tmp_path / "m").glob(".train_state.pt.*.tmp")) and not (tmp_path / "m" / "train_state.pt").exists()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "no checkpoint to resume" in again.stderr and "started afresh" in again.stderr
    assert not list((tmp_path / "m").glob(".*.tmp"))
    assert [int(r["step"]) for r in read_log(tmp_path / "m" / "train_log.csv")] == [1, 2, 3]


def test_set_null_clears_a_config_key_while_unset_options_do_not(tmp_path):
    """`--set segments=null` left the config's segments in place (None meant "option not given")."""
    from ofactl.config import parse_assignments

    cfg = tmp_path / "c.yaml"
    cfg.write_text("segments: guide.tsv\nteacher: tiny-random\n")
    assert load_pretrain_config(cfg).segments == "guide.tsv"
    cleared = load_pretrain_config(cfg, parse_assignments(["segments=null"], option="--set"), segments=None)
    assert cleared.segments is None and cleared.teacher == "tiny-random"
    kept = load_pretrain_config(cfg, {}, segments=None)  # an option left unset changes nothing
    assert kept.segments == "guide.tsv"
