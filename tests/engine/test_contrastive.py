"""Contrastive discovery (NoiseCLR's objective in h): the loss as NoiseCLR defines it, training that finds
the distinct consistent effects of a known host, and the pixel-model directions (files, edits, seeds)."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hspace_core import HSpaceError, edit
from hspace_core.directions.io import load_direction, save_direction
from hspace_core.discovery.contrastive import (ContrastiveSettings, contrastive_directions, contrastive_loss,
                                               pooled, train_contrastive)
from tests.engine.references import tiny_model


def reference_loss(e: torch.Tensor, tau: float) -> float:
    """NoiseCLR's loss written out pair by pair: per direction, the mean of exp(cos / tau) over pairs of
    images (a < b) against the mean over (other direction, same image), -log of their ratio; mean over k."""
    k, n = e.shape[:2]
    cos = lambda a, b: float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))  # noqa: E731
    total = 0.0
    for i in range(k):
        pos = [torch.exp(torch.tensor(cos(e[i, a], e[i, b]) / tau)) for a in range(n) for b in range(a + 1, n)]
        neg = [torch.exp(torch.tensor(cos(e[i, a], e[j, a]) / tau)) for j in range(k) if j != i for a in range(n)]
        total += -float(torch.log(torch.stack(pos).mean() / torch.stack(neg).mean()))
    return total / k


@settings(max_examples=25, deadline=None)
@given(k=st.integers(2, 5), n=st.integers(2, 5), tau=st.floats(0.1, 2.0), seed=st.integers(0, 2 ** 16),
       scales=st.lists(st.floats(0.01, 100.0), min_size=25, max_size=25))
def test_the_loss_is_noiseclrs_and_blind_to_each_effects_size(k, n, tau, seed, scales):
    e = torch.randn(k, n, 7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    loss, pos, neg = contrastive_loss(e, tau)
    assert float(loss) == pytest.approx(reference_loss(e, tau), rel=1e-5, abs=1e-6)
    scaled = e * torch.tensor(scales[:k * n], dtype=torch.float64).view(k, n, 1)
    assert float(contrastive_loss(scaled, tau)[0]) == pytest.approx(float(loss), rel=1e-5, abs=1e-6)
    # aligned positives and orthogonal directions make it lower than any random draw
    aligned = torch.eye(7, dtype=torch.float64)[:k, None, :].expand(k, n, 7)
    assert float(contrastive_loss(aligned, tau)[0]) < float(loss)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 3), n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9),
       pool=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_pooling_averages_each_block_of_the_effect(k, n, c, h, w, pool, seed):
    e = torch.randn(k, n, c * h * w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = pooled(e, (c, h, w), pool)
    grid = e.view(k, n, c, h, w)
    hh, ww = -(-h // pool), -(-w // pool)
    assert out.shape == (k, n, c * hh * ww)
    for i in range(hh):  # a block at the edge averages the part it holds
        for j in range(ww):
            block = grid[..., i * pool:(i + 1) * pool, j * pool:(j + 1) * pool].mean((-2, -1))
            assert torch.allclose(out.view(k, n, c, hh, ww)[..., i, j], block, atol=1e-12)


class LinearHost:
    """A host whose effect of dh on image n is M_n dh: M_n = M + a small per-image part, so a direction's
    effect agrees across images and the effects of orthogonal dh's through M differ."""

    def __init__(self, n_images=12, d_h=16, d_x=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.m = torch.randn(d_x, d_h, generator=g)
        self.per_image = 0.2 * torch.randn(n_images, d_x, d_h, generator=g)
        self.h_values = torch.randn(n_images, d_h, generator=g)
        self.calls = 0

    def h(self, rows, t, noise):
        return self.h_values[rows]

    def effects(self, rows, t, noise, dh):
        self.calls += 1
        maps = self.m + self.per_image[rows]                            # [N, d_x, d_h]
        return torch.einsum("nxh,kh->knx", maps, dh.flatten(1))


def test_training_finds_consistent_and_distinct_effects():
    host = LinearHost()
    steps = []
    s = ContrastiveSettings(k=4, iterations=60, batch=6, lr=0.1, temperature=0.5, radius=0.5, seed=3)
    dh, record = train_contrastive(host, 12, (1,), (16,), [500, 700, 900], s, callback=steps.append)
    assert dh.shape == (4, 16) and len(steps) == 60 and host.calls == 60
    assert steps[-1].i == 59 and steps[-1].total == 60 and steps[0].t in (500, 700, 900)
    rms = dh.pow(2).mean(1).sqrt()
    assert torch.allclose(rms, torch.full((4,), 0.5 * record["h_rms"]), rtol=1e-5)  # every dh at the radius
    assert record["last"]["loss"] < record["first"]["loss"] - 0.2
    # the effects through the shared map: each direction's agrees across images, different ones do not
    eff = host.effects(torch.arange(12), 0, None, dh)
    cos = torch.nn.functional.cosine_similarity(eff[:, :, None, :], eff[:, None, :, :], dim=-1)
    assert cos.mean() > 0.9
    between = torch.nn.functional.cosine_similarity(eff.mean(1)[:, None], eff.mean(1)[None], dim=-1)
    assert between[~torch.eye(4, dtype=torch.bool)].max() < 0.5
    again, _ = train_contrastive(LinearHost(), 12, (1,), (16,), [500, 700, 900], s)
    assert torch.equal(dh, again)  # deterministic for a seed


def test_orthogonal_training_keeps_the_shifts_orthogonal_and_still_separates_their_effects():
    s = ContrastiveSettings(k=4, iterations=60, batch=6, lr=0.1, temperature=0.5, radius=0.5, seed=3,
                            orthogonal=True)
    host = LinearHost()
    dh, record = train_contrastive(host, 12, (1,), (16,), [500, 700, 900], s)
    gram = dh @ dh.T
    assert torch.allclose(gram, torch.eye(4) * gram.diagonal().mean(), atol=1e-5 * float(gram.diagonal().mean()))
    assert torch.allclose(dh.pow(2).mean(1).sqrt(), torch.full((4,), 0.5 * record["h_rms"]), rtol=1e-5)
    eff = host.effects(torch.arange(12), 0, None, dh)
    between = torch.nn.functional.cosine_similarity(eff.mean(1)[:, None], eff.mean(1)[None], dim=-1)
    assert between[~torch.eye(4, dtype=torch.bool)].max() < 0.5
    free, _ = train_contrastive(LinearHost(), 12, (1,), (16,), [500, 700, 900], replace(s, orthogonal=False))
    off = ~torch.eye(4, dtype=torch.bool)
    assert (free @ free.T)[off].abs().max() > 1e-3 * float((free @ free.T).diagonal().mean())  # not by accident
    with pytest.raises(HSpaceError, match="do not fit in h of 3 numbers"):
        train_contrastive(host, 12, (1,), (3,), [500], s)


@pytest.mark.parametrize("change,message", [({"k": 1}, "at least 2 directions"), ({"batch": 1}, "2 images per"),
                                            ({"radius": 0.0}, "radius"), ({"temperature": float("nan")}, "temperature"),
                                            ({"pool": 0}, "pool must be at least 1")])
def test_bad_settings_are_refused_before_any_work(change, message):
    host = LinearHost()
    with pytest.raises(HSpaceError, match=message):
        train_contrastive(host, 12, (1,), (16,), [500], ContrastiveSettings(**change))
    assert host.calls == 0
    with pytest.raises(HSpaceError, match="at least 2 images"):
        train_contrastive(host, 1, (1,), (16,), [500], ContrastiveSettings())


@pytest.fixture(scope="module")
def found():
    model = tiny_model("ddpm", seed=0)
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    steps = []
    s = ContrastiveSettings(k=3, iterations=4, batch=3, seed=5)
    ds = contrastive_directions(model, images, steps=10, t_edit=500, settings=s, callback=steps.append)
    return model, images, s, ds, steps


def test_pixel_directions_are_k_distinct_shifts_of_h_that_edit(found, tmp_path):
    model, images, s, ds, steps = found
    assert len(ds) == 3 and len(steps) == 4
    assert [d.info.name for d in ds] == ["contrastive 0", "contrastive 1", "contrastive 2"]
    sizes = [d.info.provenance["effect_rms"] for d in ds]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] > 0
    for d in ds:
        assert d.values.shape == model.h_shape and d.timesteps is None
        assert d.info.network_fingerprint == model.fingerprint and d.info.strength_unit == "contrastive_radius"
        assert d.info.provenance["n_images"] == 6 and d.info.provenance["k"] == 3
    flat = torch.stack([d.values.flatten() for d in ds])
    cos = torch.nn.functional.cosine_similarity(flat[:, None], flat[None], dim=-1)
    assert cos[~torch.eye(3, dtype=torch.bool)].abs().max() < 0.99
    path = save_direction(ds[0], tmp_path / "d.safetensors")
    back = load_direction(path)
    assert torch.equal(back.values, ds[0].values) and back.info.provenance["k"] == 3
    out = edit(model, torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)), back, [0.0, 1.0],
               t_edit=500, steps=10).images
    assert float((out[:, 1] - out[:, 0]).abs().max()) > 1e-3


def test_pixel_discovery_takes_the_models_samples(found):
    model, images, s, ds, _ = found
    steps = []
    two = ContrastiveSettings(k=2, iterations=1, batch=2, seed=5)
    from_samples = contrastive_directions(model, None, n_samples=2, steps=10, t_edit=500, settings=two,
                                          callback=steps.append)
    assert len(steps) == 10 + 1 and from_samples[0].info.provenance["training_data"] == "samples"
    with pytest.raises(HSpaceError, match="no step of the grid"):
        contrastive_directions(model, images, steps=10, t_edit=5000, settings=s)


class AffineHost:
    """D(x_t; h + dh) = x0 + 0.1 noise + M dh: the output-side fit's least squares has a closed form."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x0 = torch.randn(10, 12, generator=g)
        self.x0[:5] += 1.0
        self.m = torch.randn(12, 6, generator=g)

    def h(self, rows, t, noise):
        return torch.ones(len(rows), 6)

    def predict(self, rows, t, noise, dh):
        out = self.x0[rows] + 0.1 * noise
        return out if dh is None else out + dh.flatten() @ self.m.T


def test_the_output_side_fit_reaches_the_least_squares_shift():
    from hspace_core.discovery.shift_training import ShiftSettings, fit_output_shift

    host = AffineHost()
    a, b = torch.arange(5), torch.arange(5, 10)
    dh, record = fit_output_shift(host, a, b, (6,), [500, 900], ShiftSettings(iterations=300, batch=5, lr=0.05))
    # with every row drawn, mean_B D(+dh) = mean_B x0 + M dh (+ noise): M dh ~ mean A - mean B in least squares
    target = host.x0[a].mean(0) - host.x0[b].mean(0)
    exact = torch.linalg.lstsq(host.m, target[:, None]).solution.flatten()
    assert torch.nn.functional.cosine_similarity(dh, exact, dim=0) > 0.98
    assert float(dh.norm() / exact.norm()) == pytest.approx(1.0, abs=0.1)
    assert record["loss_last"] < record["loss_first"]
    with pytest.raises(HSpaceError, match="same mean"):
        fit_output_shift(host, a, a, (6,), [500])
