"""The miniature flow world's transformer as ComfyUI's own Flux class: the differentiable training forward
(ComfyUI's per-block hook) equals the stock forward, trains, and a stopped run resumes to the same weights."""

import pytest
import torch

from tests.comfyui.tiny_sd import comfy_available, comfy_modules

why = comfy_available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ComfyUI flow tests: {why}")


@pytest.fixture(scope="module")
def flux():
    """The world's transformer with seeded random weights everywhere (not adaLN-zero: every path active)."""
    comfy_modules()
    from hspace_sdworld.models import flow_model

    net = flow_model().diffusion_model
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net


def _inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, 8, 8, generator=g), torch.rand(n, generator=g), torch.randn(n, 77, 64, generator=g),
            torch.randn(n, 64, generator=g))


def test_the_training_forward_is_the_stock_forward(flux):
    """Every block through flow_blocks (out of place, torch RoPE) gives ComfyUI's output to float32 rounding."""
    from hspace_sdworld.flow_blocks import training_options

    x, sigma, context, pooled = _inputs()
    with torch.no_grad():
        stock = flux(x, sigma, context, y=pooled)
        ours = flux(x, sigma, context, y=pooled, transformer_options=training_options(flux))
    assert stock.shape == (3, 4, 8, 8)
    assert float((ours - stock).norm() / stock.norm()) < 1e-5
    # and it is not the identity of a broken hook: another sigma changes the output
    with torch.no_grad():
        other = flux(x, sigma * 0.5, context, y=pooled, transformer_options=training_options(flux))
    assert float((other - stock).norm() / stock.norm()) > 1e-2


def test_gradients_reach_every_block(flux):
    from hspace_sdworld.flow_blocks import training_options

    x, sigma, context, pooled = _inputs(2)
    flux.zero_grad(set_to_none=True)
    flux(x, sigma, context, y=pooled, transformer_options=training_options(flux)).square().mean().backward()
    for name in ("double_blocks.0.img_attn.qkv.weight", "double_blocks.3.txt_mlp.0.weight",
                 "single_blocks.0.linear1.weight", "single_blocks.3.modulation.lin.weight", "img_in.weight"):
        g = dict(flux.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name
    flux.zero_grad(set_to_none=True)


def test_adaln_zero_start_outputs_zero():
    comfy_modules()
    from hspace_sdworld.models import flow_model

    net = flow_model(seed=0).diffusion_model
    x, sigma, context, pooled = _inputs(2)
    with torch.no_grad():
        assert float(net(x, sigma, context, y=pooled).abs().max()) == 0.0
    assert float(net.double_blocks[0].img_attn.qkv.weight.detach().abs().sum()) > 0


def test_flow_training_resumes_to_the_same_weights(tmp_path):
    """Stopped after two steps and resumed, a run ends with the EMA of an uninterrupted one; the exported
    file loads as a MODEL."""
    comfy_modules()
    from hspace_sdworld import train_flow
    from hspace_sdworld.models import WEIGHTS, build_flow_model, read_weights

    s = train_flow.FlowSettings(steps=4, batch=3, dataset_size=8, save_every=2, warmup=2)
    vae, te = WEIGHTS / "vae.safetensors", WEIGHTS / "text_encoder.safetensors"
    train_flow.train(tmp_path / "a" / "flow", s, vae, te, log=lambda m: None)
    train_flow.train(tmp_path / "b" / "flow", s, vae, te, until=2, log=lambda m: None)
    train_flow.train(tmp_path / "b" / "flow", s, vae, te, log=lambda m: None)
    a = torch.load(tmp_path / "a" / "flow" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "flow" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert any(float(v.abs().sum()) > 0 for k, v in a["ema"].items() if "modulation" in k or "_mod." in k)
    out = train_flow.export(tmp_path / "a" / "flow", tmp_path / "flow.safetensors")
    state, meta = read_weights("flow", tmp_path) if out.name == "flow.safetensors" else (None, None)
    assert meta["hspace.format"] == train_flow.FORMAT and meta["hspace.training_steps"] == "4"
    model = build_flow_model(state)
    assert type(model.model.diffusion_model).__name__ == "Flux"


def test_diffusers_flux_converts_to_comfyui_flux_to_float_tolerance():
    """The issue's 5 % gap between diffusers' FluxTransformer2DModel and ComfyUI's Flux was the probe's, not the
    conversion's: ComfyUI's convert_diffusers_mmdit writes its scale/shift swap of norm_out back into the tensors
    it is handed, and a live model's state_dict() shares them, so the diffusers model itself changed. Converted
    from a copy, the two agree to float rounding; converted from the live state dict, the diffusers side moves."""
    diffusers = pytest.importorskip("diffusers")
    comfy_modules()
    import comfy.model_detection
    import comfy.latent_formats
    import comfy.supported_models

    from hspace_sdworld.configs import FLOW

    torch.manual_seed(0)
    dm = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, out_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=64,
        num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=64, guidance_embeds=False,
        axes_dims_rope=(16, 24, 24)).eval()
    with torch.no_grad():
        for p in dm.parameters():
            p.normal_(0, 0.05)
    cfg = dict(FLOW, depth=2, depth_single_blocks=2)

    class Tiny(comfy.supported_models.Flux):
        unet_config = cfg
        latent_format = comfy.latent_formats.SD15

    net = Tiny(dict(cfg)).get_model({}, device="cpu").diffusion_model
    x, sigma, context, pooled = _inputs(2)
    context = context[:, :12]

    def diffusers_out():
        # Flux packs 2 x 2 latent patches into a token (c ph pw); ids as ComfyUI builds them
        img = x.reshape(2, 4, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, 16)
        ids = torch.zeros(4, 4, 3)
        ids[..., 1] = torch.arange(4)[:, None]
        ids[..., 2] = torch.arange(4)[None, :]
        with torch.no_grad():
            out = dm(hidden_states=img, encoder_hidden_states=context, pooled_projections=pooled, timestep=sigma,
                     img_ids=ids.reshape(16, 3), txt_ids=torch.zeros(12, 3), return_dict=False)[0]
        return out.reshape(2, 4, 4, 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(2, 4, 8, 8)

    converted = comfy.model_detection.convert_diffusers_mmdit({k: v.clone() for k, v in dm.state_dict().items()})
    missing, unexpected = net.load_state_dict(converted, strict=False)
    assert not missing and not unexpected
    with torch.no_grad():
        ours = net(x, sigma, context, y=pooled)
    before = diffusers_out()
    assert float((ours - before).norm() / before.norm()) < 1e-5

    comfy.model_detection.convert_diffusers_mmdit(dm.state_dict())     # the probe's way: the live tensors
    after = diffusers_out()
    assert float((after - before).norm() / before.norm()) > 1e-2


def test_the_shipped_flow_world_loads_through_its_node_and_draws_faces():
    """Load Demo Flow Model: ComfyUI's Flux class with the shipped weights (at most 30 MB), the SD world's CLIP
    and VAE; a few euler steps from two seeds give finite 64 px images."""
    comfy_modules()
    import comfy.model_patcher
    import comfy.supported_models as sm

    from hspace_sdworld import sampling as sw
    from hspace_sdworld.models import FILES, WEIGHTS
    from nodes.flow.family import flow_host, is_flow
    from nodes.sd_world import LoadDemoFlowModel

    if not (WEIGHTS / FILES["flow"]).exists():
        pytest.skip("the miniature flow world's transformer is not built")
    assert (WEIGHTS / FILES["flow"]).stat().st_size <= 30 * 2 ** 20
    model, clip, vae = LoadDemoFlowModel().load(LoadDemoFlowModel.INPUT_TYPES()["required"]["weights"][0][0])
    assert isinstance(model, comfy.model_patcher.ModelPatcher) and isinstance(model.model.model_config, sm.Flux)
    assert is_flow(model) and flow_host(model).blocks == 4
    with torch.inference_mode():
        lat = sw.sample(model, sw.encode(clip, "a smiling face"), sw.encode(clip, ""), sw.seed_noise([0, 1]),
                        sw.sigmas(model, 6, "simple"), 5.0)
        images = sw.decode(vae, lat)
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all() and float(images.std()) > 0.05
