"""h-space editing on ComfyUI's own SD1.5 and SDXL model classes (tiny random configs), in this process,
through ComfyUI's ModelPatcher, CFGGuider and KSAMPLER: the same objects a workflow uses."""

import math

import pytest
import torch

from hspace_core import DirectionInfo, HSpaceError, TensorDirection
from hspace_core.sampling import ddim_step, predict_x0
from tests.comfyui.tiny_sd import comfy_available, comfy_modules, conditioning, tiny_model

why = comfy_available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ComfyUI SD tests: {why}")

KINDS = ["sd15", "sdxl"]
FAMILY = {"sd15": "sd1", "sdxl": "sdxl"}


@pytest.fixture(scope="module")
def comfy():
    comfy_modules()
    import comfy.samplers

    return comfy


@pytest.fixture(scope="module", params=KINDS)
def kind(request):
    return request.param


@pytest.fixture(scope="module")
def model(comfy, kind):
    return tiny_model(kind)


def sd():
    import nodes.sd as sd  # the pack's adapter (imports ComfyUI lazily)

    return sd


def random_direction(kind, channels=128, seed=0, spatial=(1, 1), timesteps=None):
    g = torch.Generator().manual_seed(seed)
    shape = (channels, *spatial) if timesteps is None else (len(timesteps), channels, *spatial)
    return TensorDirection(torch.randn(shape, generator=g), None if timesteps is None else torch.tensor(timesteps),
                           DirectionInfo((channels, *spatial), family=FAMILY[kind], name="random"))


def sigmas(comfy, model, steps):
    return comfy.samplers.KSampler(model, steps=steps, device="cpu", sampler="euler", scheduler="normal").sigmas


def run(comfy, model, sampler, sig, kind, cfg=5.0, batch=1, seed=0):
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conditioning(1, kind), conditioning(2, kind))
    guider.set_cfg(cfg)
    noise = torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    return guider.sample(noise, torch.zeros(batch, 4, 8, 8), sampler, sig, seed=seed)


def asyrp(comfy, strengths=(1.0,), **options):
    return comfy.samplers.KSAMPLER(sd().sample_asyrp, extra_options={"strengths": tuple(strengths), **options})


def applied(model, direction, strength=1.0, t_edit=500, branch="both", mode="asymmetric"):
    return sd().ApplyHSpaceDirection().apply(model, direction, strength, t_edit, 999, branch, mode)[0]


class Probe:
    """A test-side output/input block patch keeping (block, edit call?, h) of every call."""

    def __init__(self):
        self.seen = []

    def __call__(self, *args):
        h, options = args[0], args[-1]
        self.seen.append((options["block"], sd().EDIT_KEY in options, h.clone()))
        self.chunks = list(options.get("cond_or_uncond", []))
        return args[:-1] if len(args) == 3 else h

    def to(self, device):
        return self


def test_the_family_and_h_of_comfyuis_model_classes(model, kind):
    assert sd().host_family(model) == (FAMILY[kind], 128)


def test_the_patch_changes_h_only_at_output_0_and_only_in_the_edit_call(comfy, model, kind):
    d = random_direction(kind)
    m = applied(model, d, strength=2.0, t_edit=0)
    probe = Probe()
    m.set_model_output_block_patch(probe)  # runs after the direction's patch
    m.set_model_input_block_patch(probe)
    base = model.clone()
    ref = Probe()
    base.set_model_output_block_patch(ref)
    base.set_model_input_block_patch(ref)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([3.0, 3.0])
    ctx = conditioning(1, kind)[0][0].repeat(2, 1, 1)
    extra = {} if kind == "sd15" else {"y": torch.randn(2, 1600, generator=torch.Generator().manual_seed(2))}
    scales = torch.tensor([1.0, -0.5])

    def call(patcher, options):
        opts = {"transformer_options": {**patcher.model_options["transformer_options"], **options,
                                        "cond_or_uncond": [0], "sigmas": sigma}}
        patcher.model.apply_model(x, sigma, c_crossattn=ctx, transformer_options=opts["transformer_options"], **extra)

    with torch.no_grad():
        call(m, {})
        call(base, {})
        plain, reference = probe.seen[:], ref.seen[:]
        probe.seen.clear()
        call(m, {sd().EDIT_KEY: scales})
        edited = probe.seen
    # a plain call: every block sees exactly the unpatched h
    assert [b for b, _, _ in plain] == [b for b, _, _ in reference]
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(plain, reference))
    # the edit call: input blocks and the middle block untouched; at ("output", 0) h + s * 2 * dh
    first_output = next(i for i, (b, _, _) in enumerate(edited) if b[0] == "output")
    assert edited[first_output][0] == ("output", 0)
    assert all(torch.equal(a, b) for (_, _, a), (_, _, b) in zip(edited[:first_output], reference[:first_output]))
    want = reference[first_output][2] + 2.0 * scales.view(-1, 1, 1, 1) * d.values
    assert torch.allclose(edited[first_output][2], want, atol=1e-6)


@pytest.mark.parametrize("stock", ["euler", "ddim"])
def test_strength_zero_is_comfyuis_own_sampler(comfy, model, kind, stock):
    sig = sigmas(comfy, model, 10)
    ours = run(comfy, applied(model, random_direction(kind)), asyrp(comfy, (0.0,)), sig, kind)
    theirs = run(comfy, model, comfy.samplers.sampler_object(stock), sig, kind)
    err = float((ours - theirs).abs().max() / theirs.abs().max())
    print(f"{kind} strength 0 vs ComfyUI {stock}: max relative difference {err:.2e}")
    assert err < 1e-5


def test_an_asymmetric_patch_does_nothing_under_a_stock_sampler_and_a_symmetric_one_edits(comfy, model, kind):
    sig = sigmas(comfy, model, 6)
    stock = comfy.samplers.sampler_object("euler")
    plain = run(comfy, model, stock, sig, kind)
    d = random_direction(kind)
    assert torch.equal(run(comfy, applied(model, d), stock, sig, kind), plain)
    assert (run(comfy, applied(model, d, mode="symmetric"), stock, sig, kind) - plain).abs().max() > 0.1


@pytest.mark.parametrize("shared", [False, True], ids=["two calls", "shared pass"])
def test_one_asyrp_step_is_the_engines_vp_step(comfy, model, kind, shared):
    """One step of the SD sampler from sigma to sigma_next equals the DDIM step in VP coordinates with
    ComfyUI's own alphas_cumprod: x_prev = sqrt(a_prev) P_t(eps(h + dh)) + sqrt(1 - a_prev) eps(h); the
    two-call path calls the model without then with the shift, the shared pass once on [x; x]."""
    d = random_direction(kind)
    m = applied(model, d, strength=1.5, t_edit=0)
    sig = sigmas(comfy, model, 10)[:2]
    ms = model.get_model_object("model_sampling")
    guider = comfy.samplers.CFGGuider(m)
    guider.set_conds(conditioning(1, kind), conditioning(2, kind))
    guider.set_cfg(3.0)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    calls = []

    def spy(model_k, x, sigmas, extra_args=None, callback=None, disable=None, **kw):
        def recording(x, sigma, **args):
            out = model_k(x, sigma, **args)
            calls.append(out)
            return out
        recording.inner_model = model_k.inner_model
        return sd().sample_asyrp(recording, x, sigmas, extra_args, callback, disable, **kw)

    out = guider.sample(x, torch.zeros_like(x), comfy.samplers.KSAMPLER(spy, extra_options={"strengths": (1.0,),
                                                                                         "shared": shared}),
                        sig, seed=0)
    assert len(calls) == (1 if shared else 2) and all(c.shape[0] == (2 if shared else 1) for c in calls)
    d_plain, d_edit = calls[0].chunk(2) if shared else calls
    x_sigma = ms.noise_scaling(sig[0], x, torch.zeros_like(x), True)  # ComfyUI's start at sigma_max: x sqrt(1 + sigma^2)
    a, a_prev = (1 / (1 + float(s) ** 2) for s in sig)
    t = ms.timestep(sig[:1])
    assert abs(float(ms.sigma(t)) - float(sig[0])) < 1e-4 * float(sig[0])  # ComfyUI's sigma <-> t, a = 1/(1+sigma^2)
    x_t = x_sigma * math.sqrt(a)
    eps = (x_sigma - d_plain) / sig[0]
    eps_edit = (x_sigma - d_edit) / sig[0]
    vp = ddim_step(predict_x0(x_t, eps_edit, torch.tensor(a)), eps, torch.tensor(a), torch.tensor(a_prev))
    mine = m.model.process_latent_in(out) * math.sqrt(a_prev)
    assert torch.allclose(mine, vp, rtol=1e-5, atol=1e-5)
    assert (d_edit - d_plain).abs().max() > 1e-3


def test_a_sweep_in_one_batch_equals_its_strengths_one_by_one(comfy, model, kind):
    sig = sigmas(comfy, model, 6)
    m = applied(model, random_direction(kind), t_edit=300)
    strengths = (-1.0, 0.0, 0.5, 2.0)
    sweep = run(comfy, m, asyrp(comfy, strengths), sig, kind)
    assert sweep.shape[0] == len(strengths)
    for i, s in enumerate(strengths):
        one = run(comfy, m, asyrp(comfy, (s,)), sig, kind)[0]
        assert torch.allclose(sweep[i], one, rtol=1e-4, atol=1e-4 * float(one.abs().max())), s
    assert (sweep[0] - sweep[3]).abs().max() > 0.1


def test_branch_selection_under_cfg(comfy, model, kind):
    """cond / uncond / both: the shift lands on the chosen CFG branch's rows only."""
    d = random_direction(kind)
    got = {}
    for branch in ("cond", "uncond", "both"):
        m = applied(model, d, t_edit=0, branch=branch)
        probe = Probe()
        m.set_model_output_block_patch(probe)
        base = model.clone()
        ref = Probe()
        base.set_model_output_block_patch(ref)
        sig = sigmas(comfy, model, 2)[:2]
        run(comfy, m, asyrp(comfy, (1.0,), shared=False), sig, kind, cfg=4.0)  # the edit call's own h
        run(comfy, base, comfy.samplers.sampler_object("euler"), sig, kind, cfg=4.0)
        edit_h = [h for b, e, h in probe.seen if b == ("output", 0) and e]
        plain_h = [h for b, e, h in ref.seen if b == ("output", 0)]
        assert len(edit_h) == 1 and len(plain_h) == 1 and edit_h[0].shape[0] == 2  # cond and uncond rows
        assert sorted(probe.chunks) == [0, 1] and probe.chunks == ref.chunks
        change = (edit_h[0] - plain_h[0]).flatten(1).abs().max(1).values
        got[branch] = {c: float(change[i]) for i, c in enumerate(probe.chunks)}  # 0 cond, 1 uncond
    assert got["cond"][0] > 0.5 and got["cond"][1] == 0
    assert got["uncond"][0] == 0 and got["uncond"][1] > 0.5
    assert got["both"][0] > 0.5 and got["both"][1] > 0.5


def test_per_timestep_and_spatial_directions_apply_at_any_resolution(comfy, model, kind):
    d = random_direction(kind, spatial=(3, 3), timesteps=[0, 500, 999])
    m = applied(model, d, t_edit=0)
    guider = comfy.samplers.CFGGuider(m)
    guider.set_conds(conditioning(1, kind, width=96, height=128), conditioning(2, kind, width=96, height=128))
    guider.set_cfg(2.0)
    noise = torch.randn(1, 4, 16, 12, generator=torch.Generator().manual_seed(0))  # 128 x 96 px
    sig = sigmas(comfy, model, 3)
    out = guider.sample(noise, torch.zeros_like(noise), asyrp(comfy, (1.0,)), sig, seed=0)
    plain = guider.sample(noise, torch.zeros_like(noise), asyrp(comfy, (0.0,)), sig, seed=0)
    assert out.shape == noise.shape and (out - plain).abs().max() > 0.1


def test_inversion_then_strength_zero_reconstructs_the_latent(comfy, kind):
    """Deterministic DDIM inversion of a latent and the plain walk back: the error shrinks like 1/steps
    (the inversion approximation), and the node reports it."""
    model = tiny_model(kind, out_scale=0.02)
    pos = conditioning(1, kind)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    errors = {}
    for steps in (10, 80):
        sig = sigmas(comfy, model, steps)
        noised = sd().invert_latent(model, pos, x0, sig)
        assert float((noised - x0).abs().max()) > 0.5  # the walk moved it up to sigma_max
        rec = sd().regenerate(model, pos, noised, sig)
        errors[steps] = float((rec - x0).pow(2).mean().sqrt() / x0.pow(2).mean().sqrt())
    print(f"{kind} inversion + strength-0 regeneration, relative RMS error: {errors}")
    assert errors[80] < 0.2 and errors[80] < errors[10] / 4
    result = sd().InvertLatent().invert(model, pos, {"samples": x0}, sigmas(comfy, model, 10), True)
    assert "regeneration error: RMS" in result["result"][1]
    assert result["result"][0]["samples"].shape == x0.shape


class PlantByContext:
    """Test-side plant: adds ``v`` to h at ("output", 0) on the rows whose prompt embedding is ``target``
    (seen by a middle-block cross-attention patch of the same forward pass)."""

    def __init__(self, v, target):
        self.v, self.target, self.rows = v, target, None

    def attn2(self, n, context, value, extra_options):
        if extra_options.get("block") == ("middle", 0):
            self.rows = torch.tensor([torch.equal(c, self.target[0]) for c in context])
        return n, context, value

    def output(self, h, hsp, transformer_options):
        if transformer_options["block"] == ("output", 0):
            h = h + self.rows.view(-1, 1, 1, 1).to(h.dtype) * self.v
        return h, hsp


def context_blind(model):
    """The model with its cross-attention outputs zeroed (a fresh test model, changed in place): the
    prompt no longer changes h by itself."""
    with torch.no_grad():
        for name, module in model.model.diffusion_model.named_modules():
            if name.endswith("attn2.to_out.0"):
                module.weight.zero_()
    return model


def test_a_prompt_pair_direction_recovers_a_planted_shift(comfy, kind):
    model = context_blind(tiny_model(kind))
    source = conditioning(1, kind)
    target = [[conditioning(7, kind)[0][0], source[0][1]]]  # another prompt embedding (SDXL: same pooled vector)
    v = torch.randn(128, 1, 1, generator=torch.Generator().manual_seed(9))
    plant = PlantByContext(v, target[0][0])
    model.set_model_attn2_patch(plant.attn2)
    model.set_model_output_block_patch(plant.output)
    d, = sd().DirectionFromPrompts().make(model, source, target, sigmas(comfy, model, 4), 2, 0, 64, 64,
                                          "average", "planted")
    assert d.info.family == FAMILY[kind] and d.info.h_shape == (128, 1, 1) and d.timesteps is not None
    for t in d.timesteps.tolist():
        assert torch.allclose(d.at(t), v, atol=1e-4), t
    sd().host_direction(d, FAMILY[kind], 128)  # fits the model it was made on


def h_blind(model):
    """The model with the first output block's weights on h zeroed (a fresh test model, changed in place):
    its prediction no longer depends on h (GroupNorm groups do not straddle h and the skip channels)."""
    block = model.model.diffusion_model.output_blocks[0][0]
    with torch.no_grad():
        block.in_layers[2].weight[:, :128].zero_()
        block.skip_connection.weight[:, :128].zero_()
    return model


class PlantByBatch:
    """Test-side plant: adds ``v`` to h at ("output", 0) when the batch has ``rows`` rows."""

    def __init__(self, v, rows):
        self.v, self.rows = v, rows

    def __call__(self, h, hsp, transformer_options):
        if transformer_options["block"] == ("output", 0) and h.shape[0] == self.rows:
            h = h + self.v
        return h, hsp


def test_a_latent_set_direction_recovers_a_planted_shift(comfy, kind):
    """Set A = set B twice over (same mean h); the plant marks A's batch (4 rows against B's 2). The
    decoder ignores h, so the plant does not move A's inversion off B's."""
    model = h_blind(tiny_model(kind))
    v = torch.randn(128, 2, 2, generator=torch.Generator().manual_seed(3))
    model.set_model_output_block_patch(PlantByBatch(v, 4))
    size = 16 if kind == "sd15" else 8  # h of 2 x 2
    b = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(4))
    a = torch.cat([b, b])
    d, = sd().DirectionFromLatentSets().make(model, conditioning(1, kind), {"samples": a}, {"samples": b},
                                             sigmas(comfy, model, 4), "keep", "planted")
    assert d.info.h_shape == (128, 2, 2)
    for t in d.timesteps.tolist():
        assert torch.allclose(d.at(t), v, atol=1e-4), t


def test_pca_direction_is_per_timestep_in_std_units(comfy, kind):
    model = tiny_model(kind)
    d, = sd().DirectionPCASD().make(model, conditioning(1, kind), sigmas(comfy, model, 3), 5, 0, 0, 64, 64,
                                    "average", "pca")
    assert d.info.strength_unit == "std" and d.values.shape[1:] == (128, 1, 1)
    assert bool((d.values.flatten(1).norm(dim=1) > 0).all())


def test_independent_directions_are_a_calibrated_list_over_the_interval(comfy):
    """One family is enough: the recording is the PCA node's (tested for both), the ICA is the engine's."""
    from hspace_core.directions.calibration import calibration_of

    model, node = tiny_model("sd15"), sd().DirectionsByIndependenceSD()
    ds, = node.make(model, conditioning(1, "sd15"), sigmas(comfy, model, 3), 6, 1, 0, 0, 0, 999, 64, 64, "average",
                    "ic")
    assert [d.info.name for d in ds] == ["ic 0"] and calibration_of(ds[0]) is not None
    assert ds[0].info.provenance["order"] == "stability" and 0 <= ds[0].info.provenance["stability"] <= 1  # default
    assert ds[0].info.strength_unit == "std" and ds[0].values.shape[1:] == (128, 1, 1)
    assert bool((ds[0].values.flatten(1).norm(dim=1) > 0).all())
    with pytest.raises(HSpaceError, match="more than 5 seeds"):
        node.make(model, conditioning(1, "sd15"), sigmas(comfy, model, 3), 5, 2, 0, 0, 0, 999, 64, 64, "average",
                  "ic")
    # rotate effects: the same recording turned by the directions' effects (effect_maps_sd), sparsest first
    ds, = node.make(model, conditioning(1, "sd15"), sigmas(comfy, model, 3), 6, 2, 0, 0, 300, 999, 64, 64, "keep",
                    "ie", rotate="effects")
    assert [d.info.name for d in ds] == ["ie 0", "ie 1"] and all(calibration_of(d) is not None for d in ds)
    prov = [d.info.provenance for d in ds]
    assert [q["rotate"] for q in prov] == ["effects", "effects"] and "stability" not in prov[0]
    assert prov[0]["effect_kurtosis"] >= prov[1]["effect_kurtosis"]
    assert prov[0]["method"].startswith("independent effects")
    for d in ds:
        assert d.values.shape[1:] == (128, 1, 1)
        assert bool((d.timesteps >= 300).all()) and bool((d.values.flatten(1).norm(dim=1) > 0).all())
    with pytest.raises(HSpaceError, match="rotate must be one of h, effects"):
        node.make(model, conditioning(1, "sd15"), sigmas(comfy, model, 3), 6, 1, 0, 0, 0, 999, 64, 64, "average",
                  "ic", rotate="x")


def test_the_ica_recording_walks_down_to_t_edit_and_sees_the_whole_walks_h(comfy):
    from hspace_core.discovery.host import by_timestep

    model = tiny_model("sd15")
    whole = sigmas(comfy, model, 8)
    part = sd().sigmas_down_to(model, whole, 500)
    assert 2 < len(part) < len(whole) and torch.equal(part, whole[:len(part)])
    recorded = [by_timestep(sd().record_trajectories(model, conditioning(1, "sd15"), s, 3, 0, 64, 64)[1].records[0])
                for s in (whole, part)]
    kept = [t for t in recorded[0] if t >= 500]
    assert sorted(recorded[1]) == sorted(kept) and len(kept) == len(part) - 1
    for t in kept:
        assert torch.equal(recorded[1][t], recorded[0][t]), t


def test_a_recording_keeps_h_as_the_rows_use_it_and_only_in_its_interval(comfy):
    """h averaged as it is recorded, inside [t_min, t_max] only: exactly the numbers the whole recording gives
    once reduced and cut (what Directions by Independence and the other finders then use)."""
    from hspace_core.discovery.host import Recording, _reduce, by_timestep

    model = tiny_model("sd15")
    s = sigmas(comfy, model, 8)
    full, kept = (by_timestep(sd().record_trajectories(model, conditioning(1, "sd15"), s, 2, 0, 128, 128,
                                                       recording=r)[1].records[0])
                  for r in (Recording(), Recording("average", 300, 800)))
    inside = [t for t in full if 300 <= t <= 800]
    assert 0 < len(inside) < len(full) and sorted(kept) == inside
    for t in inside:
        assert kept[t].shape[-2:] == (1, 1) and full[t].shape[-1] > 1
        assert torch.equal(kept[t], _reduce(full[t], "average")), t


def test_sd_directions_save_load_mix_and_apply(comfy, model, kind, tmp_path):
    from hspace_core import load_direction, save_direction
    from nodes.mixer import DirectionMixer

    d1, d2 = random_direction(kind, seed=1), random_direction(kind, seed=2, timesteps=[100, 900])
    path = save_direction(d1, tmp_path / "d1.safetensors")
    back = load_direction(path)
    assert back.info.family == FAMILY[kind] and torch.equal(back.values, d1.values)
    mixed, = DirectionMixer().mix(back, 1.0, -0.5, 1.0, 1.0, False, "joint", direction_2=d2)
    m = applied(model, mixed, t_edit=0)
    sig = sigmas(comfy, model, 3)
    both = run(comfy, m, asyrp(comfy), sig, kind)
    chained = run(comfy, applied(applied(model, d1, t_edit=0), d2, strength=-0.5, t_edit=0), asyrp(comfy), sig, kind)
    assert torch.allclose(both, chained, rtol=1e-4, atol=1e-4 * float(both.abs().max()))


def test_bad_input_is_a_clear_error(comfy, model, kind):
    import comfy.model_sampling

    pixel = TensorDirection(torch.randn(128, 1, 1), None, DirectionInfo((128, 1, 1), family="ddim", name="faces"))
    with pytest.raises(HSpaceError, match="made for a pixel DDPM"):
        applied(model, pixel)
    other = "sdxl" if kind == "sd15" else "sd15"
    with pytest.raises(HSpaceError, match=f"was made for {FAMILY[other]}"):
        applied(model, random_direction(other))
    with pytest.raises(HSpaceError, match="1280 channels"):
        applied(model, random_direction(kind, channels=1280))

    class Flow(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    flow = model.clone()  # what ComfyUI's ModelSamplingSD3 node does to a model
    flow.add_object_patch("model_sampling", Flow(model.model.model_config))
    # a UNet sampled as a flow model is no flow transformer the pack edits: refused in one line, naming them
    refused = r"(SD15|SDXL) \(UNetModel\) is not supported for h-space editing; supported: .*Flux.1"
    with pytest.raises(HSpaceError, match=refused):
        applied(flow, random_direction(kind))
    with pytest.raises(HSpaceError, match=refused):
        run(comfy, flow, asyrp(comfy), sigmas(comfy, model, 3), kind)
    with pytest.raises(HSpaceError, match="a sweep of 3 strengths"):
        run(comfy, model, asyrp(comfy, (0.0, 1.0, 2.0)), sigmas(comfy, model, 3), kind, batch=2)


def test_eta_below_t_boost_is_seeded_noise(comfy, model, kind):
    """Quality boosting: eta > 0 at t < t_boost draws ComfyUI's seeded noise (same seed, same image);
    with t_boost 0 eta does nothing."""
    sig = sigmas(comfy, model, 6)
    m = applied(model, random_direction(kind), t_edit=500)
    plain = run(comfy, m, asyrp(comfy, (1.0,)), sig, kind)
    boosted = run(comfy, m, asyrp(comfy, (1.0,), eta=1.0, t_boost=400), sig, kind)
    again = run(comfy, m, asyrp(comfy, (1.0,), eta=1.0, t_boost=400), sig, kind)
    unboosted = run(comfy, m, asyrp(comfy, (1.0,), eta=1.0, t_boost=0), sig, kind)
    assert torch.equal(boosted, again) and torch.equal(unboosted, plain)
    assert (boosted - plain).abs().max() > 1e-2


def test_the_sweep_scales_asymmetric_shifts_and_leaves_symmetric_ones(comfy, model, kind):
    from nodes.sd import EDIT_KEY, HSpacePatch

    from hspace_core.host import HostShift

    d = random_direction(kind)
    ms = model.get_model_object("model_sampling")
    h = torch.zeros(4, 128, 2, 2)
    options = {"block": ("output", 0), "sigmas": torch.tensor([3.0, 3.0]), "cond_or_uncond": [0, 1],
               EDIT_KEY: torch.tensor([2.0, -1.0])}
    for mode, want in (("asymmetric", [2.0, -1.0, 2.0, -1.0]), ("symmetric", [1.0, 1.0, 1.0, 1.0])):
        out, _ = HSpacePatch(HostShift(d, 0.5, 0.0, mode=mode), ms)(h, None, options)
        assert torch.allclose(out, 0.5 * torch.tensor(want).view(-1, 1, 1, 1) * d.values), mode
    with pytest.raises(HSpaceError, match="no asymmetric h-space direction"):
        run(comfy, model, asyrp(comfy, (1.0,)), sigmas(comfy, model, 3), kind)


# ------------------------------------------------------------------ edit-friendly DDPM inversion of a latent

def replay(comfy, model, start, sig, kind, maps, strengths=(0.0,), t_skip=0, cfg=1.0):
    """SamplerCustom's path with add_noise off: the inverted latent, the prompt's cond, the maps."""
    sampler = asyrp(comfy, strengths, noise_maps=maps, t_skip=t_skip)
    pos = conditioning(1, kind)
    return sd()._guide(model, pos, pos, cfg, sampler, sig, start, torch.zeros_like(start))


def test_edit_friendly_inversion_regenerates_the_latent_to_float_error(comfy, kind):
    """Strength 0 replays the noise maps onto the input latent (float error), where DDIM inversion on the
    same 10 sigmas misses by far more; the maps are one latent-sized tensor per step; the node reports."""
    model = tiny_model(kind, out_scale=0.02)
    pos = conditioning(1, kind)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    sig = sigmas(comfy, model, 10)
    start, maps = sd().invert_latent_ddpm(model, pos, x0, sig, seed=3)
    assert maps.maps.shape == (10, 1, 4, 8, 8) and maps.steps == 10
    rec = sd().regenerate(model, pos, start, sig, maps)
    err = float((rec - x0).abs().max())
    ddim = sd().regenerate(model, pos, sd().invert_latent(model, pos, x0, sig), sig)
    ddim_err = float((ddim - x0).abs().max())
    print(f"{kind} strength-0 regeneration max |error|: edit-friendly {err:.3g}, DDIM {ddim_err:.3g}")
    assert err < 1e-4 and ddim_err > 100 * err
    again, maps2 = sd().invert_latent_ddpm(model, pos, x0, sig, seed=3)
    assert torch.equal(again, start) and torch.equal(maps2.maps, maps.maps)
    other, _ = sd().invert_latent_ddpm(model, pos, x0, sig, seed=4)
    assert float((other - start).abs().max()) > 0.5  # the seed draws x at every sigma
    result = sd().InvertLatent().invert(model, pos, {"samples": x0}, sig, True, "ddpm (edit-friendly)", 3)
    noised, report, node_maps = result["result"]
    assert torch.equal(noised["samples"], start) and torch.equal(node_maps.maps, maps.maps)
    assert "edit-friendly" in report and f"regeneration error: RMS {float((rec - x0).pow(2).mean().sqrt()):.4g}, " \
        f"max {err:.4g}" in report
    assert sd().InvertLatent().invert(model, pos, {"samples": x0}, sig, False)["result"][2] is None


def test_edit_friendly_edits_share_the_maps_and_t_skip_keeps_more(comfy, kind):
    """With an asymmetric direction: a sweep's strength-0 row is the exact regeneration, the sweep equals
    its strengths one by one (the maps are shared, no other randomness), the edit changes the latent, and
    starting t_skip steps lower still regenerates exactly and changes it less."""
    model = tiny_model(kind, out_scale=0.02)
    pos = conditioning(1, kind)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    sig = sigmas(comfy, model, 10)
    start, maps = sd().invert_latent_ddpm(model, pos, x0, sig, seed=0)
    m = applied(model, random_direction(kind), t_edit=200)
    sweep = replay(comfy, m, start, sig, kind, maps, (-1.0, 0.0, 1.0))
    assert sweep.shape[0] == 3
    assert float((sweep[1] - x0[0]).abs().max()) < 1e-4
    for i, s in ((0, -1.0), (2, 1.0)):
        one = replay(comfy, m, start, sig, kind, maps, (s,))[0]
        assert torch.allclose(sweep[i], one, atol=1e-4 * float(one.abs().max())), s
    change = float((sweep[2] - x0[0]).pow(2).mean().sqrt())
    skipped = replay(comfy, m, start, sig, kind, maps, (0.0, 1.0), t_skip=4)
    assert float((skipped[0] - x0[0]).abs().max()) < 1e-4
    change_skipped = float((skipped[1] - x0[0]).pow(2).mean().sqrt())
    print(f"{kind} RMS latent change at strength 1: t_skip 0 {change:.3g}, t_skip 4 {change_skipped:.3g}")
    assert change > 0.05 and change_skipped < 0.8 * change


def test_noise_maps_of_another_grid_size_or_start_are_refused(comfy, kind):
    model = tiny_model(kind, out_scale=0.02)
    pos = conditioning(1, kind)
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    sig = sigmas(comfy, model, 6)
    start, maps = sd().invert_latent_ddpm(model, pos, x0, sig)
    with pytest.raises(HSpaceError, match="belong to a grid of 7 sigmas"):
        replay(comfy, model, start, sigmas(comfy, model, 8), kind, maps)
    with pytest.raises(HSpaceError, match=r"made for latents of \[4, 8, 8\]"):
        replay(comfy, model, torch.zeros(1, 4, 16, 16), sig, kind, maps)
    with pytest.raises(HSpaceError, match="hold 1 latent"):
        replay(comfy, model, start.repeat(2, 1, 1, 1), sig, kind, maps)
    with pytest.raises(HSpaceError, match="not the one these noise maps start from"):
        replay(comfy, model, start + 0.1 * torch.randn_like(start), sig, kind, maps)  # e.g. add_noise on
    with pytest.raises(HSpaceError, match=r"t_skip must be an integer in \[0, 5\]"):
        replay(comfy, model, start, sig, kind, maps, t_skip=6)
    with pytest.raises(HSpaceError, match="t_skip needs noise maps"):
        sd().AsyrpSamplerSD().get_sampler("0", 0.0, 0, None, 2)
    with pytest.raises(HSpaceError, match="end at 0"):
        sd().invert_latent_ddpm(model, pos, x0, sig[:-1])
    with pytest.raises(HSpaceError, match="unknown inversion method"):
        sd().InvertLatent().invert(model, pos, {"samples": x0}, sig, False, "ddpm", 0)


def test_the_sampler_and_the_inversions_draw_a_console_bar_as_stock_samplers(comfy, model, kind, capfd):
    """The server console shows a tqdm bar for the Asyrp walk and both latent inversions (ComfyUI's own
    progress bar, for the page, is checked on the example workflows in test_in_comfyui.py)."""
    sig = sigmas(comfy, model, 4)
    capfd.readouterr()
    run(comfy, applied(model, random_direction(kind)), asyrp(comfy), sig, kind)
    assert "4/4" in capfd.readouterr().err
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    sd().invert_latent(model, conditioning(1, kind), x0, sig)
    assert "3/3" in capfd.readouterr().err  # up the three non-zero sigmas
    sd().invert_latent_ddpm(model, conditioning(1, kind), x0, sig)
    assert "4/4" in capfd.readouterr().err


def test_sd_directions_are_calibrated_on_the_model(comfy, model, kind):
    """The SD calibration measures what strength 1 means on the MODEL: the calibrated direction, measured
    again, needs strength 1; a direction restricted to a region gets its own calibration and a usable
    range that Apply H-Space Direction's calibrated units follow."""
    from hspace_core.directions.calibration import calibration_of, in_units
    from nodes.sd.calibration import calibrate_sd, calibrated_sd

    d = random_direction(kind, spatial=(2, 2), timesteps=[0, 999])
    pos = conditioning(1, kind)
    d = calibrated_sd(model, d, pos, t=400, usable=False)
    cal = calibration_of(d)
    assert cal.t == 400 and cal.t_end == 999 and cal.scale > 0
    again = calibrate_sd(model, in_units(d, "calibrated"), pos, t=400, usable=False)
    assert again.scale == pytest.approx(1.0, rel=0.05)
    ranged = calibration_of(calibrated_sd(model, d, pos, t=400, steps=4, samples=1))
    assert ranged.usable is not None and ranged.usable[0] <= 0 <= ranged.usable[1]
    # Apply in calibrated units = Apply in raw units at the calibration's scale
    sig = sigmas(comfy, model, 4)
    a = run(comfy, applied(model, d, 1.0), asyrp(comfy), sig, kind)
    patched = sd().ApplyHSpaceDirection().apply(model, d, cal.scale, 500, 999, "both", "asymmetric", units="raw")[0]
    assert torch.allclose(a, run(comfy, patched, asyrp(comfy), sig, kind), rtol=1e-5, atol=1e-4)
