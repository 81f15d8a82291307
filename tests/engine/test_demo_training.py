"""The demo model's training recipe: the timestep density and loss weight, resumable runs that equal
uninterrupted ones, and an export that loads with its schedule."""

from dataclasses import replace

import torch

from hspace_core import load_model
from hspace_core.demo.train import TrainSettings, export, schedule_of, snr_weight, timestep_density, train

TINY = TrainSettings(steps=3, batch=4, dataset_size=8, save_every=2, warmup=2)


def test_high_noise_gets_more_draws_and_more_weight():
    p = timestep_density(1000, 2.0)
    assert abs(float(p.sum()) - 1) < 1e-12 and abs(float(p[-1] / p[0]) - 3.0) < 1e-9
    a = schedule_of(TrainSettings()).alpha_bar.float()
    w = snr_weight(a, 20.0)
    assert float(w[0]) == 1.0 and float(w[-1]) == 20.0  # plain eps loss at low noise, capped x0 weight at high
    mid = int(torch.argmin(((1 - a) / a - 5).abs()))
    assert abs(float(w[mid]) - 5) < 0.1
    assert torch.equal(snr_weight(a, 0.0), torch.ones_like(a))


def test_a_resumed_run_equals_an_uninterrupted_one_and_exports(tmp_path):
    logs = []
    straight = train(tmp_path / "a", TINY, log=logs.append)
    train(tmp_path / "b", replace(TINY, steps=2), log=logs.append)
    resumed = train(tmp_path / "b", TINY, log=logs.append)
    assert any("resumed" in line and "step 2" in line for line in logs)
    a, b = (torch.load(p, weights_only=True) for p in (straight, resumed))
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    model = load_model(export(straight, tmp_path / "m.safetensors"))
    assert model.schedule.kind == "scaled_linear" and model.h_shape == (128, 8, 8)
    assert torch.allclose(model.schedule.alpha_bar, schedule_of(TINY).alpha_bar)


def test_dropping_the_low_resolution_skips_changes_what_is_trained(tmp_path):
    plain = train(tmp_path / "plain", replace(TINY, steps=1, skip_drop=0.0))
    dropped = train(tmp_path / "dropped", replace(TINY, steps=1, skip_drop=1.0))
    a, b = (torch.load(p, weights_only=True)["model"] for p in (plain, dropped))
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed and "conv_in.weight" in changed  # the gradient reached the input through other paths
