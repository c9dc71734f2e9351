"""OFAStudent: structure, padding invariance, lambda = 0 identity, gradients, presets."""

from __future__ import annotations

import pytest
import torch

from ofactl.errors import OfactlError
from ofactl.layers import run_encoder
from ofactl.model import OFAStudent, StudentConfig, count_parameters

LAMS = [0.0, 0.3, 1.0, 1.5, 1.99]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return OFAStudent(StudentConfig.preset("tiny")).eval()


def padded(lengths_samples, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(len(lengths_samples), max(lengths_samples), generator=g)
    for b, n in enumerate(lengths_samples):
        audio[b, n:] = 3.0  # garbage padding must not leak
    return audio, torch.tensor(lengths_samples)


@pytest.mark.parametrize("lam", LAMS)
def test_batch_equals_one_by_one(tiny, lam):
    lengths = [16000, 9000, 5000, 300, 0]  # 300 samples: shorter than one frame; 0: empty
    audio, lens = padded(lengths)
    with torch.no_grad():
        batch = tiny(audio, lens, lam)
        for b, n in enumerate(lengths):
            one = tiny(audio[b : b + 1, :n], None, lam)
            k = int(one.lengths[0])
            assert int(batch.lengths[b]) == k
            assert int(batch.frame_lengths[b]) == int(one.frame_lengths[0])
            for h_batch, h_one in zip(batch.hidden_states, one.hidden_states):
                torch.testing.assert_close(h_batch[b, :k], h_one[0, :k], rtol=1e-4, atol=1e-5)
                assert torch.all(h_batch[b, k:] == 0), "padded output frames must be zero"
            torch.testing.assert_close(batch.predictions[b, :, :k], one.predictions[0, :, :k], rtol=1e-4, atol=1e-5)
            t = int(one.frame_lengths[0])
            torch.testing.assert_close(batch.alpha[b, :t], one.alpha[0, :t], rtol=1e-4, atol=1e-6)
            assert torch.all(batch.alpha[b, t:] == 0)


def test_frame_lengths_follow_the_cnn(tiny):
    audio, lens = padded([16000, 400, 399, 720, 719])
    out = tiny(audio, lens, 0.0)
    # floor((S - 400) / 320) + 1 for the wav2vec2 stack, 0 below one receptive field
    assert out.frame_lengths.tolist() == [49, 1, 0, 2, 1]


def test_lambda_zero_is_plain_distilhubert(tiny):
    audio, lens = padded([16000, 8000])
    with torch.no_grad():
        out = tiny(audio, lens, 0.0)
        assert torch.equal(out.lengths, out.frame_lengths)
        assert torch.all(out.alpha_mod[0] == 1)
        plain = run_encoder(tiny.encoder, out.features, out.frame_lengths)
    for a, b in zip(out.hidden_states, plain):
        assert torch.equal(a, b)


def test_output_structure_and_compression(tiny):
    audio, lens = padded([32000, 20000])
    counts = []
    for lam in LAMS:
        out = tiny(audio, lens, lam)
        c = tiny.config
        assert len(out.hidden_states) == c.num_layers + 1
        n = int(out.lengths.max())
        assert out.hidden_states[-1].shape == (2, n, c.embed_dim)
        assert out.predictions.shape == (2, len(c.target_layers), n, c.target_dim)
        assert out.centers.shape == (2, n)
        assert out.features.shape[-1] == tiny.feature_extractor.out_dim
        assert torch.all((out.alpha > 0) & (out.alpha < 1) | (out.alpha == 0))
        assert torch.all(out.lengths >= 1)
        counts.append(out.lengths.tolist())
    assert counts[0] == [99, 62]
    assert counts[-1] == [1, 1], "lam -> 2 keeps one frame per utterance"
    totals = [sum(c) for c in counts]
    assert totals == sorted(totals, reverse=True), "compression grows with lambda"
    assert tiny(audio, lens, 1.0, predict=False).predictions is None


def test_gradients_reach_alpha_module_and_lambda():
    torch.manual_seed(0)
    model = OFAStudent(StudentConfig.preset("tiny")).train()
    audio, lens = padded([16000, 12000])
    lam = torch.tensor(0.7, requires_grad=True)
    out = model(audio, lens, lam)
    loss = out.predictions.square().mean()
    loss.backward()
    assert lam.grad is not None and lam.grad != 0
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
    assert model.alpha_module.proj.weight.grad.abs().sum() > 0


def test_presets_sizes():
    big = OFAStudent(StudentConfig.preset("distilhubert"))
    counts = count_parameters(big)
    # DistilHuBERT (CNN + projection + pos conv + 2 layers) is 23.49M parameters
    assert abs(counts["feature_extractor"] + counts["encoder"] - 23.49e6) < 0.01e6
    assert 23.5e6 < counts["total"] - counts["heads"] < 25.5e6  # + the alpha module
    assert counts["total"] > 20 * count_parameters(OFAStudent(StudentConfig.preset("tiny")))["total"]


def test_config_round_trip_and_strictness():
    cfg = StudentConfig.preset("tiny")
    again = StudentConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(OfactlError, match="unknown student config key"):
        StudentConfig.from_dict({**cfg.to_dict(), "embed_dims": 3})
    with pytest.raises(OfactlError, match="divisible"):
        StudentConfig(embed_dim=100, num_heads=12)
    with pytest.raises(OfactlError, match="unknown student preset"):
        StudentConfig.preset("huge")


def test_half_precision_forward(tiny):
    if not hasattr(torch, "autocast"):
        pytest.skip("no autocast")
    audio, lens = padded([16000, 10000])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny(audio, lens, 1.2)
        ref = None
    with torch.no_grad():
        ref = tiny(audio, lens, 1.2)
    assert torch.isfinite(out.hidden_states[-1]).all()
    # same segmentation unless a firing decision sits within bf16 noise of an integer
    assert (out.lengths - ref.lengths).abs().max() <= 1


def test_distilhubert_preset_is_distilhubert_and_0_1_configs_keep_their_architecture(tmp_path):
    """Issue 15 #1: no LayerNorm before the projection, no dropout after it, feature_grad_mult 0.1; a config
    saved by ofactl 0.1 (no projection_layer_norm key) still builds 0.1's model and gives the same outputs."""
    from ofactl.checkpoint import load_student, save_model
    from ofactl.model import V01_DEFAULTS

    cfg = StudentConfig.preset("distilhubert")
    assert (cfg.projection_layer_norm, cfg.input_dropout, cfg.feature_grad_mult) == (False, 0.0, 0.1)
    keys = OFAStudent(cfg).state_dict()
    assert not any(k.startswith("encoder.feature_projection.layer_norm.") for k in keys)

    old = StudentConfig.preset("tiny").to_dict()
    del old["projection_layer_norm"]
    old.update(input_dropout=0.1, feature_grad_mult=1.0)  # what 0.1 wrote
    torch.manual_seed(0)
    legacy = OFAStudent(StudentConfig.from_dict(old)).eval()
    assert legacy.config.projection_layer_norm and legacy.config == StudentConfig.from_dict({**old, **V01_DEFAULTS})
    assert "encoder.feature_projection.layer_norm.weight" in legacy.state_dict()
    save_model(tmp_path / "m", legacy)
    loaded = load_student(tmp_path / "m").eval()
    audio, lengths = torch.randn(2, 12000), torch.tensor([12000, 9000])
    with torch.no_grad():
        for lam in (0.0, 1.2):
            a, b = legacy(audio, lengths, lam=lam), loaded(audio, lengths, lam=lam)
            torch.testing.assert_close(a.hidden_states[-1], b.hidden_states[-1])
