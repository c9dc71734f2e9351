"""s3prl DistilHuBERT checkpoints (issue 15): parity against s3prl's own DistillerModel, and bad input.

s3prl is installed with ``--no-deps`` by ``make setup`` (its distiller needs only torch and numpy); the parity
test is skipped, with the reason, only where it could not be installed.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ofactl.errors import OfactlError
from ofactl.s3prl_import import import_distilhubert, read_distiller, student_from_distiller

#: DistilHuBERT as s3prl's pretrain/distiller/config_model.yaml builds it
DISTILHUBERT = {
    "extractor_mode": "default",
    "extractor_conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "feature_grad_mult": 0.1,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "encoder_layers": 2,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "attention_type": "original",
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "encoder_layerdrop": 0.0,
    "final_dim": 768,
    "out_layer_type": "expand-last",
    "out_layer_inter_dim": -1,
    "n_tasks": 3,
    "task_emb_type": "expand-last",
    "pred_layer_id": [4, 8, 12],
}


@pytest.fixture(scope="module")
def s3prl_checkpoint(tmp_path_factory):
    """s3prl's own DistillerModel (random weights), saved in the format s3prl's distiller pretraining writes."""
    model_mod = pytest.importorskip("s3prl.upstream.distiller.model",
                                    reason="s3prl is not installed (make setup installs it with --no-deps)")
    torch.manual_seed(0)
    model = model_mod.DistillerModel(model_mod.DistillerConfig(DISTILHUBERT)).eval()
    with torch.no_grad():  # random heads biases too (s3prl initialises some parameters to zero)
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("s3prl") / "distilhubert.ckpt"
    torch.save({"Distiller": model.state_dict(), "Config": {"distiller": dict(DISTILHUBERT)}, "Step": 200000}, path)
    return model, path


def _s3prl_forward(model, wave: torch.Tensor, length: int):
    pad_mask = (torch.arange(wave.shape[1])[None] < length).float()
    with torch.no_grad():
        _, _, pred, _, hidden = model(wave, pad_mask, get_hidden=True)
    return hidden[-1], pred


def test_parity_with_s3prl_at_lambda_0(s3prl_checkpoint, tmp_path):
    """The imported student at lambda 0 equals s3prl's DistillerModel (last layer and prediction heads), one
    utterance at a time and in a padded batch (valid frames; s3prl's GroupNorm would see a batch's padding, so
    its reference is always one utterance at a time)."""
    model, path = s3prl_checkpoint
    out = import_distilhubert(path, tmp_path / "imported")
    from ofactl.checkpoint import load_student

    student = load_student(out).eval()
    g = torch.Generator().manual_seed(1)
    waves = [0.1 * torch.randn(n, generator=g) for n in (48000, 37000)]
    refs = [_s3prl_forward(model, w[None], w.shape[0]) for w in waves]
    lengths = torch.tensor([w.shape[0] for w in waves])
    batch = torch.zeros(2, 48000)
    for i, w in enumerate(waves):
        batch[i, : w.shape[0]] = w
    with torch.no_grad():
        padded = student(batch, lengths, lam=0.0)
        for i, (w, (ref_hidden, ref_pred)) in enumerate(zip(waves, refs)):
            one = student(w[None], None, lam=0.0)
            t = ref_hidden.shape[1]
            assert int(one.lengths[0]) == t and int(padded.lengths[i]) == t
            for got in (one, padded):
                b = 0 if got is one else i
                assert (got.hidden_states[-1][b, :t] - ref_hidden[0]).abs().max() <= 1e-4
                assert (got.predictions[b, :, :t] - ref_pred[0]).abs().max() <= 1e-4


def test_import_records_where_the_weights_came_from(s3prl_checkpoint, tmp_path):
    _, path = s3prl_checkpoint
    out = import_distilhubert(path, tmp_path / "m")
    from ofactl.checkpoint import read_checkpoint

    training = read_checkpoint(out).training
    assert training["imported_from"] == str(path.resolve()) and "freshly initialised" in training["alpha_module"]
    config, state, _ = read_distiller(path)
    assert config.target_layers == (4, 8, 12) and config.feature_grad_mult == 0.1
    assert not config.projection_layer_norm and not any(k.startswith("alpha_module.") for k in state)
    with pytest.raises(OfactlError, match="already holds a model"):
        import_distilhubert(path, out)


def test_the_cli_imports_and_refuses_other_files_in_one_line(s3prl_checkpoint, tmp_path):
    _, path = s3prl_checkpoint
    run = [sys.executable, "-m", "ofactl", "import"]
    ok = subprocess.run(run + [str(path), "--out", str(tmp_path / "m")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m" / "model.pt").is_file() and "alpha module freshly initialised" in ok.stdout
    hubert = tmp_path / "hubert.pt"  # a fairseq checkpoint: a teacher, not a student
    torch.save({"cfg": {"model": {"_name": "hubert"}}, "model": {"encoder.layers.0.fc1.weight": torch.zeros(2, 2)}},
               hubert)
    bad = subprocess.run(run + [str(hubert), "--out", str(tmp_path / "h")], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[0] == (f"error: {hubert} is not an s3prl DistilHuBERT checkpoint: it holds "
                                          "top-level keys cfg, model (a fairseq checkpoint, e.g. HuBERT: a teacher, "
                                          "for `ofactl pretrain --teacher`)")


class _Payload:
    def __reduce__(self):
        return (print, ("payload ran",))


def test_a_checkpoint_with_code_in_it_is_refused_unloaded(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"Distiller": {}, "Config": {"distiller": {}}, "Optimizer": _Payload()}, f, protocol=2)
    with pytest.raises(OfactlError) as err:
        read_distiller(path)
    assert "refused, nothing in it was loaded" in err.value.message and "weights_only=False" not in str(err.value)


def test_unsupported_variants_and_mismatched_weights_are_one_line(tmp_path):
    path = tmp_path / "v.ckpt"
    torch.save({"Distiller": {"x": torch.zeros(1)}, "Config": {"distiller": {**DISTILHUBERT, "task_emb_type": "add"}}},
               path)
    with pytest.raises(OfactlError, match="distiller task_emb_type is 'add'; ofactl represents DistilHuBERT's "
                                          "'expand-last' only"):
        read_distiller(path)
    torch.save({"Distiller": {"post_extract_proj.weight": torch.zeros(768, 512)},
                "Config": {"distiller": DISTILHUBERT}}, path)
    with pytest.raises(OfactlError, match="the weights do not match the distiller config"):
        student_from_distiller(path)
    torch.save({"Distiller": {"task_embedding.weight": torch.zeros(3, 768)}, "Config": {"distiller": DISTILHUBERT}},
               path)
    with pytest.raises(OfactlError, match="unexpected tensor task_embedding.weight"):
        read_distiller(path)
    with pytest.raises(OfactlError, match="no such file"):
        read_distiller(tmp_path / "absent.ckpt")
    assert Path(path).exists()


TINY = {**DISTILHUBERT, "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
        "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4, "conv_pos": 16,
        "conv_pos_groups": 4, "final_dim": 64, "pred_layer_id": [2, 4, 6]}


def test_pretraining_starts_from_an_s3prl_checkpoint(tmp_path):
    """`pretrain --init-student CKPT`: the student starts from the checkpoint's weights (here with lr 0 they stay),
    with its architecture; the alpha module is new."""
    import numpy as np
    import soundfile as sf

    model_mod = pytest.importorskip("s3prl.upstream.distiller.model",
                                    reason="s3prl is not installed (make setup installs it with --no-deps)")
    from ofactl.checkpoint import load_student
    from ofactl.pretrain_config import load_pretrain_config
    from ofactl.train import pretrain

    torch.manual_seed(0)
    distiller = model_mod.DistillerModel(model_mod.DistillerConfig(TINY))
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"Distiller": distiller.state_dict(), "Config": {"distiller": TINY}}, ckpt)
    wavs = tmp_path / "train"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(wavs / f"u{i}.wav", (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {tmp_path / 'm'}\nteacher: tiny-random\ninit_student: {ckpt}\nsteps: 2\nsave_every: 2\n"
                   f"optim: {{lr: 0.0}}\ndata: {{path: {wavs}, crop_s: 1.0, max_batch_s: 4.0, num_workers: 0}}\n")
    result = pretrain(load_pretrain_config(cfg))
    assert result.finished
    trained = load_student(tmp_path / "m")
    imported = student_from_distiller(ckpt)
    assert trained.config.embed_dim == 64 and trained.config.target_layers == (2, 4, 6)
    theirs = imported.state_dict()
    for key, value in trained.state_dict().items():
        if not key.startswith("alpha_module."):
            torch.testing.assert_close(value, theirs[key], msg=key)
    with pytest.raises(OfactlError, match="--init-student .*: no such file or folder"):
        load_pretrain_config(cfg, {"init_student": str(tmp_path / "absent.ckpt")}).check_inputs()
