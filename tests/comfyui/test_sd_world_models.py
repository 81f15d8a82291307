"""The miniature SD world's networks as ComfyUI objects (in this process): the loader, the text encoder taken
exactly from the tiny CLIP, the VAE's latent normalisation, refusals of broken files, and training that
resumes to the same weights."""

from pathlib import Path

import pytest
import torch

from hspace_core import HSpaceError
from tests.comfyui.tiny_sd import comfy_available, comfy_modules

why = comfy_available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ComfyUI SD tests: {why}")

PROMPTS = ["a smiling face with glasses", "a face", "", "a frowning narrow face without a hat on a blue background"]


@pytest.fixture(scope="module")
def comfy():
    comfy_modules()
    import comfy.samplers

    return comfy


def test_the_text_encoder_is_the_tiny_clips_text_tower(comfy):
    """Converted open_clip names -> ComfyUI's SD1 CLIP class: the same token states up to the end token."""
    from hspace_core.checkpoint_files import read_safetensors
    from hspace_core.demo.clip_world import EMBEDDED, load_tiny_clip
    from hspace_sdworld.models import build_clip, encode_prompts, text_encoder_from_tiny_clip

    state, _ = read_safetensors(EMBEDDED / "open_clip_model.safetensors")
    clip = build_clip(text_encoder_from_tiny_clip(state))
    tiny = load_tiny_clip()
    m = tiny.model
    for text in PROMPTS:
        toks = tiny.tokenizer([text])
        with torch.no_grad():
            ref = m.ln_final(m.transformer(m.token_embedding(toks) + m.positional_embedding, attn_mask=m.attn_mask))
        n = int(toks.argmax(-1)) + 1  # through the end token
        ours = encode_prompts(clip, [text])
        assert ours.shape == (1, 77, 64)
        assert (ours[0, :n] - ref[0, :n]).abs().max() < 1e-5, text


def test_the_latent_normalisation_is_exact(comfy):
    """Folding a shift and scale into quant_conv / post_quant_conv leaves decode(encode(x)) unchanged and
    gives the latent means the intended statistics."""
    from hspace_sdworld.configs import LATENT_SCALE
    from hspace_sdworld.models import vae_module
    from hspace_sdworld.train_vae import decode, latent_statistics, normalise_latent, posterior

    module = vae_module(seed=3).eval()
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(24, 3, 64, 64, generator=g) * 255).to(torch.uint8)
    x = images.float() / 127.5 - 1
    with torch.no_grad():
        before = decode(module, posterior(module, x)[0])
        shift, std = latent_statistics(module, images)
        normalise_latent(module, shift, std)
        mean, logvar = posterior(module, x)
        after = decode(module, mean)
    assert (after - before).abs().max() < 1e-4
    assert torch.allclose(mean.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(mean.std(dim=(0, 2, 3)), torch.full((4,), 1 / LATENT_SCALE), rtol=1e-4)


def test_seeded_initialisation_is_deterministic_and_leaves_the_global_rng(comfy):
    from hspace_sdworld.models import unet_model

    state = torch.random.get_rng_state()
    a = unet_model(seed=5).diffusion_model.state_dict()
    b = unet_model(seed=5).diffusion_model.state_dict()
    c = unet_model(seed=6).diffusion_model.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].numel() > 1)


def test_the_shipped_model_loads_through_comfyuis_classes(comfy):
    import comfy.model_patcher
    import comfy.sd
    import comfy.supported_models as sm

    import nodes.sd as sd
    from hspace_sdworld import sampling as sw
    from hspace_sdworld.models import FILES, WEIGHTS

    sd_files = [f for k, f in FILES.items() if k != "flow"]  # the flow world's transformer has its own test
    if not all((WEIGHTS / f).exists() for f in sd_files):
        pytest.skip("the miniature SD world's weights are not built")
    from nodes.sd_world import LoadDemoSDModel

    model, clip, vae = LoadDemoSDModel().load(LoadDemoSDModel.INPUT_TYPES()["required"]["weights"][0][0])
    assert isinstance(model, comfy.model_patcher.ModelPatcher) and isinstance(model.model.model_config, sm.SD15)
    assert isinstance(clip, comfy.sd.CLIP) and isinstance(vae, comfy.sd.VAE)
    assert sd.host_family(model) == ("sd1", 192)
    lat = sw.sample(model, sw.encode(clip, "a face"), sw.encode(clip, ""), sw.seed_noise([0, 1]), sw.sigmas(model, 6),
                    3.0)
    images = sw.decode(vae, lat)
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()
    assert sum(p.numel() for p in model.model.diffusion_model.parameters()) < 10_000_000
    assert sum((WEIGHTS / f).stat().st_size for f in sd_files) <= 30 * 2 ** 20


def _write(tmp_path: Path, name: str, state: dict) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_broken_weight_files_are_refused_naming_the_file(comfy, tmp_path):
    from hspace_sdworld.models import FILES, load_demo, unet_model, vae_module

    # files written without the level count read as three-level (the files from before the setting)
    unet = unet_model(seed=0, levels=3).diffusion_model.state_dict()
    vae = vae_module(seed=0).state_dict()
    folder = tmp_path / "w"
    # the VAE's weights where the UNet's belong
    _write(folder, FILES["unet"], vae)
    with pytest.raises(HSpaceError, match=r"unet.safetensors is not the miniature SD world's UNet \(3 levels\): .*missing"):
        load_demo(folder)
    # a truncated file
    good = _write(folder, FILES["unet"], unet)
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(HSpaceError, match=r"unet.safetensors: not a readable safetensors file"):
        load_demo(folder)
    # NaN weights
    bad = dict(unet)
    bad["out.2.weight"] = torch.full_like(bad["out.2.weight"], float("nan"))
    _write(folder, FILES["unet"], bad)
    with pytest.raises(HSpaceError, match="NaN or infinity"):
        load_demo(folder)
    # a missing file says how to rebuild it
    (folder / FILES["unet"]).unlink()
    with pytest.raises(HSpaceError, match=r"unet weights are missing \(.*unet.safetensors\); rebuild them with `python -m hspace_sdworld`"):
        load_demo(folder)


def test_training_resumes_to_the_same_weights(comfy, tmp_path):
    """Stopped after two steps and resumed, a run ends with the weights of an uninterrupted one (VAE and UNet,
    tiny batches)."""
    from hspace_sdworld import train_unet, train_vae

    vs = train_vae.VAESettings(steps=4, batch=2, dataset_size=8, save_every=2, warmup=2)
    train_vae.train(tmp_path / "a" / "vae", vs, log=lambda m: None)
    train_vae.train(tmp_path / "b" / "vae", vs, until=2, log=lambda m: None)
    train_vae.train(tmp_path / "b" / "vae", vs, log=lambda m: None)
    sa = torch.load(tmp_path / "a" / "vae" / "last.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "b" / "vae" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)

    vae_file = tmp_path / "vae.safetensors"
    train_vae.export(tmp_path / "a" / "vae", vae_file, stats_images=8, log=lambda m: None)
    from hspace_sdworld.export import export_text_encoder

    te = export_text_encoder(tmp_path / "te.safetensors")
    us = train_unet.UNetSettings(steps=4, batch=3, dataset_size=8, save_every=2, warmup=2)
    train_unet.train(tmp_path / "a" / "unet", us, vae_file, te, log=lambda m: None)
    train_unet.train(tmp_path / "b" / "unet", us, vae_file, te, until=2, log=lambda m: None)
    train_unet.train(tmp_path / "b" / "unet", us, vae_file, te, log=lambda m: None)
    ua = torch.load(tmp_path / "a" / "unet" / "last.pt", weights_only=True)
    ub = torch.load(tmp_path / "b" / "unet" / "last.pt", weights_only=True)
    assert ua["step"] == ub["step"] == 4
    assert all(torch.equal(ua["ema"][k], ub["ema"][k]) for k in ua["ema"])


def test_skip_drop_zeroes_only_the_coarse_skips_of_the_dropped_rows(comfy):
    """The training-time patch through ComfyUI's own output_block_patch hook: dropped rows see zero skips
    below the latent's resolution, full-resolution skips and the other rows are untouched."""
    from hspace_sdworld.train_unet import SkipDrop

    seen = []

    def probe(h, hsp, opts):
        seen.append(hsp.clone())
        return h, hsp

    from hspace_sdworld.models import unet_model

    net = unet_model(seed=1).diffusion_model
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(3, 77, 64, generator=torch.Generator().manual_seed(1))
    drop = torch.tensor([False, True, False])
    with torch.no_grad():
        net(x, torch.tensor([10.0, 500.0, 900.0]), context=ctx,
            transformer_options={"patches": {"output_block_patch": [SkipDrop(drop, 8), probe]}})
        plain = []
        net(x, torch.tensor([10.0, 500.0, 900.0]), context=ctx,
            transformer_options={"patches": {"output_block_patch": [lambda h, s, o: (plain.append(s.clone()) or (h, s))]}})
    coarse = [i for i, s in enumerate(seen) if s.shape[-1] < 8]
    assert coarse and len(coarse) < len(seen)
    for i in coarse:  # the skips come from the encoder, which the drop does not touch
        assert seen[i][1].abs().max() == 0 and plain[i][1].abs().max() > 0
        assert torch.equal(seen[i][[0, 2]], plain[i][[0, 2]])
    assert all(torch.equal(seen[i], plain[i]) for i in range(len(seen)) if i not in coarse)


def test_the_unet_file_records_its_levels_and_the_loader_builds_them(comfy, tmp_path):
    """A two-level run exports its levels in the file's metadata; ``load_demo`` builds that UNet (h at 4 x 4
    on 8 x 8 latents, not 2 x 2), refuses an unknown count and a file whose weights are of other levels."""
    from safetensors.torch import save_file

    from hspace_core.checkpoint_files import read_safetensors
    from hspace_sdworld.export import export_text_encoder
    from hspace_sdworld.models import FILES, load_demo, unet_model, vae_module
    from hspace_sdworld.train_common import RunFolder
    from hspace_sdworld.train_unet import UNetSettings, export
    from dataclasses import asdict, replace

    run = RunFolder(tmp_path / "run")
    run.settings(asdict(replace(UNetSettings(), levels=2)))
    run.save({"ema": unet_model(seed=0, levels=2).diffusion_model.state_dict(), "step": 0})
    folder = tmp_path / "w"
    export(run.path, folder / FILES["unet"])
    assert read_safetensors(folder / FILES["unet"])[1]["hspace.unet_levels"] == "2"
    save_file({k: v.contiguous() for k, v in vae_module(seed=0).state_dict().items()}, str(folder / FILES["vae"]))
    export_text_encoder(folder / FILES["text_encoder"])

    model, _, _ = load_demo(folder)
    seen = []
    net = model.model.diffusion_model
    handle = net.middle_block[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        net(torch.zeros(1, 4, 8, 8), torch.tensor([500.0]), context=torch.zeros(1, 77, 64))
    handle.remove()
    assert seen == [(1, 192, 4, 4)]

    state, meta = read_safetensors(folder / FILES["unet"])
    save_file(state, str(folder / FILES["unet"]), metadata=dict(meta, **{"hspace.unet_levels": "7"}))
    with pytest.raises(HSpaceError, match=r"unet.safetensors records a UNet of '7' levels; .* has 2 or 3"):
        load_demo(folder)
    three = {k: v.contiguous() for k, v in unet_model(seed=0, levels=3).diffusion_model.state_dict().items()}
    save_file(three, str(folder / FILES["unet"]), metadata=dict(meta))
    with pytest.raises(HSpaceError, match=r"is not the miniature SD world's UNet \(2 levels\): .*(missing|unexpected)"):
        load_demo(folder)


def test_the_command_line_refuses_an_unknown_level_count_before_training(tmp_path, capsys):
    from hspace_sdworld.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["train-unet", "--levels", "4", "--run", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "--levels: the miniature SD world's UNet has [2, 3] levels, not 4" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
