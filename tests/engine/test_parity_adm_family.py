"""ADM family (improved-diffusion / guided-diffusion): parity with openai's guided_diffusion UNetModel.

Random weights in the released checkpoints' configurations, saved as the plain state dicts the
repositories save, loaded through ``load_model`` with no overrides (heads, schedule and timestep
rescaling come from the presets of checkpoints.md 3.3).
"""

import dataclasses

import pytest
import torch

from hspace_core import Family, load_model
from hspace_core.unets import ADMUNet
from tests.engine.references import (ADM_IMAGENET_256, IDDPM_CIFAR10, IDDPM_LSUN_256, ILVR_AFHQ_256,
                                     P2_CELEBA_256, guided_unet, rel_err, run_with_middle)

# the released 256 px configurations run at 64 px in the default run (the networks are convolutional: every
# weight and the attention levels take part, h is 2 x 2), at 256 px with -m slow
AT_SIZES = [64, pytest.param(256, marks=pytest.mark.slow)]


def _check(model, ref, size, batch=1, t_scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    t = torch.tensor([999, 0, 421][:batch])
    out_ref, h_ref = run_with_middle(ref, ref.middle_block, x, t.float() * t_scale)
    with torch.no_grad():
        enc = model.encode(x, t)
        pred = model.decode(enc, enc.h)
    assert rel_err(enc.h, h_ref) < 1e-4
    assert rel_err(pred.eps, out_ref[:, :3]) < 1e-4
    assert rel_err(pred.variance, out_ref[:, 3:]) < 1e-4
    return x, t, out_ref


def _load(ref, path):
    torch.save(ref.state_dict(), path)
    return load_model(path)


@pytest.mark.parametrize("size", AT_SIZES)
def test_p2_celebahq_256(tmp_path, size):
    ref = guided_unet(P2_CELEBA_256, seed=11)
    model = _load(ref, tmp_path / "celebahq_p2.pt")
    assert model.family is Family.ADM and model.learn_sigma
    assert model.h_shape == (512, 8, 8) and model.image_size == 256
    assert model.num_params == 93_563_910
    c = model.config
    assert (c.num_res_blocks, c.attention_ds, c.num_head_channels, c.resblock_updown) == (1, (16,), 64, True)
    assert model.schedule.kind == "linear" and not model.schedule.rescale_timesteps
    x, t, out_ref = _check(model, ref, size)
    # the head count matters and is not in the weights: one head instead of eight changes eps
    one_head = ADMUNet(dataclasses.replace(c, num_head_channels=None, num_heads=1))
    one_head.load_state_dict(ref.state_dict())
    with torch.no_grad():
        assert rel_err(one_head(x, t)[:, :3], out_ref[:, :3]) > 1e-3


@pytest.mark.slow
def test_ilvr_afhq_dog_256(tmp_path):
    ref = guided_unet(ILVR_AFHQ_256, seed=12)
    model = _load(ref, tmp_path / "afhq_dog_4m.pt")
    assert model.h_shape == (512, 8, 8)
    _check(model, ref, 256)


@pytest.mark.slow
def test_adm_imagenet_256_uncond(tmp_path):
    ref = guided_unet(ADM_IMAGENET_256, seed=13)
    model = _load(ref, tmp_path / "256x256_diffusion_uncond.pt")
    assert model.h_shape == (1024, 8, 8) and model.num_params == 552_814_086
    assert model.config.attention_ds == (8, 16, 32)
    _check(model, ref, 256)


def test_iddpm_cifar10_4000_step_cosine(tmp_path):
    """improved-diffusion's CIFAR-10 model: 4 heads, 4000-step cosine schedule, and the network
    receives t * 1000 / 4000 (rescale_timesteps), all from the preset."""
    ref = guided_unet(IDDPM_CIFAR10, seed=14)
    model = _load(ref, tmp_path / "cifar10_uncond_50M_500K.pt")
    assert model.h_shape == (256, 4, 4) and model.num_params == 52_546_438
    assert model.config.num_heads == 4 and model.config.num_head_channels is None
    s = model.schedule
    assert (s.kind, s.num_timesteps, s.rescale_timesteps) == ("cosine", 4000, True)
    _check(model, ref, 32, batch=3, t_scale=1000 / 4000)


@pytest.mark.slow
def test_iddpm_lsun_256(tmp_path):
    ref = guided_unet(IDDPM_LSUN_256, seed=15)
    model = _load(ref, tmp_path / "lsun_uncond_100M_1200K_bs128.pt")
    assert model.num_params == 113_676_678 and model.config.num_heads == 1
    _check(model, ref, 256)


def test_new_attention_order_override(tmp_path):
    kwargs = dict(IDDPM_CIFAR10, num_heads=1, num_head_channels=32, use_new_attention_order=True,
                  resblock_updown=True, model_channels=64, num_res_blocks=1)
    ref = guided_unet(kwargs, seed=16)
    torch.save(ref.state_dict(), tmp_path / "m.pt")
    legacy = load_model(tmp_path / "m.pt", num_head_channels=32)
    new = load_model(tmp_path / "m.pt", num_head_channels=32, attention_order="new")
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([700])
    out_ref, _ = run_with_middle(ref, ref.middle_block, x, t)
    with torch.no_grad():
        assert rel_err(new.predict(x, t).eps, out_ref[:, :3]) < 1e-4
        assert rel_err(legacy.predict(x, t).eps, out_ref[:, :3]) > 1e-3
