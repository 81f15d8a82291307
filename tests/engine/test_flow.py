"""The asymmetric step in flow form (``hspace_core.flow``): strength 0 is Euler on the flow ODE, the
edited x0 enters only the x0 term, the exact-replay inversion lands on the input, the ODE run backwards
inverts a denoiser whose flow is exact."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hspace_core import HSpaceError
from hspace_core.flow import exact_replay, flow_eps, flow_step, flow_walk


def denoiser(seed=0):
    """A smooth nonlinear x0 predictor D(x, sigma) on [N, 4, 4, 4] latents."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 4, generator=g) * 0.3

    def d(x, sigma):
        return torch.tanh(torch.einsum("oc,nchw->nohw", w, x)) * (1 - sigma) + 0.1 * x
    return d


SIGMAS = [1.0, 0.8, 0.55, 0.3, 0.1, 0.0]


def test_strength_zero_is_euler_on_the_flow_ode():
    d = denoiser()
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    ours = flow_walk(lambda x, i: (d(x, SIGMAS[i]),) * 2, x, SIGMAS)
    ref = x.clone()
    for s, s_next in zip(SIGMAS[:-1], SIGMAS[1:]):  # ComfyUI's euler for CONST models
        ref = ref + (s_next - s) * (ref - d(ref, s)) / s
    assert torch.allclose(ours, ref, atol=1e-6)


def test_the_edited_prediction_enters_only_the_x0_term():
    x, d, shift = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    out = flow_walk(lambda x_, i: (d + shift, d), x, [0.7, 0.4])
    assert torch.allclose(out, flow_step(d, flow_eps(x, d, 0.7), 0.4) + 0.6 * shift, atol=1e-6)


def test_exact_replay_lands_on_the_input_and_edits_share_the_corrections():
    d = denoiser(2)
    x0 = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    start, corr = exact_replay(lambda x, i: d(x, SIGMAS[i]), x0, SIGMAS, seed=(5, 6, 7))
    back = flow_walk(lambda x, i: (d(x, SIGMAS[i]),) * 2, start, SIGMAS, corrections=corr)
    assert (back - x0).abs().max() < 1e-5
    alone_start, alone_corr = exact_replay(lambda x, i: d(x, SIGMAS[i]), x0[1:2], SIGMAS, seed=(6,))
    assert torch.allclose(alone_start, start[1:2]) and torch.allclose(alone_corr, corr[:, 1:2], atol=1e-6)
    shift = 0.05 * torch.ones(1, 4, 1, 1)
    edited = flow_walk(lambda x, i: (d(x, SIGMAS[i]) + shift, d(x, SIGMAS[i])), start, SIGMAS, corrections=corr)
    assert float((edited - x0).mean()) > 0.03  # the edit moves it; without it, none
    with pytest.raises(HSpaceError, match="end at 0"):
        exact_replay(lambda x, i: x, x0, [1.0, 0.5], seed=0)


def test_the_ode_backwards_inverts_an_exact_flow():
    """For a point-mass data distribution the ideal denoiser is the point itself and the flow is a straight
    line: running up the sigmas from x0 and back down returns x0."""
    target = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    up = [0.0001, 0.2, 0.5, 0.9, 1.0]
    noisy = flow_walk(lambda x, i: (target, target), target + 0.0, up[:1] + up[1:])
    back = flow_walk(lambda x, i: (target, target), noisy, list(reversed(up)))
    assert torch.allclose(back, target, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.floats(-5, 5))
def test_fluxspace_adds_the_edit_less_its_part_along_the_prior_per_token(seed, scale):
    """FluxSpace's fine edit (``hspace_core.fluxspace``): what it adds is orthogonal to the prior's output at
    every token, and with it the part along the prior makes up the edit prompt's output; scale 0 is the base."""
    from hspace_core.fluxspace import fine_edit, orthogonal_to

    g = torch.Generator().manual_seed(seed)
    base, edit, prior = (torch.randn(2, 6, 8, generator=g, dtype=torch.float64) for _ in range(3))
    prior[0, 1] = 0  # a zero prior token leaves the edit whole
    added = fine_edit(base, edit, prior, scale) - base
    delta = orthogonal_to(edit, prior)
    assert torch.allclose(added, scale * delta, atol=1e-9)
    assert (delta * prior).sum(-1).abs().max() < 1e-9
    along = edit - delta
    cos = (along * prior).sum(-1) / (along.norm(dim=-1) * prior.norm(dim=-1)).clamp_min(1e-30)
    assert ((cos.abs() - 1).abs() < 1e-9)[prior.norm(dim=-1) > 0].all()  # the removed part lies along the prior
    assert torch.equal(delta[0, 1], edit[0, 1])
    assert torch.equal(fine_edit(base, edit, prior, 0.0), base)
