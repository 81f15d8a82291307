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


def test_the_inversion_file_round_trips_and_refuses_other_files(tmp_path, model):
    from hspace_core.inversion import load_inversion, save_inversion
    from hspace_core import save_direction
    from tests.engine.test_editing import direction_for as rand_direction

    images = smooth_images(1, 4)
    inv = invert_ddpm(model, images, steps=6, seed=2)
    back = load_inversion(save_inversion(inv, tmp_path / "inv.safetensors"))
    assert isinstance(back, DDPMInversion) and back.seed == 2 and torch.equal(back.noise_maps, inv.noise_maps)
    assert torch.equal(edit(model, back, None, 0.0).images, edit(model, inv, None, 0.0).images)
    with pytest.raises(HSpaceError, match="already exists"):
        save_inversion(inv, tmp_path / "inv.safetensors")
    ddim = load_inversion(save_inversion(invert(model, images, steps=6), tmp_path / "ddim.safetensors"))
    assert not isinstance(ddim, DDPMInversion) and ddim.x_T.shape == images.shape
    save_direction(rand_direction(model), tmp_path / "d.safetensors")
    with pytest.raises(HSpaceError, match="not an inversion file"):
        load_inversion(tmp_path / "d.safetensors")


def test_cli_invert_ddpm_then_edit_from_the_file(tmp_path):
    from PIL import Image

    from tests.engine.test_editing import _cli, _save_tiny

    model_path = _save_tiny(tmp_path, tiny_model("ddpm"))
    Image.new("RGB", (32, 32), (200, 120, 40)).save(tmp_path / "in.png")
    r = _cli("invert", "--model", str(model_path), "--image", str(tmp_path / "in.png"), "--method", "ddpm",
             "--steps", "6", "--out", str(tmp_path / "inv.safetensors"))
    assert r.returncode == 0, r.stderr
    err = float(r.stderr.split("max |error| ")[1].split()[0])
    assert err < 1e-3 and "(ddpm, 6 steps, 1 image(s)" in r.stderr
    from hspace_core import save_direction
    from hspace_core.loading import load_model
    from tests.engine.test_editing import direction_for as rand_direction
    save_direction(rand_direction(load_model(model_path)), tmp_path / "d.safetensors")
    out = tmp_path / "strip.png"
    r = _cli("edit", "--model", str(model_path), "--inversion", str(tmp_path / "inv.safetensors"), "--direction",
             str(tmp_path / "d.safetensors"), "--strength", "1", "--t-edit", "300", "--t-skip", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (3 * 32 + 4 * 2, 32 + 2 * 2)
    r = _cli("edit", "--model", str(model_path), "--inversion", str(tmp_path / "inv.safetensors"), "--direction",
             str(tmp_path / "d.safetensors"), "--strength", "1", "--steps", "10", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "replays its own 6-step grid" in r.stderr


def test_per_image_seeds_make_each_image_independent_of_its_batch(model, tmp_path):
    """One seed per image: an image's draws (inversion) and boosting noise (edit) are its own, so its
    inversion and edit in a batch equal those of the image alone; the file keeps the seeds."""
    from hspace_core.inversion import load_inversion, save_inversion

    images = smooth_images(3, 4)
    batch = invert_ddpm(model, images, steps=8, seed=(11, 22, 33))
    alone = invert_ddpm(model, images[2:], steps=8, seed=(33,))
    assert rel_err(batch.noise_maps[:, 2:], alone.noise_maps) < 1e-4
    shared = invert_ddpm(model, images, steps=8, seed=33)  # one generator: row 2 draws the batch's third chunk
    assert rel_err(shared.noise_maps[:, 2:], alone.noise_maps) > 1e-2
    x_T = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    d = direction_for(model)
    kw = dict(t_edit=400, t_boost=600, steps=8, eta=1.0)
    in_batch = edit(model, x_T, d, 1.0, seed=(7, 8, 9), **kw).images[2]
    assert rel_err(in_batch, edit(model, x_T[2:], d, 1.0, seed=(9,), **kw).images[0]) < 1e-4
    assert rel_err(in_batch, edit(model, x_T[2:], d, 1.0, seed=(8,), **kw).images[0]) > 1e-2
    save_inversion(batch, tmp_path / "inv.safetensors")
    assert load_inversion(tmp_path / "inv.safetensors").seed == (11, 22, 33)
    with pytest.raises(HSpaceError, match="per-image seeds must be 3"):
        invert_ddpm(model, images, steps=8, seed=(1, 2))
