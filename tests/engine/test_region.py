"""Regional directions: the shift weighted per h position by a mask's cover of that position."""

import pytest
import torch

from hspace_core import DirectionInfo, HSpaceError, TensorDirection, edit, invert, load_direction, mix, save_direction
from hspace_core.directions.region import mask_on_grid, restrict_to_region
from tests.engine.references import tiny_model


def direction(shape=(8, 4, 4), ts=(0, 500, 999), seed=0, name="d"):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(len(ts), *shape, generator=g) if ts else torch.randn(*shape, generator=g)
    return TensorDirection(values, torch.tensor(ts) if ts else None,
                           DirectionInfo(h_shape=shape, made_steps=10, name=name))


def test_the_mask_is_area_averaged_onto_the_grid():
    mask = torch.zeros(64, 64)
    mask[40:] = 1.0  # the lower 24 rows: grid rows 2 (half covered) and 3 (covered) of 4
    w = mask_on_grid(mask, (4, 4))
    assert torch.equal(w, torch.tensor([[0.0] * 4, [0.0] * 4, [0.5] * 4, [1.0] * 4]))
    assert torch.equal(mask_on_grid(mask[None], (2, 2)), torch.tensor([[0.0, 0.0], [0.75, 0.75]]))


def test_the_shift_is_kept_where_the_mask_covers_and_nowhere_else():
    d = direction()
    mask = torch.zeros(1, 32, 32)
    mask[:, 16:, :8] = 1.0  # lower left quarter: grid cells rows 2-3, column 0-1 -> rows 2-3, column 0 of 4 x 4
    r = restrict_to_region(d, mask)
    h, t = torch.zeros(2, 8, 4, 4), torch.tensor([250, 250])
    full, part = d.delta(h, t, None, steps=10), r.delta(h, t, None, steps=10)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[2:, :1] = True
    assert torch.equal(part[..., inside], full[..., inside])
    assert part[..., ~inside].abs().max() == 0
    assert r.info.provenance["region"][3] == [1.0, 0.0, 0.0, 0.0] and r.info.name == "d (region)"
    # the whole image is the direction itself
    assert torch.equal(restrict_to_region(d, torch.ones(32, 32)).values, d.values)


def test_a_mix_is_restricted_as_the_sum_of_its_restricted_terms_and_survives_a_file(tmp_path):
    a, b = direction(seed=1, name="a"), direction(seed=2, name="b", ts=(0, 999))
    mask = torch.rand(20, 20, generator=torch.Generator().manual_seed(0))
    both = restrict_to_region(mix([(a, 1.0), (b, -0.5)]), mask)
    h = torch.zeros(1, 8, 4, 4)
    for tt in (0, 300, 999):
        t = torch.tensor([tt])
        want = restrict_to_region(a, mask).delta(h, t, None, 10) - 0.5 * restrict_to_region(b, mask).delta(h, t, None, 10)
        assert torch.allclose(both.delta(h, t, None, 10), want, atol=1e-6)
    loaded = load_direction(save_direction(both, tmp_path / "region.safetensors"))
    assert torch.equal(loaded.values, both.values) and loaded.info.provenance["region"] == both.info.provenance["region"]


@pytest.mark.parametrize("bad, match", [
    (torch.full((16, 16), 2.0), r"outside \[0, 1\]"),
    (torch.full((16, 16), float("nan")), r"outside \[0, 1\]"),
    (torch.zeros(16, 16), "empty on h's grid"),
    (torch.ones(2, 2), "coarser than h's 4x4 grid"),
    (torch.ones(2, 3, 16, 16), r"\[H, W\] or \[B, H, W\]"),
])
def test_bad_masks_are_refused(bad, match):
    with pytest.raises(HSpaceError, match=match):
        restrict_to_region(direction(), bad)


def test_a_direction_without_a_grid_is_refused_with_the_way_out():
    with pytest.raises(HSpaceError, match="spatial 'keep'"):
        restrict_to_region(direction(shape=(8, 1, 1)), torch.ones(8, 8))


def test_a_region_edit_changes_the_masked_half_of_the_image_more():
    """On a model, the shift kept on the lower half of h moves the lower half of the image more than the
    upper one (and the upper half less than the whole-grid edit does)."""
    model = tiny_model("ddpm", seed=1)
    c, hh, ww = model.h_shape
    d = TensorDirection(torch.randn(c, hh, ww, generator=torch.Generator().manual_seed(4)), None,
                        DirectionInfo(h_shape=model.h_shape, made_steps=10, name="rand"))
    mask = torch.zeros(32, 32)
    mask[16:] = 1.0
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    inv = invert(model, x, steps=10)
    out = {k: edit(model, inv, v, [0.0, 2.0], t_edit=0).images
           for k, v in (("whole", d), ("lower", restrict_to_region(d, mask)))}
    change = {k: (v[:, 1] - v[:, 0]).abs() for k, v in out.items()}
    upper, lower = change["lower"][..., :16, :].mean(), change["lower"][..., 16:, :].mean()
    assert lower > 2 * upper
    assert upper < 0.5 * change["whole"][..., :16, :].mean()
