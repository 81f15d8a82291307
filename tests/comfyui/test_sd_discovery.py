"""Training directions through ComfyUI's own SD models: gradients into h through the guider (``trainable``),
contrastive discovery with the MODEL as the engine's host, and its nodes."""

import os
import subprocess
import sys

import pytest
import torch

from hspace_core import HSpaceError
from hspace_core.discovery.contrastive import ContrastiveSettings
from tests.comfyui.tiny_sd import comfy_available, comfy_modules, conditioning, tiny_model

why = comfy_available()
pytestmark = pytest.mark.skipif(why is not None, reason=f"ComfyUI SD tests: {why}")


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def kind(request):
    comfy_modules()
    return request.param


@pytest.fixture(scope="module")
def model(kind):
    return tiny_model(kind)


def latents(n=4, seed=3):
    return torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def one_d(model, positive, x_t, sigma, x0):
    """ComfyUI's D of ``model`` at (x_t, sigma) through a CFGGuider at cfg 1 (latent units of the LATENT)."""
    import comfy.samplers

    def one_call(k_model, x, sigmas, extra_args=None, callback=None, disable=None):
        return k_model(x_t, torch.full((x_t.shape[0],), sigma), **extra_args)

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, positive)
    guider.set_cfg(1.0)
    return guider.sample(torch.zeros_like(x0), x0, comfy.samplers.KSAMPLER(one_call), torch.tensor([0.0, 0.0]), seed=0)


def shift_measure(probe, noised):
    """A ``run_in_guider`` function: (plain D with h kept, D shifted by a seeded dh, h, dh, the gradient of
    <D, probe> into dh along a seeded w, the same by central differences, sigma, x_t) at the state
    ``noised(x0, model_sampling)`` -> (x_t, sigma)."""
    from nodes.sd.trainable import Kept

    def measure(denoise, x, ms):
        x_t, sigma = noised(x, ms)
        kept = Kept()
        with torch.no_grad():
            plain = denoise(x_t, sigma, record=kept)
        dh = 0.3 * torch.randn(kept.values[0].shape[1:], generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            shifted = denoise(x_t, sigma, dh=dh.expand(2, -1, -1, -1))
        v = dh.clone().requires_grad_(True)
        (denoise(x_t, sigma, dh=v.expand(2, -1, -1, -1)) * probe).sum().backward()
        w = torch.randn(dh.shape, generator=torch.Generator().manual_seed(6))
        with torch.no_grad():
            f = lambda e: float((denoise(x_t, sigma, dh=(dh + e * w).expand(2, -1, -1, -1)) * probe).sum())  # noqa
            numeric = (f(1e-2) - f(-1e-2)) / 2e-2
        return plain, shifted, kept.values[0], dh, float((v.grad * w).sum()), numeric, sigma, x_t
    return measure


def test_the_trainable_model_is_the_model_with_a_shift_and_gradients_are_exact(model, kind):
    """D with a shift through ``trainable`` equals the pack's own symmetric patch of that shift, the plain D
    is the MODEL's, and the gradient into the shift agrees with central differences."""
    from nodes.sd import ApplyHSpaceDirection
    from nodes.sd.trainable import run_in_guider, trainable
    from hspace_core import DirectionInfo, TensorDirection

    family, channels, m = trainable(model)
    positive = conditioning(1, kind)
    x0 = latents(2)
    probe = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))

    def at_600(x, ms):
        sigma = float(ms.sigma(torch.tensor(600.0)))
        return x + sigma * probe, sigma

    with torch.inference_mode():
        plain, shifted, h, dh, analytic, numeric, sigma, x_t = run_in_guider(m, positive, x0,
                                                                             shift_measure(probe, at_600))
    assert h.shape[:2] == (2, channels)
    assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-4) and abs(analytic) > 1e-4

    direction = TensorDirection(dh, None, DirectionInfo(tuple(dh.shape), family=family))
    symmetric = ApplyHSpaceDirection().apply(model, direction, 1.0, 0, 999, "both", "symmetric", units="raw")[0]
    stock = {label: one_d(mm, positive, x_t, sigma, x0) for label, mm in (("plain", model), ("symmetric", symmetric))}
    fmt = model.get_model_object("latent_format")
    assert torch.allclose(fmt.process_out(plain), stock["plain"], atol=1e-5)
    assert torch.allclose(fmt.process_out(shifted), stock["symmetric"], atol=1e-5)
    assert float((shifted - plain).abs().max()) > 1e-3


def test_contrastive_sd_directions_edit_and_leave_the_model_as_it_was(model, kind):
    from nodes.sd import ApplyHSpaceDirection, host_family
    from nodes.sd.discovery import contrastive_sd

    positive = conditioning(1, kind)
    x0 = latents(2)
    x_t = x0 + 3.0 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(9))
    before = one_d(model, positive, x_t, 3.0, x0)
    output_blocks = model.model.diffusion_model.output_blocks
    steps = []
    with torch.inference_mode():
        ds = contrastive_sd(model, positive, latents(4), steps=10, t_edit=300,
                            settings=ContrastiveSettings(k=3, iterations=3, batch=2, seed=1), callback=steps.append)
    assert len(ds) == 3 and len(steps) == 3 and all(s.t >= 300 for s in steps)
    family, channels = host_family(model)
    for d in ds:
        assert d.info.family == family and d.info.h_shape[0] == channels and d.timesteps is None
        assert d.info.provenance["method"].startswith("contrastive")
    # the MODEL as it was: its D unchanged, and its own output blocks back once ComfyUI loads it again
    assert torch.equal(one_d(model, positive, x_t, 3.0, x0), before)
    assert model.model.diffusion_model.output_blocks is output_blocks
    patched = ApplyHSpaceDirection().apply(model, ds[0], 1.0, 0, 999, "both", "symmetric", units="raw")[0]
    assert patched is not model


def test_the_nodes_return_a_calibrated_list_and_pick_one():
    from nodes.mixer import DirectionMixer, PickDirection
    from nodes.sd import DirectionsByContrastSD

    comfy_modules()
    kind, model = "sd15", tiny_model("sd15")
    with torch.inference_mode():
        (ds,) = DirectionsByContrastSD().make(model, conditioning(1, kind), {"samples": latents(4)}, 2, 2, 2, 0.05,
                                              0.5, 0.5, 300, 0, 999, 10, "found")
    assert len(ds) == 2 and [d.info.name for d in ds] == ["found 0", "found 1"]
    assert all(d.info.calibration is not None for d in ds)
    (one,) = PickDirection().pick(ds, [1])
    assert one is ds[1]
    (mixed,) = DirectionMixer().mix(ds[0], 1.0, 1.0, 1.0, 1.0, False, "joint", direction_2=one)
    assert mixed is not None
    with pytest.raises(HSpaceError, match="outside the list of 2"):
        PickDirection().pick(ds, [2])


@pytest.mark.parametrize("where", ["residual stream", "attention output"])
def test_the_trainable_flux_is_the_model_with_a_shift_and_gradients_are_exact(where):
    """Flux.1 through ``trainable`` with h's place: its own out-of-place block forwards from h's block on give
    the stock MODEL's D, D with a shift equals the pack's own symmetric patch of that shift at that place (after
    the block, or at its attention output), and the gradient into the shift agrees with central differences."""
    from nodes.flow.family import KIND_NAMES, flow_host
    from nodes.sd import ApplyHSpaceDirection
    from nodes.sd.trainable import run_in_guider, trainable
    from hspace_core import DirectionInfo, TensorDirection
    from tests.comfyui.tiny_models_pack.tiny_models import flow_conditioning, tiny_flow_model

    comfy_modules()
    model, positive = tiny_flow_model("flux"), flow_conditioning(1, "flux")
    host = flow_host(model)
    location = host.location(1, KIND_NAMES[where])
    family, width, m = trainable(model, location)
    x0 = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    probe = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        plain, shifted, h, dh, analytic, numeric, _, x_t = run_in_guider(
            m, positive, x0, shift_measure(probe, lambda x, ms: ((1 - 0.6) * x + 0.6 * probe, 0.6)))  # flow noising
    assert family == "flux" and h.shape == (2, width, 4, 4)
    copies = [p.block for p in m.model_options["transformer_options"]["patches_replace"]["dit"].values()]
    m.model_patches_to(torch.float64)  # as ComfyUI moves a MODEL's patches with it (device, then dtype)
    assert copies and all(next(b.parameters()).dtype == torch.float64 for b in copies)
    assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-4) and abs(analytic) > 1e-4

    info = DirectionInfo(tuple(dh.shape), family=family, which_h=location.which_h)
    symmetric = ApplyHSpaceDirection().apply(model, TensorDirection(dh, None, info), 1.0, 0, 1000, "both",
                                             "symmetric", units="raw")[0]
    fmt = model.get_model_object("latent_format")
    assert torch.allclose(fmt.process_out(plain), one_d(model, positive, x_t, 0.6, x0), atol=1e-4)
    assert torch.allclose(fmt.process_out(shifted), one_d(symmetric, positive, x_t, 0.6, x0), atol=1e-4)
    assert float((shifted - plain).abs().max()) > 1e-3


def test_flow_effect_maps_are_the_change_of_d_that_the_apply_node_makes_at_h_s_place():
    """On a flow transformer the effect maps are the change of D made by the Apply node's own symmetric patch at
    h's place (here Flux's attention output), at the states one euler step down from the seeded start (sigma 1)
    to each of the calibration's points, t = 1000 sigma."""
    from hspace_core import DirectionInfo, TensorDirection
    from hspace_core.directions.calibration import gain_points
    from nodes.flow.family import flow_host
    from nodes.sd import ApplyHSpaceDirection
    from nodes.sd.discovery import effect_maps_sd
    from tests.comfyui.tiny_models_pack.tiny_models import flow_conditioning, tiny_flow_model

    comfy_modules()
    model, positive = tiny_flow_model("flux"), flow_conditioning(1, "flux")
    host = flow_host(model)
    location = host.location(1, "attention")
    dh = 0.5 * torch.randn(2, host.width, 1, 1, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        maps = effect_maps_sd(model, positive, {400: dh}, 300, 700, (8, 8), samples=2, seed=3, location=location)
    points = gain_points(300, 700)
    fmt = model.get_model_object("latent_format")
    zeros = torch.zeros(2, 16, 8, 8)
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(3))  # at sigma 1 the start is the noise
    d = lambda mm, x_t, s: fmt.process_in(one_d(mm, positive, x_t, s, zeros))  # noqa: E731  (model units)
    d0 = d(model, x, 1.0)
    expected = []
    for j in range(2):
        info = DirectionInfo(tuple(dh[j].shape), family=host.family, which_h=location.which_h)
        patched = ApplyHSpaceDirection().apply(model, TensorDirection(dh[j], None, info), 1.0, 0, 1000, "both",
                                               "symmetric", units="raw")[0]
        x_ts = [(d0 + (p / 1000) * (x - d0), p / 1000) for p in points]
        expected.append(torch.cat([(d(patched, x_t, s) - d(model, x_t, s)).flatten() for x_t, s in x_ts]))
    expected = torch.stack(expected)
    assert float(expected.abs().max()) > 1e-3
    assert torch.allclose(maps, expected, atol=1e-4, rtol=1e-3)


def test_contrastive_and_output_side_directions_train_on_flux_and_other_flow_transformers_are_refused():
    """Contrastive discovery's node on a Flux.1 MODEL: calibrated directions made at the chosen block, which edit
    there (the output-side latent sets too, at the attention output); the MODEL keeps no patch and its
    parameters' flags; the engine's noising there is the flow one (t = 1000 sigma). Flux.2 and SD3 (other
    blocks) are refused, as is a MODEL already patched at or after h's block (training would replace that
    patch); a trainer not given h's place says so."""
    from nodes.flow.family import flow_host
    from nodes.sd import ApplyHSpaceDirection, DirectionFromLatentSets, DirectionsByContrastSD
    from nodes.sd.discovery import SDHost
    from nodes.sd.node_classes import LATENT_SET_METHODS
    from nodes.sd.trainable import trainable
    from tests.comfyui.tiny_models_pack.tiny_models import flow_conditioning, tiny_flow_model

    comfy_modules()
    model, positive = tiny_flow_model("flux"), flow_conditioning(1, "flux")
    params = list(model.model.diffusion_model.parameters())
    for p in params:  # loaded outside inference mode with gradients on: block 0, stock, must not record a graph
        p.requires_grad_(True)
    lat = {"samples": torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        (ds,) = DirectionsByContrastSD().make(model, positive, lat, 2, 3, 2, 0.05, 0.5, 0.5, 300, 0, 900, 10,
                                              "flowc", block=1, h="residual stream")
    assert [d.info.which_h for d in ds] == ["double_block_1.stream"] * 2
    assert all(p.requires_grad for p in params)  # given back as they were
    for p in params:
        p.requires_grad_(False)
    assert all(d.info.family == "flux" and d.info.calibration is not None for d in ds)
    assert not model.model_options.get("transformer_options", {}).get("patches_replace")
    x0 = lat["samples"][:1]
    x_t = 0.4 * x0 + 0.6 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    edited = ApplyHSpaceDirection().apply(model, ds[0], 2.0, 0, 1000, "both", "symmetric")[0]
    assert float((one_d(edited, positive, x_t, 0.6, x0) - one_d(model, positive, x_t, 0.6, x0)).abs().max()) > 1e-3
    (fitted,) = DirectionFromLatentSets().make(model, positive, {"samples": lat["samples"][:2] + 1.0},
                                               {"samples": lat["samples"][2:] - 1.0}, torch.tensor([1.0, 0.0]), "keep",
                                               "sets", block=1, h="attention output", method=LATENT_SET_METHODS[1],
                                               t_edit=300, t_end=900, iterations=3)
    assert fitted.info.which_h == "double_block_1.attention" and fitted.info.calibration is not None
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    noised, sigma = SDHost(None, x0, model.get_model_object("model_sampling"))._x_t(torch.arange(1), 600, noise)
    assert sigma == pytest.approx(0.6) and torch.allclose(noised, 0.4 * x0 + 0.6 * noise, atol=1e-6)  # t = 1000 sigma

    for kind in ("flux2", "sd3"):
        other = tiny_flow_model(kind)
        with pytest.raises(HSpaceError, match="not supported yet"):
            trainable(other, flow_host(other).location(1, "stream"))
    with pytest.raises(HSpaceError, match="already has a patch at joint block 1"):
        trainable(edited, flow_host(edited).location(0, "stream"))
    with pytest.raises(HSpaceError, match="in place"):  # CLIP training (no place of h given): no flow path yet
        trainable(model)


def test_the_output_side_fit_runs_through_the_model():
    """Plumbing on ComfyUI's model (the fit itself is proved on a known linear host in the engine tests)."""
    from nodes.sd.discovery import output_side_sd
    from hspace_core.discovery.shift_training import ShiftSettings

    comfy_modules()
    model, positive = tiny_model("sd15"), conditioning(1, "sd15")
    params = list(model.model.diffusion_model.parameters())
    with torch.inference_mode():  # as a model loaded under inference mode whose parameters say requires_grad
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
    g = torch.Generator().manual_seed(11)
    a, b = torch.randn(3, 4, 8, 8, generator=g) + 0.8, torch.randn(3, 4, 8, 8, generator=g) - 0.8
    steps = []
    d = output_side_sd(model, positive, a, b, steps=10, t_edit=300, settings=ShiftSettings(iterations=3),
                       callback=steps.append)
    assert all(p.requires_grad for p in params)  # given back as they were
    for p in params:
        p.requires_grad_(False)
    with torch.inference_mode():
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    assert len(steps) == 3 and d.info.strength_unit == "x0_set_means" and d.timesteps is None
    assert d.info.provenance["set_sizes"] == [3, 3] and float(d.values.abs().max()) > 0
    with pytest.raises(HSpaceError, match="differ in size"):
        output_side_sd(model, positive, a, b[..., :4], steps=10, t_edit=300)


def test_clip_training_on_an_sd_model_goes_through_the_vae():
    from hspace_core.demo.clip_world import load_tiny_clip
    from hspace_core.discovery.shift_training import ShiftSettings
    from nodes.discovery import DirectionFromText
    from nodes.sd.discovery import clip_sd
    from tests.comfyui.tiny_models_pack.tiny_models import tiny_vae

    comfy_modules()
    model, kind = tiny_model("sd15"), "sd15"
    vae, positive = tiny_vae(), conditioning(1, kind)
    steps = []
    with torch.inference_mode():  # as in ComfyUI's nodes: CLIP loaded and the training run under inference mode
        clip = load_tiny_clip()
        d = clip_sd(model, vae, positive, latents(4), clip, "face", "smiling face", steps=10, t_edit=300,
                    settings=ShiftSettings(iterations=4, batch=2), callback=steps.append)
    assert len(steps) == 4 and d.info.provenance["target_text"] == "smiling face"
    assert d.info.strength_unit == "asyrp" and float(d.values.abs().max()) > 0  # the CLIP gradient reached h
    with pytest.raises(HSpaceError, match="connect vae, latents too"):
        DirectionFromText().train("face", "smile", "tiny_clip (embedded, demo world)", "ViT-B-16-quickgelu", "global",
                                  1, 10, 300, 0.05, 1, 1.0, 3.0, 0, sd_model=model, positive=positive)


def test_clip_training_on_flux_goes_through_the_vae_at_h_s_place():
    """CLIP training with a Flux.1 MODEL (the miniature flow world's, with its VAE) at a chosen place of h: the
    CLIP gradient reaches h there and the direction records the place (the text node passes its block / h)."""
    from hspace_core.demo.clip_world import load_tiny_clip
    from hspace_core.discovery.shift_training import ShiftSettings
    from hspace_sdworld.models import load_flow_demo
    from hspace_sdworld.sampling import encode
    from nodes.discovery import DirectionFromText
    from nodes.flow.family import flow_host
    from nodes.sd.discovery import clip_sd

    comfy_modules()
    model, text_encoder, vae = load_flow_demo()
    steps = []
    with torch.inference_mode():
        d = clip_sd(model, vae, encode(text_encoder, "a face"), latents(2), load_tiny_clip(), "face", "smiling face",
                    steps=10, t_edit=300, t_end=700, settings=ShiftSettings(iterations=2, batch=2),
                    callback=steps.append, location=flow_host(model).location(2, "attention"))
    assert d.info.family == "flux" and d.info.which_h == "double_block_2.attention" and len(steps) == 2
    assert float(d.values.abs().max()) > 0
    assert {"block", "h"} <= set(DirectionFromText.INPUT_TYPES()["optional"])


# ------------------------------------------------------------------ the SD command line (nodes/cli.py)

def sd_cli(args: list[str]) -> subprocess.CompletedProcess:
    from tests.comfyui.harness import ROOT

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "nodes.cli", "direction", *args, "--threads", "1"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def sd_cli_here(args: list[str], capsys) -> tuple[int, str]:
    """The same command line's ``main`` in this process (no Python, torch and ComfyUI start to pay): (exit
    status, stderr)."""
    from nodes.cli import main

    capsys.readouterr()
    code = main(["direction", *args])
    return code, capsys.readouterr().err


def test_the_sd_command_line_discovers_and_trains_on_a_checkpoint_and_never_overwrites(tmp_path, capsys):
    """``python -m nodes.cli direction contrastive | text | ica`` on the miniature SD world: K calibrated files and
    a preview strip (as a process), one CLIP-trained file, one independent component (no images: its strip
    from new samples), each an SD
    direction; a second run refuses before any
    work and names the files; a file that is not a checkpoint is refused in one line (these in this process)."""
    from PIL import Image

    from hspace_core import load_direction
    from hspace_core.demo.faces import render, sample_faces
    from hspace_core.images import to_pil

    faces, out = tmp_path / "faces", tmp_path / "out"
    faces.mkdir()
    out.mkdir()
    for i, im in enumerate(render(sample_faces(3, 77), 64)):
        to_pil(im).save(faces / f"face{i}.png")
    common = ["--ckpt", "demo", "--images", str(faces), "--prompt", "a face", "--steps", "6", "--t-edit", "400"]
    found = sd_cli(["contrastive", *common, "--k", "2", "--iterations", "2", "--batch", "2", "--preview", "1",
                    "--out", str(out)])
    assert found.returncode == 0, found.stderr[-3000:]
    assert "discover: 2/2" in found.stderr
    assert "calibrate contrastive 1: 20/20 steps" in found.stderr  # each calibration's edits report their steps
    files = sorted(out.glob("contrastive_*.safetensors"))
    assert [f.name for f in files] == ["contrastive_0.safetensors", "contrastive_1.safetensors"]
    for f in files:
        d = load_direction(f)
        assert d.info.family == "sd1" and d.info.calibration is not None
    with Image.open(out / "contrastive_preview.png") as im:
        assert im.width >= 3 * 64 and im.height >= 2 * 64  # 2 rows x (1 image x 3 strengths)
    code, err = sd_cli_here(["contrastive", *common, "--k", "2", "--out", str(out)], capsys)
    assert code == 2 and "would overwrite" in err and "contrastive_0.safetensors" in err
    code, err = sd_cli_here(["text", *common, "--source", "face", "--target", "smiling face", "--out",
                             str(out / "smile.safetensors")], capsys)
    assert code == 0, err[-3000:]
    assert "calibrate face -> smiling face: 20/20 steps" in err
    d = load_direction(out / "smile.safetensors")
    assert d.info.family == "sd1" and d.info.name == "face -> smiling face" and d.info.calibration is not None
    (tmp_path / "junk.ckpt").write_bytes(bytes(range(256)) * 8)
    code, err = sd_cli_here(["text", "--ckpt", str(tmp_path / "junk.ckpt"), "--images", str(faces), "--source", "a",
                             "--target", "b", "--out", str(out / "x.safetensors")], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'junk.ckpt'}: ComfyUI cannot load it"), err[-2000:]
    assert not (out / "x.safetensors").exists()
    ica = ["ica", "--ckpt", "demo", "--prompt", "a face", "--steps", "4", "--k", "1", "--out", str(out)]
    code, err = sd_cli_here([*ica, "--seeds", "3"], capsys)          # 2 x k components need more than 3
    assert code == 2 and "--seeds must be more than 3" in err
    code, err = sd_cli_here([*ica, "--seeds", "6"], capsys)
    assert code == 0, err[-3000:]
    assert "calibrate ica 0: 20/20 steps" in err
    d = load_direction(out / "ica_0.safetensors")
    assert f"found again on resamples at {d.info.provenance['stability']:.2f}" in err  # the default order's score
    assert d.info.family == "sd1" and d.info.strength_unit == "std" and d.info.calibration is not None
    with Image.open(out / "ica_preview.png") as im:  # no images given: two new samples of the prompt
        assert im.width >= 6 * 64 and 64 <= im.height < 2 * 64  # 1 row x (2 samples x 3 strengths)
    effects = tmp_path / "effects"
    effects.mkdir()
    code, err = sd_cli_here([*ica[:-1], str(effects), "--seeds", "6", "--rotate", "effects", "--preview", "0"], capsys)
    assert code == 0, err[-3000:]
    d = load_direction(effects / "ica_0.safetensors")
    assert d.info.provenance["rotate"] == "effects" and "independent effects of h" in err
    assert "measure effects" in err  # the effects' forward passes show progress


def test_effect_maps_are_the_change_of_d_that_the_apply_node_makes_at_the_calibrations_points(model, kind):
    """The maps independent effects rotate (``effect_maps_sd``) are, at each of the calibration's points, the
    change of the MODEL's D made by the pack's own patch (Apply H-Space Direction) at the state one DDIM step
    down from the seeded start; each point takes the recorded step nearest it. Every forward pass is a step of
    the progress callback."""
    from hspace_core import DirectionInfo, TensorDirection
    from hspace_core.directions.calibration import gain_points
    from nodes.sd import ApplyHSpaceDirection, host_family
    from nodes.sd.discovery import effect_maps_sd

    positive = conditioning(1, kind)
    family, channels = host_family(model)
    dh = 0.5 * torch.randn(2, channels, 1, 1, generator=torch.Generator().manual_seed(8))
    seen = []
    with torch.inference_mode():
        maps = effect_maps_sd(model, positive, {400: dh}, 300, 700, (8, 8), samples=2, seed=3, callback=seen.append)
        late = effect_maps_sd(model, positive, {300: torch.zeros_like(dh), 700: dh}, 300, 700, (8, 8), samples=2,
                              seed=3)
    points = gain_points(300, 700)
    assert maps.shape == (2, len(points) * 2 * 4 * 8 * 8)
    total = 1 + len(points) * 3  # the start, then at each point the plain pass and one per direction
    assert [s.i for s in seen] == list(range(total)) and {s.total for s in seen} == {total}
    assert [s.t for s in seen[1::3]] == [round(p) for p in points]

    ms, fmt = model.get_model_object("model_sampling"), model.get_model_object("latent_format")
    zeros = torch.zeros(2, 4, 8, 8)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    sigma_max = float(ms.sigma_max)
    x = ms.noise_scaling(torch.tensor(sigma_max), noise, zeros, max_denoise=True)  # the sampler's start
    d = lambda mm, x_t, s: fmt.process_in(one_d(mm, positive, x_t, s, zeros))  # noqa: E731  (model units)
    d0 = d(model, x, sigma_max)
    expected = []
    for j in range(2):
        direction = TensorDirection(dh[j], None, DirectionInfo(tuple(dh[j].shape), family=family))
        patched = ApplyHSpaceDirection().apply(model, direction, 1.0, 0, 999, "both", "symmetric", units="raw")[0]
        blocks = []
        for p in points:
            sigma = float(ms.sigma(torch.tensor(float(p))))
            x_t = d0 + (sigma / sigma_max) * (x - d0)
            blocks.append((d(patched, x_t, sigma) - d(model, x_t, sigma)).flatten())
        expected.append(torch.cat(blocks))
    expected = torch.stack(expected)
    assert float(expected.abs().max()) > 1e-3
    assert torch.allclose(maps, expected, atol=1e-4, rtol=1e-3)
    # {300: 0, 700: dh}: the points nearer 300 take the zero shift, the others dh
    block = maps.shape[1] // len(points)
    for i, p in enumerate(points):
        part = late[:, i * block:(i + 1) * block]
        if p - 300 <= 700 - p:
            assert float(part.abs().max()) == 0, p
        else:
            assert torch.allclose(part, maps[:, i * block:(i + 1) * block], atol=1e-5), p
