"""Noise schedules against closed forms and the reference implementations; Asyrp's step grid."""

import pytest
import torch

from hspace_core import HSpaceError, asyrp_timesteps, cosine_schedule, linear_schedule
from hspace_core.schedule import schedule_from_diffusers_config


def test_linear_schedule_closed_form():
    s = linear_schedule(1000)
    assert s.betas.dtype == torch.float64
    assert float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - s.betas, 0))
    assert float(s.alpha_bar_at(0)) == pytest.approx(0.9999)
    assert float(s.alpha_bar_at(-1)) == 1.0
    ts = torch.tensor([-1, 0, 999])
    assert s.alpha_bar_at(ts).tolist() == [1.0, float(s.alpha_bar[0]), float(s.alpha_bar[999])]


def test_against_guided_diffusion_named_schedules():
    from guided_diffusion.gaussian_diffusion import get_named_beta_schedule
    for kind, n, ours in (("linear", 1000, linear_schedule(1000)), ("cosine", 4000, cosine_schedule(4000)),
                          ("linear", 4000, linear_schedule(4000))):
        ref = torch.from_numpy(get_named_beta_schedule(kind, n))
        assert torch.allclose(ours.betas, ref, rtol=1e-12, atol=1e-15), kind


def test_diffusers_scheduler_configs():
    from diffusers import DDPMScheduler
    for cfg in ({"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000},
                {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000},
                {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}):
        ours = schedule_from_diffusers_config(cfg)
        ref = DDPMScheduler(**cfg).alphas_cumprod.double()
        assert torch.allclose(ours.alpha_bar, ref, rtol=1e-5), cfg["beta_schedule"]
    with pytest.raises(HSpaceError, match="prediction_type"):
        schedule_from_diffusers_config({"prediction_type": "v_prediction"})


def test_asyrp_grid_matches_official_sequence():
    # asyrp.md 1.2: the n = 40 grid of the official code
    official_40 = [0, 25, 51, 76, 102, 128, 153, 179, 204, 230, 256, 281, 307, 333, 358, 384, 409, 435, 461, 486,
                   512, 537, 563, 589, 614, 640, 666, 691, 717, 742, 768, 794, 819, 845, 870, 896, 922, 947, 973,
                   999]
    assert asyrp_timesteps(40).tolist() == official_40
    g50 = asyrp_timesteps(50).tolist()
    assert g50[:5] == [0, 20, 40, 61, 81] and g50[-2:] == [978, 999]
    assert asyrp_timesteps(2, t_0=500).tolist() == [0, 500]
    with pytest.raises(HSpaceError, match="at least 2 steps"):
        asyrp_timesteps(1)


def test_timestep_rescaling_for_4000_step_models():
    s = cosine_schedule(4000, rescale_timesteps=True)
    assert s.model_time(torch.tensor([0, 2000, 3999])).tolist() == [0.0, 500.0, 999.75]
    assert linear_schedule(1000).model_time(torch.tensor([7])).tolist() == [7]
