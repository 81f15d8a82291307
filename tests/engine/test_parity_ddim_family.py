"""DDIM/SDEdit family and google's diffusers ddpm-* models: parity with diffusers UNet2DModel.

Random weights in the real configurations, written in the real formats and key names, loaded
through ``load_model``; eps must match the reference to 1e-4 relative and h must equal the
reference's middle-block output.
"""

import json

import pytest
import torch

from hspace_core import Family, load_model
from tests.engine.references import (GOOGLE_256, GOOGLE_CIFAR10, GOOGLE_SCHEDULER, ddim_keys_from_diffusers,
                                     diffusers_unet, legacy_attention_names, rel_err, run_with_middle)

# the released 256 px configurations run at 64 px in the default run (the networks are convolutional: every
# weight and the attention levels take part, h is 2 x 2), at 256 px with -m slow
AT_SIZES = [64, pytest.param(256, marks=pytest.mark.slow)]


def _check(model, ref, size, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    t = torch.tensor([999, 3][:batch] + [500] * max(0, batch - 2))
    eps_ref, h_ref = run_with_middle(ref, ref.mid_block, x, t)
    with torch.no_grad():
        enc = model.encode(x, t)
        eps = model.decode(enc, enc.h).eps
    assert enc.h.shape == h_ref.shape
    assert rel_err(enc.h, h_ref) < 1e-4
    assert rel_err(eps, eps_ref.sample) < 1e-4
    return enc.h


def _save_ddim_ckpt(ref, config, path):
    sd = ddim_keys_from_diffusers(ref.state_dict(), len(config["block_out_channels"]))
    torch.save(sd, path)
    return sd


@pytest.mark.parametrize("size", AT_SIZES)
def test_sdedit_celebahq_256(tmp_path, size):
    ref = diffusers_unet(GOOGLE_256, seed=1)
    _save_ddim_ckpt(ref, GOOGLE_256, tmp_path / "celeba_hq.ckpt")
    model = load_model(tmp_path / "celeba_hq.ckpt")
    assert model.family is Family.DDIM
    assert model.image_size == 256 and model.h_shape == (512, 8, 8)
    assert model.num_params == 113_673_219
    assert model.config.ch_mult == (1, 1, 2, 2, 4, 4) and model.config.attn_levels_down == (4,)
    assert model.warnings == ()
    _check(model, ref, size)


def test_ddim_cifar10_32(tmp_path):
    ref = diffusers_unet(GOOGLE_CIFAR10, seed=2)
    _save_ddim_ckpt(ref, GOOGLE_CIFAR10, tmp_path / "model-790000.ckpt")
    model = load_model(tmp_path / "model-790000.ckpt")
    assert model.image_size == 32 and model.h_shape == (256, 4, 4) and model.num_params == 35_746_307
    _check(model, ref, 32, batch=3)


def _diffusers_folder(ref, config, path, legacy=False, scheduler=True, fmt="bin"):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4",
                                                  **config}))
    sd = ref.state_dict()
    if legacy:
        sd = legacy_attention_names(sd)
    if fmt == "bin":
        torch.save(sd, path / "diffusion_pytorch_model.bin")
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "diffusion_pytorch_model.safetensors"))
    if scheduler:
        (path / "scheduler_config.json").write_text(json.dumps(GOOGLE_SCHEDULER))
    return path


@pytest.mark.parametrize("size", AT_SIZES)
def test_google_ddpm_ema_celebahq_256_folder(tmp_path, size):
    ref = diffusers_unet(GOOGLE_256, seed=3)
    folder = _diffusers_folder(ref, GOOGLE_256, tmp_path / "ddpm-ema-celebahq-256", legacy=True)
    model = load_model(folder)
    assert model.family is Family.DIFFUSERS and model.h_shape == (512, 8, 8)
    assert model.schedule.kind == "linear" and model.schedule.num_timesteps == 1000
    _check(model, ref, size)


@pytest.mark.parametrize("legacy,fmt", [(False, "safetensors"), (True, "bin")])
def test_google_ddpm_cifar10_32_folder(tmp_path, legacy, fmt):
    ref = diffusers_unet(GOOGLE_CIFAR10, seed=4)
    folder = _diffusers_folder(ref, GOOGLE_CIFAR10, tmp_path / "ddpm-cifar10-32", legacy=legacy, fmt=fmt)
    model = load_model(folder)
    assert model.family is Family.DIFFUSERS and model.h_shape == (256, 4, 4)
    _check(model, ref, 32, batch=2)


def test_diffusers_class_defaults_are_honoured(tmp_path):
    """A diffusers-trained model gets the class defaults (flip_sin_to_cos, shift 0, eps 1e-5,
    symmetric downsample padding, 8-channel heads), which differ from google's values."""
    config = {k: v for k, v in GOOGLE_CIFAR10.items()
              if k not in ("attention_head_dim", "flip_sin_to_cos", "freq_shift", "norm_eps", "downsample_padding")}
    ref = diffusers_unet(config, seed=5)
    model = load_model(_diffusers_folder(ref, config, tmp_path / "butterflies", scheduler=False))
    c = model.config
    assert (c.flip_sin_to_cos, c.freq_shift, c.norm_eps, c.downsample_padding, c.attention_head_dim) == \
        (True, 0.0, 1e-5, 1, 8)
    assert any("noise schedule" in w for w in model.warnings)
    _check(model, ref, 32)


def test_same_weights_same_h_across_formats(tmp_path):
    """The SDEdit .ckpt and the google folder of one network give the same h (checkpoints.md 4.6)."""
    ref = diffusers_unet(GOOGLE_CIFAR10, seed=6)
    _save_ddim_ckpt(ref, GOOGLE_CIFAR10, tmp_path / "a.ckpt")
    a = load_model(tmp_path / "a.ckpt")
    b = load_model(_diffusers_folder(ref, GOOGLE_CIFAR10, tmp_path / "b"))
    assert a.fingerprint == b.fingerprint
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([321])
    with torch.no_grad():
        assert rel_err(a.encode(x, t).h, b.encode(x, t).h) < 1e-5
