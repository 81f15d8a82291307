"""load_model: containers, unwrapping, overrides, and clear refusals of everything else."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hspace_core import Family, HSpaceError, load_model
from hspace_core.unets import DDPMConfig, DDPMUNet
from tests.engine.references import randomize_

ROOT = Path(__file__).resolve().parents[2]
TINY = DDPMConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_levels_down=(1,), attn_levels_up=(1,),
                  image_size=32)


def tiny_state(seed=0):
    return {k: v.contiguous().clone() for k, v in randomize_(DDPMUNet(TINY), seed).state_dict().items()}


def first_param(model):
    return model.unet.state_dict()["conv_in.weight"]


# ---------------------------------------------------------------- containers and unwrapping

def test_plain_safetensors_and_pickle(tmp_path):
    sd = tiny_state()
    save_file(sd, str(tmp_path / "m.safetensors"))
    torch.save(sd, tmp_path / "m.pth")
    for name in ("m.safetensors", "m.pth"):
        model = load_model(tmp_path / name, image_size=32)
        assert model.family is Family.DDIM
        assert torch.equal(first_param(model), sd["conv_in.weight"])


def test_legacy_non_zip_pickle(tmp_path):
    sd = tiny_state()
    torch.save(sd, tmp_path / "model-790000.ckpt", _use_new_zipfile_serialization=False)
    model = load_model(tmp_path / "model-790000.ckpt")
    assert "legacy pickle" in model.container
    assert torch.equal(first_param(model), sd["conv_in.weight"])


def test_ddim_training_list_prefers_ema(tmp_path):
    """ermongroup/ddim ckpt.pth = [model ('module.'-prefixed), optimizer, epoch, step, ema]."""
    raw, ema = tiny_state(1), tiny_state(2)
    net = DDPMUNet(TINY)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(1, 3, 32, 32), torch.tensor([5])).mean().backward()
    opt.step()
    torch.save([{f"module.{k}": v for k, v in raw.items()}, opt.state_dict(), 3, 1000, ema], tmp_path / "ckpt.pth")
    model = load_model(tmp_path / "ckpt.pth")
    assert torch.equal(first_param(model), ema["conv_in.weight"])
    assert "EMA" in model.container


@pytest.mark.parametrize("wrap", ["state_dict", "model+ema", "orig_mod", "module"])
def test_wrapped_dicts(tmp_path, wrap):
    sd, other = tiny_state(3), tiny_state(4)
    obj = {"state_dict": {k: v for k, v in sd.items()}, "epoch": 7} if wrap == "state_dict" else \
        {"model": other, "ema": sd, "step": 10} if wrap == "model+ema" else \
        {f"_orig_mod.{k}": v for k, v in sd.items()} if wrap == "orig_mod" else \
        {f"module.{k}": v for k, v in sd.items()}
    torch.save(obj, tmp_path / "w.pt")
    assert torch.equal(first_param(load_model(tmp_path / "w.pt")), sd["conv_in.weight"])


def test_image_size_override_and_unknown_override(tmp_path):
    save_file(tiny_state(), str(tmp_path / "m.safetensors"))
    model = load_model(tmp_path / "m.safetensors", image_size=64)
    assert model.image_size == 64 and model.h_shape == (64, 32, 32)
    with pytest.raises(HSpaceError, match="unknown override"):
        load_model(tmp_path / "m.safetensors", imagesize=64)


# ---------------------------------------------------------------- refusals

def _assert_refused(path, *needles):
    with pytest.raises(HSpaceError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for n in needles:
        assert n.lower() in msg.lower(), msg
    assert "\n" not in msg
    return msg


def test_stable_diffusion_unet_refused(tmp_path):
    sd = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
          "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 768),
          "model.diffusion_model.middle_block.0.in_layers.2.weight": torch.zeros(1280, 1280, 3, 3)}
    save_file(sd, str(tmp_path / "v1-5-pruned.safetensors"))
    _assert_refused(tmp_path / "v1-5-pruned.safetensors", "Stable Diffusion", "tensors")


def test_diffusers_conditional_unet_refused(tmp_path):
    sd = {"conv_in.weight": torch.zeros(320, 4, 3, 3), "time_embedding.linear_1.weight": torch.zeros(1280, 320),
          "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, 768)}
    save_file(sd, str(tmp_path / "unet.safetensors"))
    _assert_refused(tmp_path / "unet.safetensors", "cross-attention")


def test_vae_refused(tmp_path):
    sd = {"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "encoder.down.0.block.0.conv1.weight": torch.zeros(128, 128, 3, 3),
          "decoder.up.0.block.0.conv1.weight": torch.zeros(128, 128, 3, 3), "quant_conv.weight": torch.zeros(8, 8, 1, 1)}
    torch.save(sd, tmp_path / "vae.pt")
    _assert_refused(tmp_path / "vae.pt", "VAE")


def test_classifier_refused(tmp_path):
    from guided_diffusion.unet import EncoderUNetModel
    clf = EncoderUNetModel(image_size=32, in_channels=3, model_channels=32, out_channels=10, num_res_blocks=1,
                           attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=32,
                           use_scale_shift_norm=True, resblock_updown=True, pool="attention")
    torch.save(clf.state_dict(), tmp_path / "256x256_classifier.pt")
    _assert_refused(tmp_path / "256x256_classifier.pt", "classifier")


def test_class_conditional_adm_refused(tmp_path):
    from guided_diffusion.unet import UNetModel
    net = UNetModel(image_size=32, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
                    attention_resolutions=(2,), channel_mult=(1, 2), num_classes=10)
    torch.save(net.state_dict(), tmp_path / "64x64_diffusion.pt")
    _assert_refused(tmp_path / "64x64_diffusion.pt", "class-conditional")


def test_optimizer_file_refused(tmp_path):
    net = DDPMUNet(TINY)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.randn(1, 3, 32, 32), torch.tensor([1])).mean().backward()
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "opt050000.pt")
    _assert_refused(tmp_path / "opt050000.pt", "optimizer")


def test_asyrp_direction_refused_as_model(shared_dir):
    path = shared_dir / "asyrp_official" / "directions" / "smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth"
    _assert_refused(path, "direction")


def test_truncated_files(tmp_path):
    sd = tiny_state()
    torch.save(sd, tmp_path / "full.pt")
    save_file(sd, str(tmp_path / "full.safetensors"))
    for name in ("full.pt", "full.safetensors"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) // 2])
        _assert_refused(cut, "truncated or corrupt")


def test_random_bytes_empty_and_missing(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(4096).replace(b"PK", b"QK").lstrip(b"\x80") or b"x")
    _assert_refused(junk)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    _assert_refused(empty, "empty")
    _assert_refused(tmp_path / "nope.pt", "no such file")
    (tmp_path / "folder").mkdir()
    _assert_refused(tmp_path / "folder", "config.json")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_code_in_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "celeba_hq.ckpt"
    torch.save({"conv_in.weight": torch.zeros(1), "payload": _Payload(marker)}, evil)
    assert not marker.exists()
    msg = _assert_refused(evil, "refused to unpickle")
    assert "exec" in msg
    assert not marker.exists()


# ---------------------------------------------------------------- command line

def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hspace_core", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_cli_info_prints_json(tmp_path):
    import json
    save_file(tiny_state(), str(tmp_path / "m.safetensors"))
    r = _cli("info", str(tmp_path / "m.safetensors"), "--image-size", "32")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["family"] == "ddim" and info["resolution"] == 32 and info["h_shape"] == [64, 16, 16]
    assert info["parameters"] == sum(v.numel() for v in tiny_state().values())
    assert info["config"]["ch_mult"] == [1, 2]


def test_cli_info_bad_file_one_line_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00\x01garbage")
    r = _cli("info", str(bad))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]
