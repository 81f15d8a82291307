"""invert / edit: invariants of the sampler, sweeps, determinism, and refusals of bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hspace_core import DirectionInfo, HSpaceError, TensorDirection, edit, invert, save_direction
from hspace_core.sampling import Variant, asyrp_sample
from hspace_core.schedule import asyrp_timesteps
from tests.engine.references import rel_err, tiny_model

ROOT = Path(__file__).resolve().parents[2]


def direction_for(model, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = scale * torch.randn(3, *model.h_shape, generator=g)
    info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, made_steps=10, name="rand")
    return TensorDirection(values, torch.tensor([0, 500, 999]), info)


def images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module", params=["ddpm", "adm"])
def model(request):
    return tiny_model(request.param)


def test_strength_zero_is_exactly_unedited(model):
    inv = invert(model, images(), steps=10)
    d = direction_for(model)
    plain = edit(model, inv, None, [0.0], t_edit=300).images
    zero = edit(model, inv, d, [0.0], t_edit=300).images
    assert torch.equal(plain, zero)
    edited = edit(model, inv, d, [1.0], t_edit=300).images
    assert (edited - plain).abs().max() > 1e-2


def test_sweep_in_one_batch_equals_one_by_one(model):
    inv = invert(model, images(), steps=10)
    d = direction_for(model)
    strengths = [-1.0, 0.0, 0.5, 2.0]
    sweep = edit(model, inv, d, strengths, t_edit=300, t_boost=200, seed=3)
    assert sweep.images.shape == (2, 4, 3, 32, 32)
    for j, s in enumerate(strengths):
        one = edit(model, inv, d, [s], t_edit=300, t_boost=200, seed=3).images[:, 0]
        assert rel_err(sweep.images[:, j], one) < 1e-5, s


def test_delta_h_zero_reproduces_plain_ddim(model):
    """A direction whose values are zero gives plain DDIM (the h shift is the only difference)."""
    x_T = torch.randn(1, 3, 32, 32)
    grid = asyrp_timesteps(8)
    zero = TensorDirection(torch.zeros(model.h_shape), None, DirectionInfo(h_shape=model.h_shape))
    with torch.no_grad():
        a = asyrp_sample(model, x_T, grid)
        b = asyrp_sample(model, x_T, grid, zero)
    assert rel_err(b, a) < 1e-5


def test_deterministic_for_a_seed_and_seed_matters(model):
    inv = invert(model, images(1), steps=10)
    d = direction_for(model)
    a = edit(model, inv, d, [1.0], t_edit=300, t_boost=500, seed=11).images
    b = edit(model, inv, d, [1.0], t_edit=300, t_boost=500, seed=11).images
    c = edit(model, inv, d, [1.0], t_edit=300, t_boost=500, seed=12).images
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3
    inv2 = invert(model, images(1), steps=10)
    assert torch.equal(inv.x_T, inv2.x_T)


def test_variants_differ_and_symmetric_edits_less(model):
    inv = invert(model, images(2), steps=10)
    d = direction_for(model)
    base = edit(model, inv, None, [0.0]).images
    change = {}
    for v in Variant:
        out = edit(model, inv, d, [1.0], t_edit=300, variant=v.value).images
        change[v] = float((out - base).pow(2).mean().sqrt())
    assert len({round(c, 6) for c in change.values()}) == 4
    assert all(c > 0 for c in change.values())


def test_clip_x0_keeps_every_prediction_in_range(model):
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 3
    d = direction_for(model, scale=2.0)
    seen = {True: [], False: []}
    out = {}
    for clip in (True, False):
        out[clip] = edit(model, x_T, d, [1.0], t_edit=300, steps=8, clip_x0=clip,
                         callback=lambda info, c=clip: seen[c].append(info.x0_pred.abs().max().item())).images
    assert max(seen[True]) <= 1.0 and out[True].abs().max() <= 1.0
    assert max(seen[False]) > 1.0  # the random network predicts far out of range: the clamp did something
    assert not torch.allclose(out[True], out[False])


def test_inversion_round_trip_converges_with_steps(model):
    x = images(1, seed=5)
    errs = []
    for steps in (10, 50):
        inv = invert(model, x, steps=steps)
        rec = edit(model, inv, None, [0.0]).images[:, 0]
        errs.append(float((rec - inv.x_0).pow(2).mean()))
    assert errs[1] < errs[0]


def test_size_policy_and_report(model):
    wide = torch.rand(1, 3, 40, 64) * 2 - 1
    inv = invert(model, [wide, images(1)], steps=4)
    assert inv.x_0.shape == (2, 3, 32, 32)
    assert "centre-cropped" in inv.preprocessing[0] and "model's size" in inv.preprocessing[1]
    with pytest.raises(HSpaceError, match="resize"):
        invert(model, wide, steps=4, size_policy="error")


@pytest.mark.parametrize("bad,match", [
    (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
    (torch.full((1, 3, 32, 32), 2.0), r"\[-1, 1\]"),
    (torch.zeros(0, 3, 32, 32), "empty"),
    (torch.zeros(1, 4, 32, 32), "3, H, W"),
])
def test_bad_images_refused(model, bad, match):
    with pytest.raises(HSpaceError, match=match):
        invert(model, bad, steps=4)


def test_bad_edit_arguments_refused(model):
    inv = invert(model, images(1), steps=5)
    d = direction_for(model)
    with pytest.raises(HSpaceError, match="t_edit"):
        edit(model, inv, d, 1.0, t_edit=1200)
    with pytest.raises(HSpaceError, match="t_edit"):
        edit(model, inv, d, 1.0, t_edit=-1)
    with pytest.raises(HSpaceError, match="at least 2"):
        invert(model, images(1), steps=1)
    with pytest.raises(HSpaceError, match="at least 2"):
        edit(model, inv, d, 1.0, steps=1)
    with pytest.raises(HSpaceError, match="finite"):
        edit(model, inv, d, [float("nan")])
    other = tiny_model("adm" if model.network == "ddpm" else "ddpm")
    with pytest.raises(HSpaceError, match="another model"):
        edit(other, inv, None, 0.0)


# ---------------------------------------------------------------- command line

def _save_tiny(tmp_path, model):
    from safetensors.torch import save_file
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.unet.state_dict().items()}, str(path),
              metadata={"hspace.image_size": "32"})
    return path


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hspace_core", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_cli_edit_writes_a_strip(tmp_path):
    from PIL import Image
    from hspace_core.loading import load_model
    model_path = _save_tiny(tmp_path, tiny_model("ddpm"))
    model = load_model(model_path)
    save_direction(direction_for(model), tmp_path / "d.safetensors")
    Image.new("RGB", (48, 32), (200, 120, 40)).save(tmp_path / "in.png")
    out = tmp_path / "strip.png"
    r = _cli("edit", "--model", str(model_path), "--image", str(tmp_path / "in.png"), "--direction",
             str(tmp_path / "d.safetensors"), "--strength", "-1", "--strength", "1", "--t-edit", "300",
             "--inversion-steps", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (4 * 32 + 5 * 2, 32 + 2 * 2)  # input, reconstruction, 2 strengths
    assert "centre-cropped" in r.stderr and "step 5/5" in r.stderr


def test_cli_edit_bad_input_writes_nothing(tmp_path):
    from hspace_core.loading import load_model
    model_path = _save_tiny(tmp_path, tiny_model("ddpm"))
    other = tiny_model("ddpm", size=32)
    wide = TensorDirection(torch.zeros(128, 1, 1), None, DirectionInfo(h_shape=(128, 1, 1), name="wide"))
    save_direction(wide, tmp_path / "wide.safetensors")
    from PIL import Image
    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    out = tmp_path / "strip.png"
    cases = [
        ["--direction", str(tmp_path / "wide.safetensors")],
        ["--direction", str(tmp_path / "wide.safetensors"), "--t-edit", "5000"],
    ]
    for extra in cases:
        r = _cli("edit", "--model", str(model_path), "--image", str(tmp_path / "in.png"), "--strength", "1",
                 "--inversion-steps", "4", "--out", str(out), *extra)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
        assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
    assert load_model(model_path).h_shape == other.h_shape
