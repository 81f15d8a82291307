"""h-space editing on ComfyUI's own flow transformers (Flux.1 dev and schnell, Flux.2, SD3 with SD3.5's extra
image self-attention), tiny random configs, in this process: h at a joint block through ComfyUI's per-block
hook, Asyrp's step in flow form (strength 0 = the stock euler sampler, CFG and distilled guidance passed
through), the shared pass, both inversions, the direction finders, the region tool on the token grid,
calibration, refusals."""

import pytest
import torch

from hspace_core import DirectionInfo, HSpaceError, TensorDirection
from tests.comfyui.tiny_sd import comfy_available, comfy_modules

why = comfy_available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ComfyUI flow tests: {why}")


@pytest.fixture(scope="module")
def comfy():
    comfy_modules()
    import comfy.samplers

    return comfy


def tiny(kind):
    from tests.comfyui.tiny_models_pack.tiny_models import tiny_flow_model

    return tiny_flow_model(kind)


def cond(seed, kind):
    from tests.comfyui.tiny_models_pack.tiny_models import flow_conditioning

    return flow_conditioning(seed, kind)


def noise_for(kind, seed=0, size=8):
    from tests.comfyui.tiny_models_pack.tiny_models import flow_latent_channels

    return torch.randn(1, flow_latent_channels(kind), size, size, generator=torch.Generator().manual_seed(seed))


def sigmas(comfy, model, steps):
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", steps)


def run(comfy, model, sampler, sig, kind, noise, cfg=3.0, latent=None):
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(cond(1, kind), cond(2, kind))
    guider.set_cfg(cfg)
    latent = torch.zeros_like(noise) if latent is None else latent
    return guider.sample(noise, latent, sampler, sig, disable_pbar=True)


def sd():
    import nodes.sd as sd

    return sd


def asyrp(comfy, strengths=(1.0,), **options):
    return comfy.samplers.KSAMPLER(sd().sample_asyrp, extra_options={"strengths": tuple(strengths), **options})


def direction(host, block=1, kind="stream", grid=(4, 4), seed=3, name="random"):
    info = DirectionInfo((host.width, *grid), family=host.family, name=name, which_h=f"double_block_{block}.{kind}")
    return TensorDirection(torch.randn(host.width, *grid, generator=torch.Generator().manual_seed(seed)), None, info)


def applied(model, d, strength=1.0, t_edit=0, t_end=1000, mode="asymmetric", branch="both"):
    return sd().ApplyHSpaceDirection().apply(model, d, strength, t_edit, t_end, branch, mode, units="raw")[0]


KINDS = ["flux", "flux_schnell", "flux2", "sd3"]
# the sampler's maths and the hook's placement are checked on every class; the work built on them (inversions,
# finders, the region tool, calibration) on one Flux and on SD3, whose blocks differ
TWO = pytest.mark.parametrize("kind", ["flux", "sd3"], indirect=True)


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def model(comfy, kind):
    return tiny(kind)


@pytest.fixture(scope="module")
def host(model):
    from nodes.flow.family import flow_host

    return flow_host(model)


def grid(host, size=8):
    return (size // host.patch, size // host.patch)


def test_the_family_width_blocks_and_patch_of_comfyuis_classes(host, kind):
    assert host.family == {"flux": "flux", "flux_schnell": "flux", "flux2": "flux2", "sd3": "sd3"}[kind]
    assert (host.width, host.blocks, host.patch) == {"flux": (64, 3, 2), "flux_schnell": (64, 3, 2),
                                                     "flux2": (64, 3, 1), "sd3": (128, 2, 2)}[kind]


@pytest.mark.parametrize("h", ["stream", "attention"])
def test_strength_zero_is_the_stock_euler_sampler_and_the_edit_acts_only_in_the_asyrp_sampler(comfy, model, host,
                                                                                              kind, h):
    """Through CFGGuider (cfg 3; Flux dev's distilled guidance in the conditioning): strength 0 equals
    ComfyUI's euler; strength 1 moves the latent; the asymmetric patch leaves the stock sampler alone, the
    symmetric one edits under it."""
    sig, noise = sigmas(comfy, model, 6), noise_for(kind)
    d = direction(host, 1, h, grid(host))
    stock = run(comfy, model, comfy.samplers.sampler_object("euler"), sig, kind, noise)
    patched = applied(model, d)
    assert torch.allclose(run(comfy, patched, asyrp(comfy, (0.0,)), sig, kind, noise), stock, atol=1e-4)
    edited = run(comfy, patched, asyrp(comfy, (1.0,)), sig, kind, noise)
    assert float((edited - stock).abs().max()) > 0.05
    assert torch.equal(run(comfy, patched, comfy.samplers.sampler_object("euler"), sig, kind, noise), stock)
    symmetric = run(comfy, applied(model, d, mode="symmetric"), comfy.samplers.sampler_object("euler"), sig, kind,
                    noise)
    assert float((symmetric - stock).abs().max()) > 0.05


@pytest.mark.parametrize("h", ["stream", "attention"])
def test_the_shared_pass_equals_two_calls(comfy, model, host, kind, h):
    """The blocks before h once for both predictions (ComfyUI's per-block hook) gives the two-call result; a
    sweep in one batch equals its strengths one by one."""
    sig, noise = sigmas(comfy, model, 5), noise_for(kind, 1)
    patched = applied(model, direction(host, host.blocks - 1, h, grid(host)))
    two = run(comfy, patched, asyrp(comfy, (1.0,), shared=False), sig, kind, noise)
    one = run(comfy, patched, asyrp(comfy, (1.0,)), sig, kind, noise)
    assert torch.allclose(one, two, atol=1e-4) and float((two - noise).abs().max()) > 0
    sweep = run(comfy, patched, asyrp(comfy, (0.5, 2.0)), sig, kind, noise)
    assert torch.allclose(sweep[1:], run(comfy, patched, asyrp(comfy, (2.0,)), sig, kind, noise), atol=1e-4)


@TWO
def test_the_edit_interval_is_in_1000_sigma(comfy, model, host, kind):
    """A direction over [t_edit, t_end] in t = 1000 sigma acts only on the steps inside it."""
    sig, noise = sigmas(comfy, model, 6), noise_for(kind, 2)
    d = direction(host, 0, "stream", grid(host))
    stock = run(comfy, model, comfy.samplers.sampler_object("euler"), sig, kind, noise)
    nowhere = applied(model, d, t_edit=float(sig[0]) * 1000 + 1, t_end=float(sig[0]) * 1000 + 2)  # above every step
    assert torch.allclose(run(comfy, nowhere, asyrp(comfy, (1.0,)), sig, kind, noise), stock, atol=1e-4)


@TWO
def test_both_inversions_regenerate_the_latent(comfy, model, host, kind):
    """Exact replay: strength 0 reproduces the input latent to float error; the flow ODE run backwards
    regenerates it approximately (the error shrinks with the steps); both through the Invert Latent node."""
    x0 = noise_for(kind, 4) * 0.5
    pos = cond(1, kind)
    node = sd().InvertLatent()
    errors = {}
    for steps in (4, 24):
        sig = sigmas(comfy, model, steps)
        noised, report, maps = node.invert(model, pos, {"samples": x0}, sig, True, "ddim")["result"]
        rec = sd().regenerate(model, pos, noised["samples"], sig, maps)
        errors[steps] = float((rec - x0).pow(2).mean().sqrt() / x0.pow(2).mean().sqrt())
        assert "flow ODE inversion" in report and maps.kind == "ode"
    assert errors[24] < errors[4]
    sig = sigmas(comfy, model, 6)
    noised, report, maps = node.invert(model, pos, {"samples": x0}, sig, True, "ddpm (edit-friendly)", seed=3)["result"]
    assert "exact-replay inversion" in report and maps.kind == "replay"
    rec = sd().regenerate(model, pos, noised["samples"], sig, maps)
    assert float((rec - x0).abs().max()) < 1e-4 * (1 + float(x0.abs().max()))
    patched = applied(model, direction(host, 1, "stream", grid(host)))
    edited = run(comfy, patched, asyrp(comfy, (1.0,), noise_maps=maps), sig, kind, torch.zeros_like(x0), cfg=1.0,
                 latent=noised["samples"])
    assert float((edited - rec).abs().max()) > 0.01
    skipped = run(comfy, patched, asyrp(comfy, (0.0,), noise_maps=maps, t_skip=2), sig, kind, torch.zeros_like(x0),
                  cfg=1.0, latent=noised["samples"])
    assert float((skipped - rec).abs().max()) < 1e-4 * (1 + float(x0.abs().max()))


@TWO
def test_directions_are_made_at_their_block_and_refused_elsewhere(comfy, model, host, kind):
    sig = sigmas(comfy, model, 4)
    pp = sd().DirectionFromPrompts().make(model, cond(1, kind), cond(2, kind), sig, 2, 0, 64, 64, "keep", "pp",
                                          block=1, h="attention output")[0]
    assert pp.info.family == host.family and pp.info.which_h == "double_block_1.attention"
    assert tuple(pp.values.shape[1:]) == (host.width, *grid(host, 8)) and pp.info.calibration is not None
    pc = sd().DirectionPCASD().make(model, cond(1, kind), sig, 3, 0, 0, 64, 64, "average", "pc")[0]
    assert pc.info.which_h == f"double_block_{host.default_block()}.stream" and pc.info.h_shape == (host.width, 1, 1)
    lat = {"samples": noise_for(kind, 5)}
    ls = sd().DirectionFromLatentSets().make(model, cond(1, kind), lat, {"samples": noise_for(kind, 6)}, sig, "keep",
                                             "sets", block=0)[0]
    assert ls.info.which_h == "double_block_0.stream"
    (ic,), = sd().DirectionsByIndependenceSD().make(model, cond(1, kind), sig, 4, 1, 0, 0, 600, 999, 64, 64,
                                                    "average", "ic", block=1)
    assert ic.info.which_h == "double_block_1.stream" and ic.info.h_shape == (host.width, 1, 1)
    moved = [int(t) for t, v in zip(ic.timesteps, ic.values) if float(v.abs().max()) > 0]  # walked down to t_edit
    assert moved and min(moved) >= 600 and len(sd().sigmas_down_to(model, sig, 600)) < len(sig)
    (ie,), = sd().DirectionsByIndependenceSD().make(model, cond(1, kind), sig, 4, 1, 0, 0, 600, 999, 64, 64,
                                                    "average", "ie", block=1, h="attention output", rotate="effects")
    assert ie.info.which_h == "double_block_1.attention" and ie.info.provenance["rotate"] == "effects"
    stock = run(comfy, model, comfy.samplers.sampler_object("euler"), sig, kind, noise_for(kind))
    for d in (pp, pc, ls, ic, ie):
        out = run(comfy, applied(model, d), asyrp(comfy, (2.0,)), sig, kind, noise_for(kind))
        assert float((out - stock).abs().max()) > 0
    import dataclasses

    moved = dataclasses.replace(pp, info=dataclasses.replace(pp.info, which_h="double_block_7.stream"))
    with pytest.raises(HSpaceError, match="joint blocks 0"):
        applied(model, moved)
    with pytest.raises(HSpaceError, match="made for sd1"):
        applied(model, dataclasses.replace(pp, info=dataclasses.replace(pp.info, family="sd1")))


@TWO
def test_the_region_tool_works_on_the_token_grid(comfy, model, host, kind):
    from nodes.region import DirectionRegion

    d = direction(host, 1, "stream", grid(host))
    mask = torch.zeros(1, 64, 64)
    mask[:, 32:] = 1.0
    r = DirectionRegion().restrict(d, mask, False)[0]
    gh = grid(host)[0]
    assert torch.all(r.values[:, :gh // 2] == 0) and torch.equal(r.values[:, gh // 2:], d.values[:, gh // 2:])
    calibrated = DirectionRegion().restrict(d, mask, False, model=model, positive=cond(1, kind))[0]
    assert calibrated.info.calibration is not None and calibrated.info.calibration["usable"] is not None


@TWO
def test_two_directions_at_one_block_join_and_another_packs_patch_is_kept(comfy, model, host, kind):
    a, b = direction(host, 1, "stream", grid(host), 1, "a"), direction(host, 1, "stream", grid(host), 2, "b")
    both = applied(applied(model, a), b)
    patch = both.model_options["transformer_options"]["patches_replace"]["dit"][("double_block", 1)]
    assert len(patch.shifts) == 2
    other = model.clone()
    other.set_model_patch_replace(lambda args, extra: extra["original_block"](args), "dit", "double_block", 1)
    with pytest.raises(HSpaceError, match="another patch already replaces joint block 1"):
        applied(other, a)


def test_fluxspace_edits_the_prompt_rows_from_the_three_prompts_and_nothing_when_they_cancel(comfy, model, host,
                                                                                           kind):
    """FluxSpace Edit through CFGGuider: lambda 0, an interval outside the sigmas, or an edit prompt equal to the
    prior (its projection removes all of it) give the stock result, so each prompt row meets its own edit and
    prior rows; another edit prompt moves it, in proportion at small lambda; it refuses an h direction on the
    same MODEL and blocks the model does not have."""
    from nodes.flow.fluxspace import FluxSpaceEdit

    sig, noise = sigmas(comfy, model, 5), noise_for(kind, 2)
    euler = comfy.samplers.sampler_object("euler")
    stock = run(comfy, model, euler, sig, kind, noise)

    def edited(edit, prior, lam, t_edit=0, t_end=1000, blocks="all", m=model):
        return run(comfy, FluxSpaceEdit().apply(m, edit, prior, lam, t_edit, t_end, blocks)[0], euler, sig, kind,
                   noise)
    assert torch.allclose(edited(cond(7, kind), cond(8, kind), 0.0), stock, atol=1e-5)
    assert torch.allclose(edited(cond(7, kind), cond(8, kind), 3.0, t_edit=1001, t_end=1001), stock, atol=1e-5)
    assert torch.allclose(edited(cond(8, kind), cond(8, kind), 3.0), stock, atol=1e-4)
    small, twice = (edited(cond(7, kind), cond(8, kind), lam, blocks="0") - stock for lam in (0.1, 0.2))
    assert float(small.abs().max()) > 1e-3
    assert float((twice - 2 * small).norm()) < 0.1 * float(small.norm())
    with pytest.raises(HSpaceError, match="another patch already replaces joint block 1"):
        edited(cond(7, kind), cond(8, kind), 1.0, m=applied(model, direction(host, 1, "stream", grid(host))))
    both = applied(FluxSpaceEdit().apply(model, cond(7, kind), cond(8, kind), 1.0, 0, 1000, "0")[0],
                   direction(host, 1, "stream", grid(host)))
    with pytest.raises(HSpaceError, match="compare them on separate copies"):
        run(comfy, both, euler, sig, kind, noise)
    with pytest.raises(HSpaceError, match=f"joint blocks 0..{host.blocks - 1}"):
        FluxSpaceEdit().apply(model, cond(7, kind), cond(8, kind), 1.0, 0, 1000, str(host.blocks))


def test_other_flow_families_are_refused_in_one_line(comfy):
    """A flow model of a family the pack does not edit (AuraFlow here, as Wan, HunyuanVideo, Lumina, Qwen-Image,
    HiDream would be) is refused before any work, naming the supported ones."""
    import comfy.supported_models as sm

    from nodes.flow.family import flow_host

    config = dict(max_seq=256, cond_seq_dim=64, n_double_layers=1, n_layers=2, dim=64, n_heads=2, patch_size=2,
                  global_conddim=64,
                  in_channels=4, out_channels=4)
    aura = sm.AuraFlow(config).get_model({}, device="cpu")
    import comfy.model_patcher

    patcher = comfy.model_patcher.ModelPatcher(aura, load_device="cpu", offload_device="cpu")
    with pytest.raises(HSpaceError, match="supported: SD1.x, SD2.x and SDXL UNets, and the flow transformers Flux.1"):
        flow_host(patcher)
    with pytest.raises(HSpaceError) as e:
        sd().ApplyHSpaceDirection().apply(patcher, direction(flow_host(tiny("flux"))), 1.0, 0, 1000, "both",
                                          "asymmetric")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ a real-layout Flux.1 checkpoint

@pytest.fixture(scope="module")
def real_layout_flux(comfy, tmp_path_factory):
    """A Flux.1 dev diffusion-model file with the real key names and widths (hidden 3072, 24 heads, T5's 4096
    context, CLIP-L's 768 pooled vector, distilled guidance) and one joint block (0.4 B parameters, bfloat16),
    loaded by ``comfy.sd.load_diffusion_model``, the function ComfyUI's stock UNETLoader calls (its node module
    cannot be imported beside this pack's ``nodes`` package in one process)."""
    import comfy.sd
    import comfy.supported_models as sm
    from safetensors.torch import save_file

    config = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
                  hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=0,
                  axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True,
                  txt_ids_dims=[])
    shapes = {k: v.shape for k, v in sm.Flux(dict(config)).get_model({}, device="meta").diffusion_model
              .state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, shape in shapes.items():
        fan_in = shape[-1] if len(shape) > 1 else 1
        scale = 1.0 if "norm" in k and "scale" in k else (fan_in ** -0.5 if len(shape) > 1 else 0.0)
        t = torch.randn(shape, generator=g) * scale if scale else torch.zeros(shape)
        if "norm" in k and "scale" in k:
            t = torch.ones(shape)
        if k.startswith("final_layer.linear"):
            t = t * 0.1
        state[k] = t.to(torch.bfloat16)
    path = tmp_path_factory.mktemp("flux") / "flux1-dev-1block.safetensors"
    save_file(state, str(path))
    del state
    return comfy.sd.load_diffusion_model(str(path))


def real_cond(seed):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 8, 4096, generator=g) * 0.1, {"pooled_output": torch.randn(1, 768, generator=g) * 0.1,
                                                          "guidance": 3.5}]]


def test_a_real_layout_flux_checkpoint_through_the_stock_loader(comfy, real_layout_flux):
    """Detected as Flux.1 by ComfyUI from its keys; the direction patches only its joint block; strength 0 is the
    stock sampler; the exact-replay inversion regenerates the latent."""
    from nodes.flow.family import flow_host

    model = real_layout_flux
    host = flow_host(model)
    assert (host.family, host.width, host.blocks, host.patch) == ("flux", 3072, 1, 2)
    sig = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 3)
    noise = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    d = direction(host, 0, "stream", (8, 8))
    patched = applied(model, d)
    replaced = patched.model_options["transformer_options"]["patches_replace"]["dit"]
    assert list(replaced) == [("double_block", 0)] and not model.model_options.get("transformer_options", {}).get(
        "patches_replace")  # a clone was patched, at the chosen block only

    def sample(m, sampler, latent=None, x=noise):
        guider = comfy.samplers.CFGGuider(m)
        guider.set_conds(real_cond(1), real_cond(1))
        guider.set_cfg(1.0)
        return guider.sample(x, torch.zeros_like(x) if latent is None else latent, sampler, sig, disable_pbar=True)

    stock = sample(model, comfy.samplers.sampler_object("euler"))
    assert torch.allclose(sample(patched, asyrp(comfy, (0.0,))), stock, atol=1e-3)
    assert float((sample(patched, asyrp(comfy, (1.0,))) - stock).detach().abs().max()) > 1e-2
    x0 = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.5
    noised, _, maps = sd().InvertLatent().invert(model, real_cond(1), {"samples": x0}, sig, False,
                                                 "ddpm (edit-friendly)")["result"]
    rec = sd().regenerate(model, real_cond(1), noised["samples"], sig, maps)
    assert float((rec - x0).detach().abs().max()) < 1e-3
