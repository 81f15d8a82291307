"""One encoder pass for D and D_edit (``nodes.sd.shared``) against the two-call reference, on ComfyUI's tiny
SD15, SDXL and SD2.x (v prediction) classes, with ComfyUI's own FreeU patch and a ControlNet-style residual on
every block: whole edits, sweeps, both CFG branches, and the fallbacks."""

import logging

import pytest
import torch

from tests.comfyui.tiny_sd import comfy_available, comfy_modules, conditioning, tiny_model

why = comfy_available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ComfyUI SD tests: {why}")

KINDS = ["sd15", "sdxl", "sd21v"]
FAMILY = {"sd15": "sd1", "sdxl": "sdxl", "sd21v": "sd2"}


@pytest.fixture(scope="module")
def comfy():
    comfy_modules()
    import comfy.samplers

    return comfy


def sd():
    import nodes.sd as sd

    return sd


def direction(kind, seed=0):
    from hspace_core import DirectionInfo, TensorDirection

    g = torch.Generator().manual_seed(seed)
    return TensorDirection(torch.randn(128, 1, 1, generator=g), None, DirectionInfo((128, 1, 1), family=FAMILY[kind]))


def freeu(model):
    import comfy_extras.nodes_freelunch as fl

    return fl.FreeU_V2.execute(model, 1.3, 1.4, 0.9, 0.2).result[0]


class PlantedControl:
    """A ControlNet-style control (ComfyUI's ``ControlBase`` interface): residuals for every input block,
    the middle block and every skip, a fixed function of the rows' x and timestep, so each row gets its
    own residual, as a ControlNet's are."""

    def __new__(cls, model, kind):
        import comfy.controlnet

        class Planted(comfy.controlnet.ControlBase):
            def __init__(self, shapes):
                super().__init__()
                self.shapes = shapes

            def get_control(self, x_noisy, t, cond, batched_number, transformer_options):
                def res(shape, k):
                    g = torch.Generator().manual_seed(k)
                    w = torch.randn(shape[0], x_noisy.shape[1], generator=g) * 0.05
                    base = torch.nn.functional.interpolate(x_noisy.float(), size=shape[1:], mode="bilinear")
                    return torch.einsum("oc,bchw->bohw", w, base) * (1 + t.float().view(-1, 1, 1, 1) / 1000)
                ins, mid = self.shapes
                return {"input": [res(s, i) for i, s in enumerate(ins)][::-1], "middle": [res(mid, 99)],
                        "output": [res(s, 200 + i) for i, s in enumerate(ins)]}

            def copy(self):
                c = Planted(self.shapes)
                self.copy_to(c)
                return c

        return Planted(block_shapes(model, kind))


SIZE = 16  # latent size: h is 2 x 2 on every tiny class (FreeU's normalisation over h's pixels needs more than one)


def block_shapes(model, kind):
    """([C, H, W] of each input block's output, of the middle block's) at the test's latent size."""
    seen = []
    unet = model.model.diffusion_model
    x = torch.zeros(1, 4, SIZE, SIZE)
    extra = {} if kind != "sdxl" else {"y": torch.zeros(1, 1600)}
    with torch.no_grad():
        unet(x, torch.zeros(1), context=torch.zeros(1, 77, 64),
             transformer_options={"patches": {"input_block_patch": [lambda h, o: seen.append(tuple(h.shape[1:])) or h],
                                              "output_block_patch": [lambda h, s, o: (seen.append(("mid", tuple(h.shape[1:])))
                                                                                     if o["block"] == ("output", 0)
                                                                                     else None) or (h, s)]}},
             **extra)
    mid = [s for s in seen if s[0] == "mid"][0][1]
    return [s for s in seen if s[0] != "mid"], mid


def with_control(cond, control):
    return [[c[0], {**c[1], "control": control, "control_apply_to_uncond": True}] for c in cond]


def edit(comfy, model, kind, strengths, shared, cfg=4.0, control=None, branch="both", t_edit=300, steps=8,
         latents=1):
    m = sd().ApplyHSpaceDirection().apply(model, direction(kind), 2.0, t_edit, 999, branch, "asymmetric")[0]
    sig = comfy.samplers.KSampler(m, steps=steps, device="cpu", sampler="euler", scheduler="normal").sigmas
    pos, neg = (conditioning(i, kind, width=8 * SIZE, height=8 * SIZE) for i in (1, 2))
    if control is not None:
        pos, neg = with_control(pos, control), with_control(neg, control)
    guider = comfy.samplers.CFGGuider(m)
    guider.set_conds(pos, neg)
    guider.set_cfg(cfg)
    sampler = comfy.samplers.KSAMPLER(sd().sample_asyrp, extra_options={"strengths": tuple(strengths), "shared": shared})
    noise = torch.randn(latents, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    return guider.sample(noise, torch.zeros(latents, 4, SIZE, SIZE), sampler, sig, seed=7)


def counting_passes(monkeypatch):
    import nodes.sd.shared as shared

    calls = []
    orig = shared._encode_once
    monkeypatch.setattr(shared, "_encode_once", lambda *a: calls.append(a[1].shape[0]) or orig(*a))
    return calls


@pytest.mark.parametrize("together", [False, True], ids=["halves one by one (CPU)", "halves together (GPU)"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_shared_pass_equals_two_calls_with_freeu_and_a_controlnet(comfy, kind, together, monkeypatch):
    import nodes.sd.shared as shared

    if together:  # the GPU's way, on the CPU: the output blocks on both halves in one batch
        monkeypatch.setattr(shared, "HALVES_ONE_BY_ONE", set())
    model = freeu(tiny_model(kind))
    control = PlantedControl(model, kind)
    calls = counting_passes(monkeypatch)
    strengths = (-1.0, 0.0, 0.5, 2.0)
    two = edit(comfy, model, kind, strengths, shared=False, control=control)
    assert not calls
    one = edit(comfy, model, kind, strengths, shared=True, control=control)
    assert calls and all(n == 2 * 2 * len(strengths) for n in calls)  # [x; x] of 4 rows, cond and uncond
    rel = (one - two).abs().max() / two.abs().max()
    assert rel <= 1e-5, rel
    assert (one[0] - one[1]).abs().max() > 1e-2 and (one[3] - one[1]).abs().max() > 1e-2  # the sweep edits


@pytest.mark.parametrize("latents,strengths", [(3, (1.5,)), (2, (0.0, 1.5))])
def test_a_batch_of_latents_is_edited_as_by_two_calls(comfy, latents, strengths):
    """A batch of N latents with one strength (or N strengths, one each): every edited row gets its strength
    and no plain row any (a per-row vector shorter than the batch once alternated 0 and s over the rows)."""
    model = tiny_model("sd15")
    two = edit(comfy, model, "sd15", strengths, shared=False, latents=latents)
    one = edit(comfy, model, "sd15", strengths, shared=True, latents=latents)
    assert (one - two).abs().max() / two.abs().max() <= 1e-5
    plain = edit(comfy, model, "sd15", (0.0,) * len(strengths), shared=True, latents=latents)
    assert all((one[i] - plain[i]).abs().max() > 1e-3 for i in range(latents) if strengths[i % len(strengths)])


@pytest.mark.parametrize("branch", ["cond", "uncond"])
def test_each_cfg_branch_alone_is_shifted_on_its_own_rows(comfy, branch):
    model = tiny_model("sd15")
    two = edit(comfy, model, "sd15", (0.0, 1.5), shared=False, branch=branch)
    one = edit(comfy, model, "sd15", (0.0, 1.5), shared=True, branch=branch)
    assert (one - two).abs().max() / two.abs().max() <= 1e-5
    both = edit(comfy, model, "sd15", (0.0, 1.5), shared=True, branch="both")
    assert (both[1] - one[1]).abs().max() > 1e-3  # the branch matters: a mix-up of the rows would show


def test_another_diffusion_model_wrapper_falls_back_to_two_calls_and_says_so_once(comfy, monkeypatch, caplog):
    import comfy.patcher_extension as pe

    import nodes.sd.shared as shared

    model = tiny_model("sd15").clone()
    seen = []

    def other(executor, *args, **kwargs):
        seen.append(args[0].shape[0])
        return executor(*args, **kwargs)

    model.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "another_pack", other)
    monkeypatch.setattr(shared, "_said", set())
    calls = counting_passes(monkeypatch)
    with caplog.at_level(logging.WARNING):
        one = edit(comfy, model, "sd15", (0.0, 1.0), shared=True)
        edit(comfy, model, "sd15", (0.0, 1.0), shared=True)
    two = edit(comfy, model, "sd15", (0.0, 1.0), shared=False)
    assert not calls and seen
    notes = [r.message for r in caplog.records if "another diffusion-model wrapper" in r.message]
    assert len(notes) == 1 and "two full UNet passes" in notes[0]
    assert (one - two).abs().max() / two.abs().max() <= 1e-5


def test_pairing_checks_refuse_mismatched_halves(comfy):
    """The wrapper shares only where the two halves are the same rows; otherwise ComfyUI's own forward runs."""
    import nodes.sd.shared as shared

    first, second, expand = shared._halves(2, 8)
    assert first.tolist() == [0, 1, 4, 5] and second.tolist() == [2, 3, 6, 7]
    assert expand.tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    x = torch.arange(8.0).view(8, 1)
    assert not shared._same(x, first, second)
    assert shared._same(x[expand], first, second)


def test_sd2_v_prediction_is_an_sd2_model_and_takes_sd2_directions_only(comfy):
    from hspace_core import HSpaceError

    model = tiny_model("sd21v")
    assert sd().host_family(model) == ("sd2", 128)
    with pytest.raises(HSpaceError, match="made for sd1, but this model is sd2"):
        sd().ApplyHSpaceDirection().apply(model, direction("sd15"), 1.0, 500, 999, "both", "asymmetric")
    # strength 0 is ComfyUI's own euler on the v-prediction model
    sig = comfy.samplers.KSampler(model, steps=6, device="cpu", sampler="euler", scheduler="normal").sigmas
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conditioning(1, "sd21v"), conditioning(2, "sd21v"))
    guider.set_cfg(4.0)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    ours = guider.sample(noise, torch.zeros(1, 4, 8, 8),
                         comfy.samplers.KSAMPLER(sd().sample_asyrp, extra_options={"strengths": (0.0,)}), sig, seed=1)
    stock = guider.sample(noise, torch.zeros(1, 4, 8, 8), comfy.samplers.sampler_object("euler"), sig, seed=1)
    assert (ours - stock).abs().max() / stock.abs().max() <= 1e-5
