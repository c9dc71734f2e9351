"""Teacher loading: parity with Hugging Face, fairseq-named and torchaudio models; padding; errors; student init."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ofactl.errors import OfactlError
from ofactl.layers import conv_output_lengths
from ofactl.teacher import Teacher, TeacherConfig, init_student_from_teacher, load_teacher
from ofactl.teacher_formats.fairseq import _map_fairseq_key, parse_conv_layers

ATOL = 1e-4
TINY_CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2
TINY_CONV_STR = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial norm parameters, so a norm that is not copied (or copied to the wrong place) shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)) and module.weight is not None:
                module.weight.add_(0.2 * torch.randn(module.weight.shape, generator=g))
                module.bias.add_(0.2 * torch.randn(module.bias.shape, generator=g))


def audio_batch(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def assert_hidden_close(ours, ref, atol=ATOL):
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"layer {i}: {tuple(a.shape)} vs {tuple(b.shape)}"
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-4, msg=lambda m: f"layer {i}: {m}")


# ------------------------------------------------------------------------------------ Hugging Face

HF_VARIANTS = {
    # name: (model class, stable layer norm / layer-norm CNN / conv bias)
    "hubert": ("HubertModel", False),
    "hubert_stable": ("HubertModel", True),
    "hubert_ctc": ("HubertForCTC", False),
    "wav2vec2": ("Wav2Vec2Model", False),
}


def hf_config(cls_name: str, stable: bool):
    import transformers

    config_cls = transformers.Wav2Vec2Config if cls_name.startswith("Wav2Vec2") else transformers.HubertConfig
    return config_cls(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if stable else "group", conv_bias=stable, do_stable_layer_norm=stable,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        layerdrop=0.0, apply_spec_augment=False, vocab_size=12,
    )


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """name -> (eval-mode HF model, directory saved as safetensors)."""
    transformers = pytest.importorskip("transformers")
    out = {}
    for name, (cls_name, stable) in HF_VARIANTS.items():
        torch.manual_seed(1)
        model = getattr(transformers, cls_name)(hf_config(cls_name, stable)).eval()
        randomise_norms(model, seed=2)
        path = tmp_path_factory.mktemp(f"hf_{name}")
        model.save_pretrained(path)
        out[name] = (model, path)
    return out


def hf_reference(model, audio):
    backbone = getattr(model, "hubert", None) or getattr(model, "wav2vec2", None) or model
    with torch.no_grad():
        out = backbone(audio, output_hidden_states=True)
    # transformers 5 records the pre-LN models' last layer before the final layer norm; v4 (and ofactl,
    # like fairseq's features) after it, which is last_hidden_state in both versions.
    return list(out.hidden_states[:-1]) + [out.last_hidden_state]


@pytest.mark.parametrize("name", list(HF_VARIANTS))
def test_huggingface_directory_parity(hf_models, name):
    model, path = hf_models[name]
    assert (path / "model.safetensors").exists()
    teacher = load_teacher(path)
    assert teacher.config.num_layers == 3 and teacher.config.num_heads == 4
    assert teacher.config.layer_norm_first == HF_VARIANTS[name][1]
    for audio in (audio_batch(1, 9000, seed=3), audio_batch(3, 8000, seed=4)):
        out = teacher(audio)
        assert_hidden_close(out.hidden_states, hf_reference(model, audio))
        assert out.lengths.tolist() == [out.hidden_states[0].shape[1]] * audio.shape[0]


def test_huggingface_bin_with_legacy_weight_norm_keys(hf_models, tmp_path):
    model, path = hf_models["hubert"]
    state = {}
    for key, value in model.state_dict().items():  # the facebook/hubert-base-ls960 .bin uses weight_g / weight_v
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        state[key] = value.clone()
    assert any(k.endswith("weight_g") for k in state)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    audio = audio_batch(2, 7000, seed=5)
    assert_hidden_close(load_teacher(tmp_path)(audio).hidden_states, hf_reference(model, audio))


def test_huggingface_sharded(hf_models, tmp_path):
    model, _ = hf_models["hubert"]
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert not (tmp_path / "model.safetensors").exists()
    assert (tmp_path / "model.safetensors.index.json").exists()
    audio = audio_batch(1, 6000, seed=6)
    assert_hidden_close(load_teacher(str(tmp_path))(audio).hidden_states, hf_reference(model, audio))


# ------------------------------------------------------------------------------------ fairseq

_HF_TO_FAIRSEQ = [  # (regex on the HF key, fairseq replacement); written independently of ofactl
    (r"masked_spec_embed", "mask_emb"),
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(\w+)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_projection\.layer_norm\.(\w+)", r"layer_norm.\1"),
    (r"feature_projection\.projection\.(\w+)", r"post_extract_proj.\1"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0", "encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1", "encoder.pos_conv.0.weight_v"),
    (r"encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.0.bias"),
    (r"encoder\.layer_norm\.(\w+)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(\w+)\.(\w+)", r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(\w+)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(\w+)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(\w+)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(\w+)", r"encoder.layers.\1.final_layer_norm.\2"),
]


def hf_to_fairseq(state: dict, stable: bool) -> dict:
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(\w+)", key)
        if m:  # group norm: conv_layers.0.2.*; layer norm (Fp32LayerNorm inside a Sequential): conv_layers.i.2.1.*
            out[f"feature_extractor.conv_layers.{m[1]}.2.{'1.' if stable else ''}{m[2]}"] = value.clone()
            continue
        for pattern, repl in _HF_TO_FAIRSEQ:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value.clone()
                break
        else:
            raise AssertionError(f"test mapping misses {key}")
    # pretraining-only tensors that the loader must drop
    out["label_embs_concat"] = torch.randn(504, 16)
    out["final_proj.weight"] = torch.randn(16, 64)
    out["final_proj.bias"] = torch.randn(16)
    return out


def fairseq_model_cfg(stable: bool) -> dict:
    return {
        "_name": "hubert",
        "conv_feature_layers": TINY_CONV_STR,
        "extractor_mode": "layer_norm" if stable else "default",
        "encoder_layers": 3,
        "encoder_embed_dim": 64,
        "encoder_ffn_embed_dim": 128,
        "encoder_attention_heads": 4,
        "conv_pos": 16,
        "conv_pos_groups": 4,
        "layer_norm_first": stable,
        "conv_bias": stable,
        "dropout": 0.1,
    }


@pytest.mark.parametrize("stable", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("style", ["cfg", "args"])
def test_fairseq_checkpoint_parity(hf_models, tmp_path, stable, style):
    model, _ = hf_models["hubert_stable" if stable else "hubert"]
    state = hf_to_fairseq(model.state_dict(), stable)
    assert "mask_emb" in state
    model_cfg = fairseq_model_cfg(stable)
    if style == "cfg":
        ckpt = {"cfg": {"model": model_cfg, "task": {"sample_rate": 16000}}, "model": state,
                "optimizer_history": [{"num_updates": 10}], "extra_state": {"epoch": 3}}
    else:
        import numpy as np

        model_cfg["dropout"] = np.float64(0.1)  # old Namespaces may hold numpy scalars
        ckpt = {"args": argparse.Namespace(**model_cfg), "model": state}
    path = tmp_path / "hubert_tiny.pt"
    torch.save(ckpt, path)
    teacher = load_teacher(path)
    assert teacher.config.layer_norm_first == stable
    assert teacher.config.norm_mode == ("layer_norm" if stable else "group_norm")
    audio = audio_batch(2, 8000, seed=7)
    assert_hidden_close(teacher(audio).hidden_states, hf_reference(model, audio))


@pytest.mark.parametrize("stable", [False, True])
def test_fairseq_key_map_agrees_with_torchaudio(hf_models, stable):
    try:
        from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key
    except ImportError:
        pytest.skip("torchaudio's private fairseq key map is not available")
    model, _ = hf_models["hubert_stable" if stable else "hubert"]
    state = hf_to_fairseq(model.state_dict(), stable)
    checked = 0
    for key in state:
        ours, theirs = _map_fairseq_key(key), _map_key(key)
        if ours is None:  # dropped: torchaudio drops it too or keeps it as a HuBERT extension
            assert theirs in (None, "label_embs_concat"), key
        else:
            assert ours == theirs, key
            checked += 1
    assert checked > 40


def test_fairseq_unknown_key_is_a_keyerror():
    with pytest.raises(KeyError):
        _map_fairseq_key("encoder.layers.0.something_new.weight")


def test_parse_conv_layers():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == (
        ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2)
    assert parse_conv_layers("2 * [(8, 3, 1)]") == ((8, 3, 1), (8, 3, 1))
    for bad in ("__import__('os').system('true')", "[(512,10,5)] * 10**9", "[(512,10,5)] * 1000",
                "[(a, 1, 1)]", "[(1.5, 2, 2)]", "[(True, 2, 2)]", "[(1, 2)]", "[]", "(1, 2, 3)",
                "[(1,2,3)] - [(1,2,3)]", "[(1,2,3)][0]", "[(-1, 2, 3)]", "[(1,2,3)] +"):
        with pytest.raises(ValueError):
            parse_conv_layers(bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(*[st.integers(1, 1024)] * 3), min_size=1, max_size=12))
def test_parse_conv_layers_round_trip(layers):
    assert parse_conv_layers(repr(layers)) == tuple(layers)


# ------------------------------------------------------------------------------------ torchaudio

def torchaudio_model(mode: str, embed: int, heads: int, layer_norm_first: bool, conv_bias: bool, aux=None,
                     pos=(16, 4)):
    from torchaudio.models import wav2vec2_model

    torch.manual_seed(3)
    model = wav2vec2_model(
        extractor_mode=mode, extractor_conv_layer_config=TINY_CONV, extractor_conv_bias=conv_bias,
        encoder_embed_dim=embed, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=pos[0],
        encoder_pos_conv_groups=pos[1], encoder_num_layers=3, encoder_num_heads=heads,
        encoder_attention_dropout=0.0, encoder_ff_interm_features=2 * embed, encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0, encoder_layer_norm_first=layer_norm_first, encoder_layer_drop=0.0,
        aux_num_out=aux,
    ).eval()
    randomise_norms(model, seed=4)
    return model


def torchaudio_reference(model, audio):
    with torch.no_grad():
        layers, _ = model.extract_features(audio)
        transformer = model.encoder.transformer
        if not transformer.layer_norm_first:  # torchaudio's flag is inverted: False means pre-LN
            layers[-1] = transformer.layer_norm(layers[-1])  # HF/ofactl convention for the last layer
    return layers


TA_VARIANTS = {
    # name: (extractor mode, embed, heads, layer_norm_first, conv_bias, aux, weight-norm key form, sidecar,
    #        positional conv (kernel, groups))
    "base_inferred": ("group_norm", 128, 2, False, False, None, "parametrized", None, (16, 4)),
    "large_style_legacy_keys_with_aux": ("layer_norm", 128, 2, True, True, 5, "legacy", None, (11, 8)),
    "sidecar_heads": ("group_norm", 64, 4, False, False, None, "plain", {"num_heads": 4}, (16, 2)),
}


@pytest.mark.parametrize("name", list(TA_VARIANTS))
def test_torchaudio_state_dict_parity(tmp_path, name):
    mode, embed, heads, ln_first, bias, aux, wn_form, sidecar, pos = TA_VARIANTS[name]
    model = torchaudio_model(mode, embed, heads, ln_first, bias, aux, pos)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    prefix = "encoder.transformer.pos_conv_embed.conv."
    g, v = state.pop(prefix + "parametrizations.weight.original0"), state.pop(prefix + "parametrizations.weight.original1")
    if wn_form == "parametrized":
        state[prefix + "parametrizations.weight.original0"], state[prefix + "parametrizations.weight.original1"] = g, v
    elif wn_form == "legacy":
        state[prefix + "weight_g"], state[prefix + "weight_v"] = g, v
    else:  # weight norm removed: the effective weight only
        state[prefix + "weight"] = model.encoder.transformer.pos_conv_embed.conv.weight.detach().clone()
    path = tmp_path / "model.pth"
    torch.save(state, path)
    if sidecar:
        Path(str(path) + ".json").write_text(json.dumps(sidecar))
    teacher = load_teacher(path)
    assert teacher.config == TeacherConfig(
        conv_layers=tuple(TINY_CONV), norm_mode=mode, conv_bias=bias, embed_dim=embed, num_layers=3,
        num_heads=heads, ffn_dim=2 * embed, pos_conv_kernel=pos[0], pos_conv_groups=pos[1], layer_norm_first=ln_first)
    audio = audio_batch(2, 8000, seed=8)
    out = teacher(audio)
    assert_hidden_close(out.hidden_states[1:], torchaudio_reference(model, audio))
    features, _ = model.feature_extractor(audio, None)
    torch.testing.assert_close(out.features, features, atol=ATOL, rtol=1e-4)


def test_torchaudio_sidecar_is_needed_when_heads_are_not_inferable(tmp_path):
    model = torchaudio_model("group_norm", 64, 4, False, False)
    path = tmp_path / "model.pth"
    torch.save(model.state_dict(), path)
    teacher = load_teacher(path)  # infers 64 // 64 = 1 head: loads, but is not the same model
    assert teacher.config.num_heads == 1
    audio = audio_batch(1, 8000, seed=9)
    assert not torch.allclose(teacher(audio).hidden_states[-1], torchaudio_reference(model, audio)[-1], atol=1e-3)


def test_torchaudio_format_detected_by_content_not_extension(tmp_path):
    teacher = load_teacher("tiny-random:5")
    path = tmp_path / "weights.ckpt.bin"
    torch.save(teacher.state_dict(), path)
    loaded = load_teacher(path)
    assert loaded.config.num_heads == 1  # 64 // 64: not in the weights (a sidecar would say 4)
    assert dataclasses.replace(loaded.config, num_heads=4) == teacher.config
    for (k, a), (_, b) in zip(teacher.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


# ------------------------------------------------------------------------------------ behaviour

def test_padded_batch_equals_one_by_one():
    teacher = load_teacher("tiny-random:2")
    lengths = [9000, 6000, 3200, 400]
    audio = audio_batch(len(lengths), max(lengths), seed=10)
    for b, n in enumerate(lengths):
        audio[b, n:] = 3.0  # garbage padding must not leak
    out = teacher(audio, torch.tensor(lengths))
    frames = conv_output_lengths(torch.tensor(lengths), teacher.config.conv_layers)
    assert out.lengths.tolist() == frames.tolist()
    assert frames[-1] == 1
    for b, n in enumerate(lengths):
        single = teacher(audio[b: b + 1, :n])
        t = int(frames[b])
        torch.testing.assert_close(out.features[b, :t], single.features[0], atol=1e-5, rtol=1e-5)
        assert torch.all(out.features[b, t:] == 0)
        for i, (h, s) in enumerate(zip(out.hidden_states, single.hidden_states)):
            torch.testing.assert_close(h[b, :t], s[0], atol=1e-5, rtol=1e-5, msg=lambda m: f"utt {b} layer {i}: {m}")
            assert torch.all(h[b, t:] == 0)


def test_tiny_random_is_deterministic_per_seed():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = load_teacher("tiny-random:7")
    assert torch.equal(torch.rand(3), expected_next), "the global RNG must be left alone"
    b, c = load_teacher("tiny-random:7"), load_teacher("tiny-random:8")
    default, zero = load_teacher("tiny-random"), load_teacher("tiny-random:0")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sum(not torch.equal(sa[k], sc[k]) for k in sa) == len(sa)
    assert all(torch.equal(x, y) for x, y in zip(default.state_dict().values(), zero.state_dict().values()))
    assert a.config == TeacherConfig.tiny()
    assert a.config.conv_layers == tuple(TINY_CONV) and a.config.num_layers == 6 and a.config.embed_dim == 64


def test_teacher_is_frozen_eval_and_runs_only_needed_layers():
    teacher = load_teacher("tiny-random")
    assert not any(p.requires_grad for p in teacher.parameters())
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    parent = nn.ModuleDict({"teacher": teacher, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training and not teacher.training
    assert not any(m.training for m in teacher.modules())
    audio = audio_batch(2, 5000, seed=11).requires_grad_(True)
    full = teacher(audio)
    assert len(full.hidden_states) == 7 and not full.hidden_states[-1].requires_grad
    part = teacher(audio, layers=[2, 1])
    assert len(part.hidden_states) == 3
    for a, b in zip(part.hidden_states, full.hidden_states):
        assert torch.equal(a, b)
    assert len(teacher(audio, layers=[0]).hidden_states) == 1
    for bad in ([7], [-1], []):
        with pytest.raises(OfactlError, match="layers"):
            teacher(audio, layers=bad)
    with pytest.raises(OfactlError, match="batch, samples"):
        teacher(audio[0])


# ------------------------------------------------------------------------------------ bad inputs


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_TEACHER_TEST",))


def _hf_dir(tmp_path, **overrides):
    teacher = load_teacher("tiny-random")
    config = {"model_type": "hubert", "conv_dim": [32] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
              "conv_stride": [5, 2, 2, 2, 2, 2, 2], "feat_extract_norm": "group", "conv_bias": False,
              "hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 128,
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "do_stable_layer_norm": False}
    config.update(overrides)
    (tmp_path / "config.json").write_text(json.dumps(config))
    state = _ta_to_hf(teacher.state_dict())
    torch.save(state, tmp_path / "pytorch_model.bin")
    return tmp_path


def _ta_to_hf(state: dict) -> dict:
    return {k.replace("encoder.feature_projection.", "feature_projection.").replace("encoder.transformer.", "encoder."): v
            for k, v in state.items()}


def _fairseq(tmp_path, **cfg_overrides):
    state = hf_to_fairseq(_ta_to_hf(load_teacher("tiny-random").state_dict()), stable=False)
    cfg = {"conv_feature_layers": TINY_CONV_STR, "extractor_mode": "default", "encoder_layers": 6,
           "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4, "conv_pos": 16,
           "conv_pos_groups": 4, "layer_norm_first": False, "conv_bias": False}
    cfg.update(cfg_overrides)
    path = tmp_path / "fairseq.pt"
    torch.save({"cfg": {"model": cfg}, "model": state}, path)
    return path


def test_helpers_build_loadable_checkpoints(tmp_path):
    """The bad-input cases below start from these; make sure the unmodified ones load and match."""
    ref = load_teacher("tiny-random").state_dict()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for path in (_hf_dir(tmp_path / "a"), _fairseq(tmp_path / "b")):
        loaded = load_teacher(path).state_dict()
        assert all(torch.equal(ref[k], loaded[k]) for k in ref)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(load_teacher("tiny-random").state_dict(), good)
    data = good.read_bytes()
    return _write(tmp_path / "truncated.pt", data[: len(data) // 2])


def _nonstandard_kernels(tmp_path):
    state = load_teacher("tiny-random").state_dict()
    state["feature_extractor.conv_layers.6.conv.weight"] = torch.randn(32, 32, 3)
    torch.save(state, tmp_path / "odd.pth")
    return tmp_path / "odd.pth"


def _with_sidecar(text):
    def build(tmp_path):
        path = tmp_path / "model.pth"
        torch.save(load_teacher("tiny-random").state_dict(), path)
        Path(str(path) + ".json").write_text(text)
        return path
    return build


def _torch_file(obj, name="thing.pt"):
    def build(tmp_path):
        torch.save(obj, tmp_path / name)
        return tmp_path / name
    return build


def _hf_weights_without_config(tmp_path):
    d = _hf_dir(tmp_path)
    sub = tmp_path / "alone"
    sub.mkdir()
    (d / "pytorch_model.bin").rename(sub / "pytorch_model.bin")
    return sub / "pytorch_model.bin"


def _fairseq_state_only(tmp_path):
    ckpt = torch.load(_fairseq(tmp_path), weights_only=True)
    torch.save(ckpt["model"], tmp_path / "state_only.pt")
    return tmp_path / "state_only.pt"


def _fairseq_extra_key(tmp_path):
    path = _fairseq(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["encoder.layers.0.adapter.weight"] = torch.zeros(2)
    torch.save(ckpt, path)
    return path


def _fairseq_finetuned(tmp_path):
    path = _fairseq(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {"w2v_encoder.w2v_model." + k: v for k, v in ckpt["model"].items()}
    torch.save(ckpt, path)
    return path


BAD_INPUTS = {
    "missing_path": (lambda t: t / "nope.pt", "not found"),
    "dir_without_config": (lambda t: t, "no config.json"),
    "config_json_passed_directly": (lambda t: _hf_dir(t) / "config.json", "config file"),
    "unsupported_model_type": (lambda t: _hf_dir(t, model_type="bert"), "model_type"),
    "hf_missing_field": (lambda t: _hf_dir(t, hidden_size=None), "hidden_size"),
    "hf_shape_mismatch": (lambda t: _hf_dir(t, intermediate_size=96), "shape"),
    "hf_layer_count_mismatch": (lambda t: _hf_dir(t, num_hidden_layers=7), "no tensor"),
    "hf_unsupported_option": (lambda t: _hf_dir(t, conv_pos_batch_norm=True), "conv_pos_batch_norm"),
    "hf_no_weights": (lambda t: (_hf_dir(t) / "pytorch_model.bin").unlink() or t, "no model.safetensors"),
    "hf_weights_without_config": (_hf_weights_without_config, "config.json"),
    "empty_file": (lambda t: _write(t / "empty.pt", b""), "cannot read"),
    "random_bytes": (lambda t: _write(t / "noise.pt", os.urandom(4096)), "cannot read"),
    "text_file": (lambda t: _write(t / "notes.txt", b"hello world\n"), "cannot read"),
    "truncated_torch_file": (_truncated, "cannot read"),
    "truncated_safetensors": (lambda t: _write(t / "x.safetensors", b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":"),
                              "cannot read"),
    "torch_list": (_torch_file([1, 2, 3]), "not a HuBERT checkpoint"),
    "unknown_keys": (_torch_file({"foo.weight": torch.zeros(3)}), "unknown key layout"),
    "unsafe_pickle": (_torch_file({"model": _Evil()}), "refused, nothing in it was loaded"),
    "fairseq_state_without_cfg": (_fairseq_state_only, "without their config"),
    "fairseq_malicious_conv_string": (lambda t: _fairseq(t, conv_feature_layers="__import__('os').system('touch PWNED_BY_TEACHER_TEST')"),
                                      "conv_feature_layers"),
    "fairseq_bad_extractor_mode": (lambda t: _fairseq(t, extractor_mode="fancy"), "extractor_mode"),
    "fairseq_layer_mismatch": (lambda t: _fairseq(t, encoder_layers=8), "no tensor"),
    "fairseq_dim_mismatch": (lambda t: _fairseq(t, encoder_ffn_embed_dim=256), "shape"),
    "fairseq_bad_heads": (lambda t: _fairseq(t, encoder_attention_heads=5), "divisible"),
    "fairseq_unknown_tensor": (_fairseq_extra_key, "unexpected fairseq tensor"),
    "fairseq_finetuned": (_fairseq_finetuned, "fine-tuned"),
    "torchaudio_nonstandard_kernels": (_nonstandard_kernels, "strides"),
    "sidecar_bad_json": (_with_sidecar("{not json"), "sidecar"),
    "sidecar_unknown_field": (_with_sidecar('{"heads": 4}'), "unknown field"),
    "sidecar_bad_value": (_with_sidecar('{"num_heads": 3}'), "divisible"),
    "sidecar_wrong_layers": (_with_sidecar('{"num_layers": 5}'), "unexpected tensor"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_ofactl_error(tmp_path, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build, expected = BAD_INPUTS[case]
    work = tmp_path / "work"
    work.mkdir()
    path = build(work)
    with pytest.raises(OfactlError) as info:
        load_teacher(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    if case != "unsupported_model_type" and "sidecar" not in case:
        assert str(path) in message or str(path.parent) in message, message
    assert info.value.hint
    assert not list(tmp_path.rglob("PWNED_BY_TEACHER_TEST"))


@pytest.mark.parametrize("spec", ["tiny-random:abc", "tiny-random:-1"])
def test_bad_tiny_random_seed(spec):
    with pytest.raises(OfactlError, match="seed"):
        load_teacher(spec)


# ------------------------------------------------------------------------------------ student init


def test_init_student_from_teacher_lam0_matches_teacher():
    model = pytest.importorskip("ofactl.model")
    torch.manual_seed(0)
    # a student that keeps HuBERT's LayerNorm before the projection equals the teacher at lambda 0
    config = model.StudentConfig.from_dict({**model.StudentConfig.preset("tiny").to_dict(),
                                             "projection_layer_norm": True})
    student = model.OFAStudent(config)
    teacher = load_teacher("tiny-random:1")
    plain = model.OFAStudent(model.StudentConfig.from_dict({**model.StudentConfig.preset("tiny").to_dict(),
                                                            "projection_layer_norm": False}))  # as DistilHuBERT
    assert not any(k.startswith("encoder.feature_projection.layer_norm.")
                   for k in init_student_from_teacher(plain, teacher))
    lengths = torch.tensor([8000, 5100])
    audio = audio_batch(2, 8000, seed=12)
    ref = teacher(audio, lengths, layers=[2])
    student.eval()
    with torch.no_grad():
        before = student(audio, lengths, lam=0.0)
    assert not torch.allclose(before.hidden_states[2], ref.hidden_states[2], atol=1e-3)

    copied = init_student_from_teacher(student, teacher)
    assert any(k.startswith("feature_extractor.conv_layers.0.layer_norm.") for k in copied)
    assert any(k.startswith("encoder.transformer.pos_conv_embed.") for k in copied)
    assert "encoder.transformer.layer_norm.weight" in copied
    assert any(k.startswith("encoder.transformer.layers.1.") for k in copied)
    assert not any(k.startswith(("alpha_module.", "heads.")) for k in copied)

    student.eval()
    with torch.no_grad():
        out = student(audio, lengths, lam=0.0)
    assert out.lengths.tolist() == ref.lengths.tolist()
    for i in range(3):
        for b, t in enumerate(ref.lengths.tolist()):
            torch.testing.assert_close(out.hidden_states[i][b, :t], ref.hidden_states[i][b, :t], atol=1e-5,
                                       rtol=1e-5, msg=lambda m: f"layer {i} utt {b}: {m}")


def test_init_student_shape_mismatch_names_key_and_shapes():
    teacher = load_teacher("tiny-random")
    config = TeacherConfig.tiny()
    config.embed_dim, config.ffn_dim = 96, 192
    wide = Teacher(config)  # same attribute names as a student
    with pytest.raises(OfactlError) as info:
        init_student_from_teacher(wide, teacher)
    message = str(info.value)
    assert "encoder.feature_projection.projection.weight" in message
    assert "(96, 32)" in message and "(64, 32)" in message
    with pytest.raises(OfactlError, match="layers"):
        init_student_from_teacher(teacher, load_teacher("tiny-random"), num_layers=7)
    copied = init_student_from_teacher(Teacher(TeacherConfig.tiny()), teacher, num_layers=2)
    assert not any(k.startswith("encoder.transformer.layers.2.") for k in copied)
