"""Directions: values, re-mapping in t, strength conventions, the file format, fitting checks."""

import json

import pytest
import torch

from hspace_core import (DirectionInfo, HSpaceError, TensorDirection, load_direction, mix, save_direction)
from hspace_core.directions.deltablock import DDPMDeltaBlock
from hspace_core.directions.base import DeltaBlockDirection
from tests.engine.references import tiny_model


def per_step(model, values=None, ts=(0, 500, 999), made_steps=None, name="d"):
    c, hh, ww = model.h_shape
    values = values if values is not None else torch.randn(len(ts), c, hh, ww, generator=torch.Generator().manual_seed(3))
    info = DirectionInfo(h_shape=(c, hh, ww), network_fingerprint=model.fingerprint, family=model.family.value,
                         made_steps=made_steps, name=name)
    return TensorDirection(values, torch.tensor(ts), info)


def test_interpolation_in_t_remaps_a_grid():
    model = tiny_model()
    v = torch.stack([torch.full(model.h_shape, x) for x in (0.0, 1.0, 3.0)])
    d = per_step(model, v)
    assert float(d.at(250).mean()) == pytest.approx(0.5)
    assert float(d.at(750).mean()) == pytest.approx(1 + 2 * 250 / 499)
    assert float(d.at(999).mean()) == 3.0 and float(d.at(-5).mean()) == 0.0 and float(d.at(500).mean()) == 1.0
    h = torch.zeros(2, *model.h_shape)
    out = d.delta(h, torch.tensor([250, 250]), None, steps=40)
    assert out.shape == h.shape and float(out.mean()) == pytest.approx(0.5)


def test_step_scale_and_sqrt_n_mix():
    model = tiny_model()
    ones = torch.ones(1, *model.h_shape)
    a = per_step(model, ones, ts=(0,), made_steps=40, name="a")
    b = per_step(model, 2 * ones, ts=(0,), made_steps=40, name="b")
    h, t = torch.zeros(1, *model.h_shape), torch.tensor([100])
    assert float(a.delta(h, t, None, steps=20).mean()) == pytest.approx(2.0)  # 40-step direction at 20 steps
    assert float(a.delta(h, t, None, steps=80).mean()) == pytest.approx(0.5)
    m = mix([(a, 1.0), (b, -0.5)])
    assert float(m.delta(h, t, None, steps=40).mean()) == pytest.approx(0.0)
    m2 = mix([a, b], sqrt_n=True)
    assert float(m2.delta(h, t, None, steps=40).mean()) == pytest.approx(3 / 2 ** 0.5)
    assert float(m2.scaled(-2).delta(h, t, None, steps=40).mean()) == pytest.approx(-6 / 2 ** 0.5)


def test_channel_broadcast_direction():
    model = tiny_model()
    c = model.h_shape[0]
    d = TensorDirection(torch.arange(c, dtype=torch.float32).view(c, 1, 1), None,
                        DirectionInfo(h_shape=(c, 1, 1), name="per-channel"))
    out = d.delta(torch.zeros(3, *model.h_shape), torch.tensor([7, 7, 7]), None, steps=10)
    assert out.shape == (3, *model.h_shape) and float(out[1, 5, 2, 3]) == 5.0


def test_file_round_trip_and_metadata(tmp_path):
    model = tiny_model()
    d = per_step(model, made_steps=40)
    block = DDPMDeltaBlock(model.h_shape[0], model.emb_channels)
    b = DeltaBlockDirection(block, DirectionInfo(h_shape=(model.h_shape[0], 1, 1), network_fingerprint=model.fingerprint,
                                                 made_steps=40, strength_unit="asyrp", name="blk",
                                                 provenance={"method": "test"}))
    for direction in (d, mix([(d, 0.5), (b, -1.0)], sqrt_n=True)):
        path = save_direction(direction, tmp_path / f"{direction.info.name[:3]}.safetensors")
        back = load_direction(path)
        x = torch.randn(2, *model.h_shape)
        t = torch.tensor([321, 321])
        emb = torch.randn(2, model.emb_channels)
        assert torch.allclose(back.delta(x, t, emb, 40), direction.delta(x, t, emb, 40), atol=1e-6)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "d.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["hspace.direction"])
    assert meta["which_h"] == "middle_block_output" and meta["h_shape"] == list(model.h_shape)
    assert meta["channels"] == model.h_shape[0] and meta["network_fingerprint"] == model.fingerprint
    assert meta["made_steps"] == 40 and meta["terms"][0]["kind"] == "tensor"
    with pytest.raises(HSpaceError, match="already exists"):
        save_direction(d, tmp_path / "d.safetensors")


def test_direction_for_another_model_is_refused():
    small = tiny_model()
    d = per_step(small)
    d.check_fits(small)
    with pytest.raises(HSpaceError, match="another network"):
        d.check_fits(_same_channels_other_network(small))
    with pytest.raises(HSpaceError, match="channels"):
        d.check_fits(_wider(small))
    with pytest.raises(HSpaceError, match="does not fit h"):
        d.delta(torch.zeros(1, 64, 4, 4), torch.tensor([1]), None, 10)


def _wider(model):
    from hspace_core.model import HSpaceModel
    from hspace_core.unets import DDPMConfig, DDPMUNet
    cfg = DDPMConfig(ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, attn_levels_down=(1,), attn_levels_up=(1,),
                     image_size=32)
    return HSpaceModel(DDPMUNet(cfg), model.family, cfg, model.schedule)


def _same_channels_other_network(model):
    from dataclasses import replace
    from hspace_core.model import HSpaceModel
    from hspace_core.unets import DDPMUNet
    cfg = replace(model.config, norm_eps=1e-5)
    return HSpaceModel(DDPMUNet(cfg), model.family, cfg, model.schedule)


def test_official_blocks_import(shared_dir):
    d = load_direction(shared_dir / "asyrp_official" / "directions" / "smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth")
    assert d.info.name == "smiling" and d.info.made_steps == 40 and d.info.channels == 512
    assert d.info.provenance["dataset"] == "CelebA_HQ" and d.block.flavour == "ddpm"
    dog = load_direction(shared_dir / "asyrp_official" / "directions" / "dog_happy_LC_dog_t999_ninv40_ngen40_0.pth")
    assert dog.block.flavour == "adm"
    with pytest.raises(HSpaceError, match="channels"):
        d.check_fits(tiny_model())
    sd = torch.load(shared_dir / "asyrp_official" / "directions" / "smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth",
                    map_location="cpu", weights_only=True)["0"]
    assert all(torch.equal(d.block.state_dict()[k], v) for k, v in sd.items())


def test_not_a_direction_file(tmp_path):
    from safetensors.torch import save_file
    save_file({"conv_in.weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(HSpaceError, match="not an h-space direction"):
        load_direction(tmp_path / "model.safetensors")
    with pytest.raises(HSpaceError, match="no such file"):
        load_direction(tmp_path / "missing.safetensors")
