"""Direction discovery recovers known answers on synthetic cases (issue: direction discovery)."""

import pytest
import torch
import torch.nn.functional as F

from hspace_core import DirectionInfo, HSpaceError, TensorDirection
from hspace_core.directions.project import project_off
from hspace_core.discovery.pca import pca_direction, pca_directions, principal_components
from hspace_core.discovery.supervised import _logistic_normal, classifier_normal, mean_difference
from hspace_core.model import Family, HSpaceModel
from hspace_core.schedule import asyrp_timesteps, linear_schedule
from hspace_core.unets import DDPMConfig, Encoded
from tests.engine.references import tiny_model


class PoolingUNet(torch.nn.Module):
    """A linear network with the UNet interface: h = 4x4 average pool of x_t, eps = 0.

    With eps = 0, DDIM inversion and generation only rescale x (x_t = sqrt(a_t / a_0) x_0), so the
    h recorded at step t is pool(x_0) * sqrt(a_t / a_0): every finder has a closed-form answer."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, x, t):
        return Encoded(h=F.avg_pool2d(x, 8), skips=(), emb=torch.zeros(x.shape[0], 128))

    def decode(self, enc, h):
        return torch.zeros(h.shape[0], 3, 32, 32) + 0 * self.dummy


def pooling_model():
    cfg = DDPMConfig(ch=1, ch_mult=(3, 3, 3, 3), num_res_blocks=1, attn_levels_down=(), attn_levels_up=(), image_size=32)
    return HSpaceModel(PoolingUNet(), Family.DDIM, cfg, linear_schedule(1000))


def test_mean_difference_recovers_a_planted_shift():
    model = pooling_model()
    assert model.h_shape == (3, 4, 4)
    g = torch.Generator().manual_seed(0)
    neg = torch.rand(6, 3, 32, 32, generator=g) * 0.8 - 0.4
    planted = torch.rand(1, 3, 32, 32, generator=g) * 0.4 - 0.2
    pos = neg + planted
    d = mean_difference(model, pos, neg, steps=10, t_edit=500, name="planted")
    grid = asyrp_timesteps(10)
    k = int((grid >= 500).sum())
    a = model.schedule.alpha_bar
    for j, t in enumerate(grid.tolist()):
        expected = F.avg_pool2d(planted, 8)[0] * (a[t] / a[0]).sqrt().float() / k
        assert torch.allclose(d.values[j], expected, atol=1e-6), t
    assert d.info.strength_unit == "mean_difference" and d.info.provenance["n_positive"] == 6


def test_classifier_normal_finds_the_separating_axis():
    g = torch.Generator().manual_seed(1)
    axis = F.normalize(torch.randn(20, generator=g), dim=0)
    x = torch.randn(200, 20, generator=g)
    y = (x @ axis > 0).float()
    x = x + 0.5 * (2 * y[:, None] - 1) * axis  # a margin along the axis
    normal = _logistic_normal(x, y, l2=1e-3)
    assert float(torch.dot(normal, axis)) > 0.95


def test_classifier_normal_direction_on_planted_sets():
    model = pooling_model()
    g = torch.Generator().manual_seed(2)
    neg = torch.rand(8, 3, 32, 32, generator=g) * 0.6 - 0.3
    pos = neg.clone()
    pos[:, 0] += 0.3  # red channel up: only h channel 0 differs
    d = classifier_normal(model, pos, neg, steps=6, t_edit=0)
    v = d.values[-1]
    assert float(v[0].mean()) > 0 and float(v[0].abs().mean()) > 5 * float(v[1:].abs().mean())


def test_pca_finds_a_planted_dominant_direction():
    g = torch.Generator().manual_seed(3)
    axis = F.normalize(torch.randn(50, generator=g), dim=0)
    x = 0.1 * torch.randn(400, 50, generator=g) + 3.0 * torch.randn(400, 1, generator=g) * axis
    axes, std = principal_components(x, 2)
    assert abs(float(torch.dot(axes[0], axis))) > 0.999
    assert float(std[0]) == pytest.approx(3.0, rel=0.15) and float(std[1]) < 0.2


def test_pca_on_model_samples_signs_and_bad_k():
    model = tiny_model()
    d0, d1 = pca_directions(model, 12, 2, steps=6, t_edit=0, seed=4)
    for d in (d0, d1):
        v = d.values.flatten(1)
        assert (F.cosine_similarity(v[1:], v[:-1]) > 0).all()  # sign-aligned along the trajectory
    assert abs(float(F.cosine_similarity(d0.values[-1].flatten(), d1.values[-1].flatten(), dim=0))) < 1e-3
    assert d0.values[-1].norm() >= d1.values[-1].norm()
    with pytest.raises(HSpaceError, match="N >"):
        pca_direction(model, 5, 5, steps=4)


def test_projection_leaves_directions_orthogonal():
    info = DirectionInfo(h_shape=(8, 2, 2), name="x")
    g = torch.Generator().manual_seed(5)
    ts = torch.tensor([0, 500, 999])
    a, b, c = (TensorDirection(torch.randn(3, 8, 2, 2, generator=g), ts, info) for _ in range(3))
    joint = project_off(a, [b, c], joint=True)
    for t in (0, 500, 999):
        v = joint.at(t).flatten()
        assert abs(float(torch.dot(v, b.at(t).flatten()))) < 1e-4
        assert abs(float(torch.dot(v, c.at(t).flatten()))) < 1e-4
    single = project_off(a, [b], joint=False)
    assert abs(float(torch.dot(single.at(500).flatten(), b.at(500).flatten()))) < 1e-4
    assert "without" in joint.info.name and joint.info.provenance["projection"] == "joint least squares"


def test_empty_and_mismatched_sets_are_refused():
    model = tiny_model()
    imgs = torch.rand(2, 3, 32, 32) * 2 - 1
    with pytest.raises(HSpaceError, match="at least one image"):
        mean_difference(model, imgs[:0], imgs, steps=4)
    with pytest.raises(HSpaceError, match=r"\[-1, 1\]"):
        mean_difference(model, imgs * 3, imgs, steps=4)
    with pytest.raises(HSpaceError, match="at least 2 images"):
        classifier_normal(model, imgs[:1], imgs, steps=4)
    other = TensorDirection(torch.zeros(4, 1, 1), None, DirectionInfo(h_shape=(4, 1, 1), name="o"))
    with pytest.raises(HSpaceError, match="channels"):
        project_off(TensorDirection(torch.zeros(8, 1, 1), None, DirectionInfo(h_shape=(8, 1, 1))), [other])
