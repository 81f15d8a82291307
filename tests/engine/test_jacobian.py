"""Jacobian (pullback) directions: subspace iteration recovers the exact SVD of a known linear map
and of a real UNet encoder's full Jacobian; the directions fit the model and edit."""

import pytest
import torch

from hspace_core import HSpaceError, edit, invert
from hspace_core.discovery.jacobian import bottleneck_jacobian, jacobian_directions, top_singular_vectors
from tests.engine.references import tiny_model


def abs_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|cos| between matching rows of a and b ([k, ...])."""
    return torch.nn.functional.cosine_similarity(a.flatten(1).double(), b.flatten(1).double(), dim=1).abs()


def test_a_known_linear_map_gives_its_exact_singular_vectors():
    g = torch.Generator().manual_seed(0)
    d_x, d_h = (3, 8, 8), (16, 2, 2)
    n_x, n_h = 3 * 8 * 8, 16 * 2 * 2
    u, _ = torch.linalg.qr(torch.randn(n_h, n_h, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n_x, n_h, generator=g, dtype=torch.float64))
    s = torch.logspace(1, -1, n_h, dtype=torch.float64)
    a = (u * s) @ v.T  # [n_h, n_x]

    def f(x):  # h = A x, row by row
        return (x.flatten(1).double() @ a.T).float().view(x.shape[0], *d_h)

    x = torch.randn(1, *d_x, generator=g)
    got = top_singular_vectors(f, x, 4, iterations=30, seed=1)
    exact_u, exact_s, exact_vt = torch.linalg.svd(a)
    assert abs_cosines(got.right, exact_vt[:4].float()).min() >= 0.99
    assert abs_cosines(got.left, exact_u[:, :4].T.float()).min() >= 0.99
    assert torch.allclose(got.values.double(), exact_s[:4], rtol=1e-3)
    # the sign convention: each left vector's largest entry is positive
    flat = got.left.flatten(1)
    assert (flat.gather(1, flat.abs().argmax(1, keepdim=True)) > 0).all()


def test_the_unet_encoder_jacobian_matches_its_full_svd():
    model = tiny_model("ddpm", seed=2, size=16)
    x_t = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    t = torch.full((1,), 600, dtype=torch.long)
    basis = torch.eye(3 * 16 * 16).view(-1, 3, 16, 16)
    with torch.no_grad(), torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):  # the full Jacobian, one column per basis vector (rows of the UNet are independent)
        cols = [torch.func.jvp(lambda x: model.encode(x, t.expand(len(x))).h, (x_t.expand(len(b), -1, -1, -1).contiguous(),),
                               (b,))[1].flatten(1) for b in basis.split(256)]
    u, s, vt = torch.linalg.svd(torch.cat(cols).T.double())
    got = bottleneck_jacobian(model, x_t, 600, 3, iterations=40, seed=0)
    assert abs_cosines(got.right, vt[:3].float()).min() >= 0.99, (s[:5], got.values)
    assert torch.allclose(got.values.double(), s[:3], rtol=1e-2)


def test_jacobian_directions_fit_the_model_and_edit():
    model = tiny_model("ddpm", seed=0)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    steps = []
    ds = jacobian_directions(model, image, 2, t_edit=500, steps=10, iterations=3, callback=steps.append)
    assert len(steps) == 5 + 3 and steps[-1].i == steps[-1].total - 1  # 5 inversion steps up to t = 555, 3 rounds
    d0, d1 = ds
    assert d0.info.strength_unit == "h_norm" and d0.info.provenance["t"] == 555
    assert d0.info.provenance["singular_value"] >= d1.info.provenance["singular_value"]
    # unit left vectors scaled to |h| / edited steps: orthogonal, of equal norm
    assert abs(float((d0.values * d1.values).sum())) < 1e-3 * float(d0.values.norm() ** 2)
    assert torch.allclose(d0.values.norm(), d1.values.norm())
    inv = invert(model, image, steps=10)
    out = edit(model, inv, d0, [0.0, 0.1], t_edit=500).images
    assert (out[:, 1] - out[:, 0]).abs().mean() > 1e-3
    with pytest.raises(HSpaceError, match="per image"):
        jacobian_directions(model, image.expand(2, -1, -1, -1), 1, steps=10)
    with pytest.raises(HSpaceError, match="at least one component"):
        jacobian_directions(model, image, 0, steps=10)


def test_cli_direction_jacobian(tmp_path):
    from PIL import Image

    from hspace_core import load_direction
    from tests.engine.test_editing import _cli, _save_tiny

    model_path = _save_tiny(tmp_path, tiny_model("ddpm"))
    Image.new("RGB", (32, 32), (30, 160, 90)).save(tmp_path / "in.png")
    out = tmp_path / "j1.safetensors"
    r = _cli("direction", "jacobian", "--model", str(model_path), "--image", str(tmp_path / "in.png"), "--component",
             "1", "--steps", "8", "--t-edit", "400", "--iterations", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    d = load_direction(out)
    assert d.info.provenance["method"] == "jacobian" and d.info.provenance["component"] == 1
    assert "component 1: singular value" in r.stderr
    # the command line calibrates what it makes on the model it was made for, and says so
    assert d.info.calibration is not None and d.info.calibration["t"] == 400
    assert "calibrated at t=400: strength 1 = " in r.stderr
    assert "calibrate jacobian1: 10/10 steps" in r.stderr  # the calibration's whole edits report their steps
