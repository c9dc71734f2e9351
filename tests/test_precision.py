"""bf16 (issue 14): how auto resolves, the one-line refusal, and that bf16 keeps fp32's frame counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ofactl import load_model
from ofactl import precision as P
from ofactl.errors import OfactlError
from ofactl.inference import OFAModel
from ofactl.model import OFAStudent, StudentConfig

X86_AMX = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
X86_PLAIN = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """``cpu(text)``: pretend /proc/cpuinfo reads ``text``."""
    parse = P.cpu_bf16_flags.__wrapped__  # the uncached reader

    def set_flags(text: str) -> None:
        info = tmp_path / "cpuinfo"
        info.write_text(text)
        flags = parse(str(info))
        monkeypatch.setattr(P, "cpu_bf16_flags", lambda: flags)

    return set_flags


@pytest.mark.parametrize("text, flags", [(X86_AMX, {"avx512_bf16", "amx_bf16"}), (X86_PLAIN, set()),
                                         (ARM_BF16, {"bf16"}), ("", set())])
def test_cpu_flags_are_read_from_cpuinfo(text, flags, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    assert P.cpu_bf16_flags.__wrapped__(info) == frozenset(flags)
    assert P.cpu_bf16_flags.__wrapped__(tmp_path / "absent") == frozenset()  # macOS: no /proc/cpuinfo


def test_auto_is_bf16_on_a_cpu_with_fast_bf16_and_fp32_elsewhere(cpu):
    cpu(X86_AMX)
    assert P.resolve_precision("auto", "cpu") == "bf16"
    assert P.resolve_precision("fp32", "cpu") == "fp32"
    cpu(X86_PLAIN)
    assert P.resolve_precision("auto", "cpu") == "fp32"
    assert P.resolve_precision("fp32", "cpu") == "fp32"


def test_explicit_bf16_without_support_is_one_line_suggesting_fp32(cpu):
    cpu(X86_PLAIN)
    with pytest.raises(OfactlError) as err:
        P.resolve_precision("bf16", "cpu")
    assert err.value.message.startswith("--precision bf16: this CPU has neither AMX nor AVX512-BF16")
    assert "--precision fp32" in err.value.hint
    cpu(X86_AMX)
    assert P.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(OfactlError, match="--precision must be auto, fp32 or bf16, found 'fp16'"):
        P.resolve_precision("fp16", "cpu")


def test_auto_on_cuda_follows_the_gpu_s_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(OfactlError, match="this GPU has no bf16 support"):
        P.resolve_precision("bf16", "cuda")


# ----------------------------------------------------------------------------- bf16 against fp32


def _models(preset: str) -> tuple[OFAModel, OFAModel]:
    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset(preset)).eval()
    # built directly (no resolve): bf16 runs everywhere on a CPU, only slowly without hardware support
    args = (student, Path("."), "", None, torch.device("cpu"))
    return OFAModel(*args, precision="fp32"), OFAModel(*args, precision="bf16")


def _min_cosine(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a.features.float(), b.features.float(), dim=-1).min())


@pytest.mark.parametrize("preset", ["tiny", "distilhubert"])
def test_bf16_keeps_fp32_frame_counts_and_features_at_every_lambda(preset):
    fp32, bf16 = _models(preset)
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([48000, 31000, 40500])
    audio = 0.1 * torch.randn(3, 48000, generator=g)
    front32, front16 = fp32.encode_front(audio, lengths), bf16.encode_front(audio, lengths)
    assert front16[0].dtype == torch.bfloat16 and front16[2].dtype == torch.float32  # CNN in bf16, alpha in fp32
    for lam in (0.0, 0.5, 1.0, 1.5, 1.9):
        ref, got = fp32.encode_back(front32, lengths, lam), bf16.encode_back(front16, lengths, lam)
        for r, o in zip(ref, got):
            assert o.features.shape == r.features.shape, (preset, lam)  # identical frame counts
            assert _min_cosine(r, o) >= 0.999, (preset, lam, _min_cosine(r, o))
    ref = fp32.encode_back(front32, lengths, exact_period_ms=90.0)
    got = bf16.encode_back(front16, lengths, exact_period_ms=90.0)
    for r, o in zip(ref, got):
        assert o.features.shape == r.features.shape and _min_cosine(r, o) >= 0.999


def test_long_audio_in_bf16_keeps_the_frame_count():
    fp32, bf16 = _models("tiny")
    wave = 0.1 * torch.randn(16000 * 20, generator=torch.Generator().manual_seed(2))
    for lam in (0.5, 1.5):
        ref, got = fp32.encode_long(wave, lam, chunk_s=7.0), bf16.encode_long(wave, lam, chunk_s=7.0)
        assert got.features.shape == ref.features.shape and _min_cosine(ref, got) >= 0.999


def test_auto_keeps_narrow_models_in_fp32_on_a_cpu(cpu, monkeypatch):
    """bf16 kernels pay off on wide matrices only: the tiny preset ran at 0.2x fp32's speed in bf16 on a CPU."""
    cpu(X86_AMX)
    assert P.resolve_precision("auto", "cpu", width=64) == "fp32"
    assert P.resolve_precision("auto", "cpu", width=768) == "bf16"
    assert P.resolve_precision("bf16", "cpu", width=64) == "bf16"  # asked for explicitly: given
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", "cuda", width=64) == "bf16"  # the width rule is the CPU's


def test_features_files_record_their_precision_and_keep_apart(cpu, tmp_path):
    import numpy as np
    import soundfile as sf

    from ofactl.checkpoint import save_model
    from ofactl.extract import extract_features
    from ofactl.features import read_attrs
    from ofactl.probe import features_path

    cpu(X86_AMX)
    save_model(tmp_path / "m", OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "w"
    wavs.mkdir()
    for i in range(3):
        sf.write(wavs / f"u{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(12000)).astype(np.float32), 16000)
    auto = extract_features(wavs, tmp_path / "a.h5", model=load_model(tmp_path / "m"), lam=1.0, num_workers=0)
    bf16 = extract_features(wavs, tmp_path / "b.h5", model=load_model(tmp_path / "m", precision="bf16"), lam=1.0,
                            num_workers=0)
    assert (auto.precision, bf16.precision) == ("fp32", "bf16")  # auto: the tiny preset is too narrow for bf16
    assert read_attrs(tmp_path / "a.h5")["precision"] == "fp32" and read_attrs(tmp_path / "b.h5")["precision"] == "bf16"
    assert read_attrs(tmp_path / "a.h5")["run_fingerprint"] != read_attrs(tmp_path / "b.h5")["run_fingerprint"]
    a = features_path(tmp_path, "0" * 64, "ks", "train", "lam1")
    b = features_path(tmp_path, "0" * 64, "ks", "train", "lam1", precision="bf16")
    assert a != b and b.name == "train-lam1-bf16.h5"


def test_a_bf16_teacher_is_opt_in_and_its_targets_follow_fp32(cpu):
    """pretrain's teacher runs in fp32 unless teacher_precision asks otherwise; in bf16 the losses (the pooled
    targets) stay within a few per mille of fp32's and the frame counts are the same."""
    from ofactl.pretrain_config import PretrainConfig
    from ofactl.teacher import load_teacher
    from ofactl.train import step_losses

    cpu(X86_AMX)
    assert PretrainConfig().teacher_precision == "fp32"
    with pytest.raises(OfactlError, match="teacher_precision must be auto, bf16 or fp32, found 'fp16'"):
        PretrainConfig(teacher_precision="fp16")
    torch.manual_seed(0)
    student = OFAStudent(StudentConfig.preset("tiny")).eval()
    teacher = load_teacher("tiny-random")
    audio = 0.1 * torch.randn(3, 16000)
    lengths = torch.tensor([16000, 12000, 7000])
    cfg = PretrainConfig()
    with torch.no_grad():
        ref, ref_out = step_losses(student, teacher, audio, lengths, 1.2, student.config.target_layers, cfg, None,
                                   "fp32")
        assert ref["distill"] == step_losses(student, teacher, audio, lengths, 1.2, student.config.target_layers,
                                             cfg, None, "fp32", "fp32")[0]["distill"]  # the default is fp32
        half, half_out = step_losses(student, teacher, audio, lengths, 1.2, student.config.target_layers,
                                     PretrainConfig(teacher_precision="bf16"), None, "fp32")
    assert torch.equal(ref_out.lengths, half_out.lengths)
    for key in ("l1", "cos"):
        assert float(half[key]) == pytest.approx(float(ref[key]), rel=5e-3), key
    assert float(half["distill"]) != float(ref["distill"])  # the teacher did run in bf16
