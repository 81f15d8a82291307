"""The Asyrp step against the official algorithm (asyrp.md 1.3, 3.1, 4.1-4.3, 9), written here
independently on top of the reference networks (diffusers UNet2DModel, guided_diffusion UNetModel):

  eps      = full forward on x_t
  eps~     = full forward with the middle block's output replaced by h + c * f(h, temb)
  P_t      = (x_t - sqrt(1 - a_t) eps~) / sqrt(a_t)
  x_prev   = sqrt(a_prev) P_t + sqrt(1 - a_prev - sigma^2) eps + sigma z,  sigma = eta * ...
with a_t from a float32 cumprod of the linear betas (as the official code computes it), edit when
t >= t_edit, eta = 1 when t < t_boost, c = strength * n_train_step / n_test_step.
Random weights in the released models' configurations; DeltaBlocks either seeded at random in the
official shapes and written in the official file format (always run), or the released smiling and
dog_happy checkpoints (when ../shared is present).
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hspace_core import edit, load_direction, load_model
from hspace_core.directions.deltablock import ADMDeltaBlock, DDPMDeltaBlock
from hspace_core.sampling import asyrp_step
from hspace_core.schedule import asyrp_timesteps
from hspace_core.seeding import reset_parameters_
from tests.engine.references import (GOOGLE_256, ILVR_AFHQ_256, ddim_keys_from_diffusers, diffusers_unet,
                                     guided_unet, rel_err)

ALPHAS = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64).float(), 0)


def official_ddpm_block(sd, h, temb):
    x = F.conv2d(h, sd["conv1.weight"], sd["conv1.bias"])
    x = x + F.linear(F.silu(temb), sd["temb_proj.weight"], sd["temb_proj.bias"])[:, :, None, None]
    x = F.group_norm(x, 32, sd["norm2.weight"], sd["norm2.bias"], eps=1e-6)
    return F.conv2d(F.silu(x), sd["conv2.weight"], sd["conv2.bias"])


def official_adm_block(sd, h, emb):
    x = F.silu(F.group_norm(h, 32, sd["in_layers.0.weight"], sd["in_layers.0.bias"], eps=1e-5))
    x = F.conv2d(x, sd["in_layers.2.weight"], sd["in_layers.2.bias"])
    x = x + F.linear(F.silu(emb), sd["emb_layers.1.weight"], sd["emb_layers.1.bias"])[:, :, None, None]
    x = F.silu(F.group_norm(x, 32, sd["out_layers.0.weight"], sd["out_layers.0.bias"], eps=1e-5))
    return F.conv2d(x, sd["out_layers.3.weight"], sd["out_layers.3.bias"])


class OfficialHost:
    """The official UNet call: (eps, eps~) for one x_t, the edit applied right after the middle block."""

    def __init__(self, net, middle, temb_module, block_fn, block_sd):
        self.net, self.middle, self.temb_module = net, middle, temb_module
        self.block_fn, self.block_sd = block_fn, block_sd

    def __call__(self, x, t, coef, edit):
        seen = {}
        hooks = [self.temb_module.register_forward_hook(lambda m, i, o: seen.__setitem__("temb", o)),
                 self.middle.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o))]
        with torch.no_grad():
            out = self.net(x, t)
        for hk in hooks:
            hk.remove()
        eps = (out.sample if hasattr(out, "sample") else out)[:, :3]
        if not edit:
            return eps, eps, None
        delta = self.block_fn(self.block_sd, seen["h"], seen["temb"])
        hook = self.middle.register_forward_hook(lambda m, i, o: o + coef * delta)
        with torch.no_grad():
            out = self.net(x, t)
        hook.remove()
        return eps, (out.sample if hasattr(out, "sample") else out)[:, :3], (seen["h"], seen["temb"], delta)


def official_step(host, x, t, t_prev, coef, t_edit, t_boost, z):
    e, e_tilde, _ = host(x, torch.full((x.shape[0],), t), coef, edit=t >= t_edit)
    a = ALPHAS[t]
    a_prev = torch.tensor(1.0) if t_prev < 0 else ALPHAS[t_prev]
    x0 = (x - e_tilde * (1 - a).sqrt()) / a.sqrt()
    eta = 1.0 if t < t_boost else 0.0
    if eta == 0:
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
    c1 = eta * ((1 - a / a_prev) * (1 - a_prev) / (1 - a)).sqrt()
    c2 = ((1 - a_prev) - c1 ** 2).sqrt()
    return a_prev.sqrt() * x0 + c2 * e + c1 * z


def official_trajectory(host, x_T, n, coef, t_edit, t_boost, seed):
    seq = asyrp_timesteps(n).tolist()
    g = torch.Generator().manual_seed(seed)
    x = x_T
    for t, t_prev in zip(reversed(seq), reversed([-1] + seq[:-1])):
        z = torch.randn(x_T.shape, generator=g) if t < t_boost else None
        x = official_step(host, x, t, t_prev, coef, t_edit, t_boost, z)
    return x


def block_file(request, tmp_path_factory, released: str, block_cls, seed: int) -> Path:
    """A DeltaBlock checkpoint in the official format: the released file from ../shared ("released"), or a
    block of the official shapes (512 channels, 512-wide embedding) seeded at random and saved the way the
    official code saves it ({"0": state dict, "optimizer": ..., "scheduler": ...}) under the same name."""
    if request.getfixturevalue("blocks") == "released":
        return request.getfixturevalue("shared_dir") / "asyrp_official" / "directions" / released
    block = reset_parameters_(block_cls(512, 512), torch.Generator().manual_seed(seed))
    path = tmp_path_factory.mktemp("blocks") / released
    torch.save({"0": block.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "scheduler": {}}, path)
    return path


def _ddpm_setup(request, tmp_path_factory):
    ref = diffusers_unet(GOOGLE_256, seed=21)
    path = tmp_path_factory.mktemp("m") / "celeba_hq.ckpt"
    torch.save(ddim_keys_from_diffusers(ref.state_dict(), 6), path)
    block_path = block_file(request, tmp_path_factory, "smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth", DDPMDeltaBlock,
                            seed=5)
    sd = torch.load(block_path, map_location="cpu", weights_only=True)["0"]
    host = OfficialHost(ref, ref.mid_block, ref.time_embedding, official_ddpm_block, sd)
    return load_model(path), load_direction(block_path), host


def _adm_setup(request, tmp_path_factory):
    ref = guided_unet(ILVR_AFHQ_256, seed=22)
    path = tmp_path_factory.mktemp("m") / "afhq_dog_4m.pt"
    torch.save(ref.state_dict(), path)
    block_path = block_file(request, tmp_path_factory, "dog_happy_LC_dog_t999_ninv40_ngen40_0.pth", ADMDeltaBlock, seed=6)
    sd = torch.load(block_path, map_location="cpu", weights_only=True)["0"]
    host = OfficialHost(ref, ref.middle_block, ref.time_embed, official_adm_block, sd)
    return load_model(path), load_direction(block_path), host


@pytest.fixture(scope="module", params=["seeded", pytest.param("released", marks=pytest.mark.slow)])
def blocks(request):
    """Where the DeltaBlocks come from (see ``block_file``). The seeded blocks prove the algorithm; the released
    ones (../shared) run the same cases again on the official weights with ``-m slow`` (about 100 s)."""
    return request.param


@pytest.fixture(scope="module", params=["ddpm", "adm"])
def setup(request, blocks, tmp_path_factory):
    """(our model loaded from the reference's weights, the DeltaBlock direction, the official host)."""
    return (_ddpm_setup if request.param == "ddpm" else _adm_setup)(request, tmp_path_factory)


@pytest.mark.parametrize("size", [64, pytest.param(256, marks=pytest.mark.slow)])
def test_delta_h_and_one_step(setup, size):
    """At 64 px (h 512 x 2 x 2: the networks are convolutional, every weight takes part) in the default run,
    at the released models' 256 px (h 8 x 8) with ``-m slow`` (about 100 s)."""
    model, direction, host = setup
    direction.check_fits(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, size, size, generator=g)
    t = 999
    # delta_h: our DeltaBlock on our h and emb vs the official forward on the reference's h and temb
    _, _, (h_ref, temb_ref, delta_ref) = host(x, torch.tensor([t]), 1.0, edit=True)
    with torch.no_grad():
        enc = model.encode(x, torch.tensor([t]))
        delta = direction.delta(enc.h, torch.tensor([t]), enc.emb, steps=40)
    assert rel_err(delta, delta_ref) < 1e-4
    assert delta_ref.abs().mean() > 1e-3 * h_ref.abs().mean()  # the block really shifts h
    # one full asymmetric step 999 -> 973 (40-step grid, strength 1, so c = 1 * 40 / 40)
    expected = official_step(host, x, t, 973, 1.0, t_edit=0, t_boost=0, z=None)
    with torch.no_grad():
        ours, _ = asyrp_step(model, x, t, 973, direction, torch.ones(1, 1, 1, 1), steps=40)
    assert rel_err(ours, expected) < 1e-4


def test_whole_edit_trajectory_with_every_interval_and_the_step_ratio(setup):
    """A 10-step walk with every interval: edit for t >= 461, plain DDIM below, eta = 1 below 167, at
    strength 1.5 on the 40-step DeltaBlock, so c = 1.5 * 40 / 10 (asyrp.md 4.3); a 32 px input (the networks
    are convolutional, h is 512 x 1 x 1) keeps the reference's forward passes affordable on CPU."""
    model, direction, host = setup
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grid = asyrp_timesteps(10, 999).tolist()
    assert any(t >= 461 for t in grid[1:]) and any(167 <= t < 461 for t in grid) and any(t < 167 for t in grid)
    expected = official_trajectory(host, x_T, 10, 1.5 * 40 / 10, t_edit=461, t_boost=167, seed=5)
    ours = edit(model, x_T, direction, [1.5], t_edit=461, t_boost=167, steps=10, eta=1.0, seed=5).images[:, 0]
    unedited = edit(model, x_T, None, [0.0], t_edit=461, t_boost=167, steps=10, seed=5).images[:, 0]
    err = rel_err(ours, expected)
    assert err < 1e-3
    assert rel_err(ours, unedited) > 20 * err  # the edit is far above the discrepancy
