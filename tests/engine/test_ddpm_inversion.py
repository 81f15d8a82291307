"""Edit-friendly DDPM inversion: exact regeneration, edits on top with the shared maps, t_skip, and
refusals of mismatched inversions."""

from dataclasses import replace

import pytest
import torch

from hspace_core import DDPMInversion, HSpaceError, edit, invert, invert_ddpm
from tests.engine.references import rel_err, tiny_model
from tests.engine.test_editing import direction_for


def smooth_images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module", params=["ddpm", "adm"])
def model(request):
    return tiny_model(request.param)


def test_unedited_replay_lands_on_the_images(model):
    images = smooth_images(2, 0)
    inv = invert_ddpm(model, images, steps=12, seed=3)
    assert inv.noise_maps.shape == (12, 2, 3, 32, 32) and inv.nbytes == 12 * 2 * 3 * 32 * 32 * 4
    out = edit(model, inv, None, 0.0).images[:, 0]
    assert (out - images).abs().max() < 1e-3
    # the maps are what makes it exact: DDIM inversion of the same random network is far off
    ddim = edit(model, invert(model, images, steps=12), None, 0.0).images[:, 0]
    assert (ddim - images).abs().max() > 100 * (out - images).abs().max()
    # float32 error only: x at t = 999 is ~160 times the image in the walk's coordinates (measured 2e-4)


def test_an_edit_replays_the_same_maps_for_every_strength(model):
    images = smooth_images(2, 1)
    inv = invert_ddpm(model, images, steps=10, seed=0)
    d = direction_for(model)
    sweep = edit(model, inv, d, [0.0, 1.0, -2.0], t_edit=400).images
    alone = {s: edit(model, inv, d, s, t_edit=400).images[:, 0] for s in (0.0, 1.0, -2.0)}
    for j, s in enumerate([0.0, 1.0, -2.0]):
        assert rel_err(sweep[:, j], alone[s]) < 1e-3  # batch-size rounding (2e-4 on this random network)
    assert (sweep[:, 0] - images).abs().max() < 1e-3
    assert (sweep[:, 1] - sweep[:, 0]).abs().mean() > 1e-3  # the edit edits
    # the result does not depend on the sampler's seed: the randomness is the inversion's
    assert torch.equal(edit(model, inv, d, 1.0, t_edit=400, seed=9).images[:, 0], alone[1.0])


def test_t_skip_starts_lower_and_still_reconstructs(model):
    images = smooth_images(1, 2)
    inv = invert_ddpm(model, images, steps=10, seed=1)
    d = direction_for(model)
    out = edit(model, inv, None, 0.0, t_skip=4).images[:, 0]
    assert (out - images).abs().max() < 1e-3
    full, skipped = (edit(model, inv, d, 2.0, t_edit=300, t_skip=k).images[:, 0] for k in (0, 4))
    assert not torch.allclose(full, skipped)  # four fewer edited steps
    assert (skipped - images).abs().mean() < (full - images).abs().mean()


def test_mismatched_inversions_are_refused(model):
    images = smooth_images(1, 3)
    inv = invert_ddpm(model, images, steps=8)
    with pytest.raises(HSpaceError, match="replays its own 8-step grid"):
        edit(model, inv, None, 0.0, steps=20)
    with pytest.raises(HSpaceError, match="do not belong to 1 image"):
        replace(inv, noise_maps=torch.zeros(8, 1, 3, 16, 16))
    with pytest.raises(HSpaceError, match="do not belong"):
        DDPMInversion(inv.x_0, inv.noise_maps[:5], inv.timesteps, inv.fingerprint, inv.preprocessing, 0)
    with pytest.raises(HSpaceError, match="another model"):
        edit(tiny_model("adm" if model.network == "ddpm" else "ddpm"), inv, None, 0.0)
    with pytest.raises(HSpaceError, match=r"t_skip must be an integer in \[0, 7\]"):
        edit(model, inv, None, 0.0, t_skip=8)
    with pytest.raises(HSpaceError, match="t_skip needs an edit-friendly inversion"):
        edit(model, invert(model, images, steps=8), None, 0.0, t_skip=2)
