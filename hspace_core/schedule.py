"""Noise schedules and the DDIM timestep grids used by Asyrp.

A schedule is a value: float64 ``betas`` and ``alpha_bar`` computed once (guided-diffusion's
``GaussianDiffusion.__init__`` does the same), gathered per timestep with :func:`gather`.
Timesteps are always indices into the training schedule, ``0 <= t < num_timesteps``; the
sentinel ``t = -1`` stands for the clean image, ``alpha_bar = 1`` (Asyrp, ``denoising_step``).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import HSpaceError


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete DDPM forward process.

    betas:     [T] float64, beta_t for t = 0..T-1.
    alpha_bar: [T] float64, prod_{s<=t} (1 - beta_s); alpha_bar[0] = 1 - beta_0 (not 1).
    kind:      how it was made ("linear", "cosine", "scaled_linear", "squaredcos_cap_v2", "custom").
    rescale_timesteps: feed the network t * 1000 / T instead of t (improved-diffusion's 4000-step
               models); a property of how the network was trained, kept with the schedule.
    """

    betas: torch.Tensor
    alpha_bar: torch.Tensor
    kind: str
    rescale_timesteps: bool = False

    def __post_init__(self) -> None:
        b = self.betas
        if b.dtype != torch.float64 or b.ndim != 1 or len(b) < 2:
            raise HSpaceError("a noise schedule needs at least 2 float64 betas")
        if not bool(((b > 0) & (b <= 1)).all()):
            raise HSpaceError("noise schedule betas must lie in (0, 1]")

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "num_timesteps": self.num_timesteps,
            "beta_start": float(self.betas[0]),
            "beta_end": float(self.betas[-1]),
            "rescale_timesteps": self.rescale_timesteps,
        }

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """The time value the network was trained to receive for schedule index ``t`` ([N] int64)."""
        if self.rescale_timesteps:
            return t.to(torch.float32) * (1000.0 / self.num_timesteps)
        return t

    def alpha_bar_at(self, t: torch.Tensor | int, like: torch.Tensor | None = None) -> torch.Tensor:
        """alpha_bar at schedule indices ``t`` (int or [N] int64); index -1 gives 1 (the clean image).

        Returned as float64 on CPU unless ``like`` is given, then in its dtype and device.
        """
        t = torch.as_tensor(t, dtype=torch.long)
        padded = torch.cat([self.alpha_bar, torch.ones(1, dtype=torch.float64)])
        out = padded[torch.where(t < 0, torch.full_like(t, self.num_timesteps), t)]
        if like is not None:
            out = out.to(device=like.device, dtype=like.dtype)
        return out


MAX_TIMESTEPS = 100_000  # far above any released model (4000); a file claiming more is corrupt


def _check_length(num_timesteps) -> int:
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, numbers.Integral) or \
            not 2 <= num_timesteps <= MAX_TIMESTEPS:
        raise HSpaceError(f"a noise schedule has 2 to {MAX_TIMESTEPS} timesteps, got {num_timesteps!r}")
    return int(num_timesteps)


def _from_betas(betas: torch.Tensor, kind: str, rescale_timesteps: bool = False) -> NoiseSchedule:
    betas = betas.to(torch.float64)
    return NoiseSchedule(betas, torch.cumprod(1.0 - betas, 0), kind, rescale_timesteps)


def linear_schedule(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                    rescale_timesteps: bool = False) -> NoiseSchedule:
    """Ho et al.'s linear schedule (every DDIM/SDEdit/P2/ADM-256 model: 1e-4 to 0.02 over 1000 steps).

    For other lengths the end points are scaled by 1000 / T, as improved-diffusion's
    ``get_named_beta_schedule("linear", T)`` does, so the process reaches the same noise level.
    """
    scale = 1000.0 / _check_length(num_timesteps)
    betas = torch.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=torch.float64)
    return _from_betas(betas, "linear", rescale_timesteps)


def cosine_schedule(num_timesteps: int = 4000, s: float = 0.008, max_beta: float = 0.999,
                    rescale_timesteps: bool = False) -> NoiseSchedule:
    """improved-diffusion's cosine schedule (Nichol & Dhariwal 2021, Eq. 17), betas clipped at 0.999."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    _check_length(num_timesteps)
    betas = [min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta)
             for i in range(num_timesteps)]
    return _from_betas(torch.tensor(betas, dtype=torch.float64), "cosine", rescale_timesteps)


def schedule_from_diffusers_config(config: dict) -> NoiseSchedule:
    """A schedule from a diffusers ``scheduler_config.json`` dict (DDPM/DDIM schedulers).

    Supports ``beta_schedule`` linear, scaled_linear and squaredcos_cap_v2, and ``trained_betas``;
    refuses v-prediction and sample-prediction models, which Asyrp's eps-based step does not cover.
    """
    if not isinstance(config, dict):
        raise HSpaceError(f"a scheduler config is a JSON object, got {type(config).__name__}")
    pred = config.get("prediction_type", "epsilon")
    if pred != "epsilon":
        raise HSpaceError(f"scheduler prediction_type {pred!r} is not supported (only 'epsilon')")
    if config.get("rescale_betas_zero_snr"):
        raise HSpaceError("zero-terminal-SNR schedules are not supported")
    try:
        T = _check_length(int(config.get("num_train_timesteps", 1000)))
        start = float(config.get("beta_start", 1e-4))
        end = float(config.get("beta_end", 0.02))
        trained = config.get("trained_betas")
        if trained is not None:
            _check_length(len(trained))
            return _from_betas(torch.tensor(trained, dtype=torch.float64), "custom")
    except (TypeError, ValueError, OverflowError) as e:
        raise HSpaceError(f"scheduler config: not a schedule ({type(e).__name__}: {e})") from None
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        return _from_betas(torch.linspace(start, end, T, dtype=torch.float64), "linear")
    if kind == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, T, dtype=torch.float64) ** 2
        return _from_betas(betas, "scaled_linear")
    if kind == "squaredcos_cap_v2":
        def f(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
        return _from_betas(torch.tensor(betas, dtype=torch.float64), "squaredcos_cap_v2")
    raise HSpaceError(f"unknown diffusers beta_schedule {kind!r}")


def load_diffusers_scheduler_config(path: Path) -> NoiseSchedule:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HSpaceError(f"{path}: cannot read scheduler config ({e})") from None
    return schedule_from_diffusers_config(config)


def named_schedule(kind: str, num_timesteps: int, rescale_timesteps: bool = False) -> NoiseSchedule:
    """``linear`` or ``cosine`` by name (the two schedules of the supported pretrained models)."""
    if kind == "linear":
        return linear_schedule(num_timesteps, rescale_timesteps=rescale_timesteps)
    if kind == "cosine":
        return cosine_schedule(num_timesteps, rescale_timesteps=rescale_timesteps)
    raise HSpaceError(f"unknown schedule {kind!r}: use 'linear' or 'cosine'")


def asyrp_timesteps(n: int, t_0: int = 999) -> torch.Tensor:
    """The official Asyrp grid of ``n`` timesteps from 0 to ``t_0`` inclusive, ascending ([n] int64).

    ``int(s + 1e-6)`` for ``s`` in ``linspace(0, 1, n) * t_0`` (Asyrp ``diffusion_latent.py``): for
    n = 40 this is 0, 25, 51, 76, ..., 973, 999. Not DDIM's ``range(0, 1000, 1000 // n)``.
    Inversion walks it upwards in n - 1 network calls; generation walks it down in n calls, the
    last one from t = 0 to the clean image (t = -1).
    """
    if n < 2:
        raise HSpaceError(f"need at least 2 steps, got {n}")
    if t_0 < 1:
        raise HSpaceError(f"t_0 must be at least 1, got {t_0}")
    grid = torch.linspace(0, 1, n, dtype=torch.float64) * t_0
    return torch.tensor([int(float(s) + 1e-6) for s in grid], dtype=torch.long)
