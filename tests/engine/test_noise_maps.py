"""Edit-friendly noise maps on a bare sigma walk (``hspace_core.noise_maps``), with a seeded nonlinear
denoiser: replay lands on x_0, each map is the noise that links two draws, and bad grids are refused."""

import pytest
import torch

from hspace_core import HSpaceError
from hspace_core.noise_maps import NoiseMaps, edit_friendly_maps, replay_noise, sigma_draws, with_residual
from hspace_core.sampling import SigmaStep, StepPrediction, ancestral_sigmas, walk

SIGMAS = [14.6, 6.0, 2.5, 0.9, 0.3, 0.0]


def denoiser(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(16, 16, generator=g) / 4

    def predict(x, step):
        d = torch.tanh(x.flatten(1) @ w).view_as(x) / (1 + step.sigma)
        eps = (x - d) / step.sigma
        return StepPrediction(d, eps, eps)
    return predict


def steps(sigmas=SIGMAS, eta=1.0):
    return [SigmaStep(float(i), float(i + 1), a, b, eta if b else 0.0) for i, (a, b) in enumerate(zip(sigmas, sigmas[1:]))]


def test_replaying_the_maps_lands_on_x0_and_each_map_links_two_draws():
    x_0 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    walk_steps, predict = steps(), denoiser()
    draws = sigma_draws(x_0, SIGMAS[:-1], seed=2)
    maps = edit_friendly_maps(predict, x_0, walk_steps, draws)
    assert maps.shape == (5, 3, 1, 4, 4)
    out = walk(with_residual(predict, maps[-1]), draws[0], walk_steps, noise=replay_noise(maps))
    assert float((out - x_0).abs().max()) < 1e-5
    # step 2 alone: from draw 2, the eta = 1 step with map 2 reaches draw 3
    s = walk_steps[2]
    pred = predict(draws[2], s)
    down, up = ancestral_sigmas(s.sigma, s.sigma_next, s.eta)
    assert torch.allclose(pred.x0 + down * pred.eps + up * maps[2], draws[3], atol=1e-5)
    # the draws are x_0 plus independent noise of each sigma's size
    assert abs(float((draws[0] - x_0).std()) / SIGMAS[0] - 1) < 0.3
    # a sweep's rows (image-major) each get their image's map
    rows = walk(with_residual(predict, maps[-1].repeat_interleave(2, 0)), draws[0].repeat_interleave(2, 0),
                walk_steps, noise=replay_noise(maps, 2))
    assert torch.allclose(rows[1::2], x_0, atol=1e-5) and torch.allclose(rows[0::2], x_0, atol=1e-5)


def test_noise_maps_refuse_what_does_not_belong_to_them():
    x_0 = torch.zeros(1, 1, 4, 4)
    with pytest.raises(HSpaceError, match="needs eta > 0"):
        edit_friendly_maps(denoiser(), x_0, steps(eta=0.0), sigma_draws(x_0, SIGMAS[:-1], 0))
    with pytest.raises(HSpaceError, match="last sigma must be 0"):
        edit_friendly_maps(denoiser(), x_0, steps(SIGMAS[:-1]), sigma_draws(x_0, SIGMAS[:-2], 0))
    with pytest.raises(HSpaceError, match="need 5 draws"):
        edit_friendly_maps(denoiser(), x_0, steps(), sigma_draws(x_0, SIGMAS[:-2], 0))
    with pytest.raises(HSpaceError, match="do not belong"):
        NoiseMaps(x_0, torch.zeros(4, 1, 1, 4, 4), torch.tensor(SIGMAS), 0)
    maps = NoiseMaps(x_0, torch.zeros(5, 1, 1, 4, 4), torch.tensor(SIGMAS), 0)
    maps.check_grid(torch.tensor(SIGMAS))
    with pytest.raises(HSpaceError, match="grid of 6 sigmas"):
        maps.check_grid(torch.tensor(SIGMAS[1:]))
    maps.check_inputs(maps.start(0))
    with pytest.raises(HSpaceError, match="not the one"):
        maps.check_inputs(maps.start(0) + 0.01)
    assert torch.equal(maps.start(2), sigma_draws(x_0, SIGMAS, 0)[2])
