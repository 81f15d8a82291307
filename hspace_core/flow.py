"""The asymmetric step in flow-matching form: rectified-flow models (ComfyUI's CONST sampling: SD3, Flux).

Such a model sees x_sigma = (1 - sigma) x0 + sigma eps and its denoiser returns D = x - sigma v, the
predicted x0. Asyrp's two terms in these coordinates (the DDIM step of a flow model):

    eps_hat = (x - (1 - sigma) D) / sigma                      (the noise the plain prediction implies)
    x_next  = (1 - sigma_next) D_edit + sigma_next eps_hat     (x0 from the edited prediction)

With D_edit = D this is exactly Euler on the flow ODE (ComfyUI's ``euler`` sampler: x + (sigma_next -
sigma) (x - D) / sigma), so strength 0 is the stock sampler. Run up the sigmas with the plain model it is
the deterministic inversion of the flow ODE ("unsampling"). ``exact_replay`` records, for independent
draws x_k = (1 - sigma_k) x0 + sigma_k eps_k at every sigma, the correction that takes each step from
x_k onto x_{k+1}, as edit-friendly DDPM inversion records its noise maps: replayed, strength 0 lands on
the input exactly, and edits share the corrections.

Everything here is a pure function over tensors in the model's latent units; the host (``nodes/flow``)
supplies the denoiser. Timesteps for intervals are t = 1000 sigma (0 = clean, 1000 = pure noise), the
scale of SD's 0..999, so an interval reads the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import HSpaceError
from .noise_maps import NoiseMaps
from .sampling import Callback, StepInfo, check_finite
from .seeding import NormalDraws

FlowPredictor = Callable[[torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]


def flow_t(sigma: float) -> float:
    """The interval timestep of a flow sigma: 1000 sigma."""
    return 1000.0 * float(sigma)


def flow_eps(x: torch.Tensor, denoised: torch.Tensor, sigma: float) -> torch.Tensor:
    """The noise that x and the prediction D imply: (x - (1 - sigma) D) / sigma (sigma > 0)."""
    return (x - (1.0 - sigma) * denoised) / sigma


def flow_step(x0: torch.Tensor, eps: torch.Tensor, sigma_next: float) -> torch.Tensor:
    """x at sigma_next from an x0 and an eps: (1 - sigma_next) x0 + sigma_next eps."""
    return (1.0 - sigma_next) * x0 + sigma_next * eps


def flow_walk(predict: FlowPredictor, x: torch.Tensor, sigmas: Sequence[float], *,
              corrections: Sequence[torch.Tensor] | None = None, first: int = 0,
              callback: Callback | None = None) -> torch.Tensor:
    """Asyrp's walk on a flow model: x at sigmas[0], down (or, with the plain model, up) the sigmas.

    predict(x, i) -> (D_x0, D_eps): the prediction for the x0 term (the edited one inside the edit
    interval) and the one for the noise term (the plain one), at sigmas[i]. ``corrections[i]`` is added
    after step i (an ``exact_replay``'s). ``first``: the index the callback's steps are numbered from.
    The callback gets StepInfo(i, total, t = 1000 sigma_next, x, D_x0)."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if sigma <= 0:
            raise HSpaceError(f"a flow step starts at sigma {sigma}: the sigmas must be positive but for the last")
        d_x0, d_eps = predict(x, i)
        x = flow_step(d_x0, flow_eps(x, d_eps, sigma), sigma_next)
        if corrections is not None:
            x = x + corrections[i].to(x)
        check_finite(x, i, total, int(round(flow_t(sigma))))
        if callback is not None:
            callback(StepInfo(first + i, first + total, int(round(flow_t(sigma_next))), x, d_x0))
    return x


def draws(x0: torch.Tensor, sigmas: Sequence[float], seed) -> list[torch.Tensor]:
    """Independent x_k = (1 - sigma_k) x0 + sigma_k eps_k at every sigma (seeded: an int, or one seed per
    latent, ``seeding.NormalDraws``); the draw at sigma 0 is x0 itself."""
    draw = NormalDraws(seed, x0.shape[0])
    out = []
    for s in sigmas:
        eps = draw(x0.shape).to(x0)
        out.append(x0.clone() if float(s) == 0 else flow_step(x0, eps, float(s)))
    return out


def exact_replay(denoise: Callable[[torch.Tensor, int], torch.Tensor], x0: torch.Tensor, sigmas: Sequence[float],
                 seed, callback: Callback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, corrections [n, ...]): the exact-replay inversion of the clean latents x0 down ``sigmas``
    (descending, ending at 0). ``denoise(x, i)``: the plain prediction at sigmas[i]. Start: the draw at
    sigmas[0]; correction i: draw_{i+1} minus the plain step from draw_i. ``flow_walk`` from the start
    with these corrections and the plain model reproduces every draw and ends on x0 (float error)."""
    n = len(sigmas) - 1
    if n < 1 or float(sigmas[-1]) != 0:
        raise HSpaceError("an exact-replay inversion walks down to the clean latent: the sigmas must end at 0")
    xs = draws(x0, sigmas, seed)
    out = []
    for i in range(n):
        d = denoise(xs[i], i)
        out.append(xs[i + 1] - flow_step(d, flow_eps(xs[i], d, float(sigmas[i])), float(sigmas[i + 1])))
        if callback is not None:
            callback(StepInfo(i, n, int(round(flow_t(float(sigmas[i + 1])))), xs[i + 1], d))
    return xs[0], torch.stack(out)


@dataclass(frozen=True, eq=False)
class FlowReplay(NoiseMaps):
    """An inversion of a flow model on a sigma grid, in the model's latent units, which the Asyrp sampler
    starts from (ComfyUI scales a latent at sigma 1 to nothing, so the sampler takes the start from here).

    x_0: [B, C, H, W] the clean latents; sigmas: the descending grid ending in 0 (n + 1 values).
    Exact replay (``exact_replay``): ``maps`` [n, B, ...] the per-step corrections, ``seed`` of the draws;
    the start at sigmas[t_skip] is the draw there. The ODE run backwards (``path`` given): ``maps`` are zero
    and ``path`` [n, B, ...] holds x at sigmas[0 .. n - 1] along the inversion; the start is path[t_skip]."""

    path: torch.Tensor | None = None

    @property
    def kind(self) -> str:
        return "replay" if self.path is None else "ode"

    def start(self, t_skip: int = 0) -> torch.Tensor:
        if self.path is not None:
            return self.path[t_skip]
        return draws(self.x_0, self.sigmas.tolist()[:t_skip + 1], self.seed)[-1]

    def check_inputs(self, x: torch.Tensor) -> None:
        """Refuses latents of another size or count (their values are not checked: ComfyUI hands a flow
        sampler the latent at sigma 1 scaled to zero)."""
        if tuple(x.shape[1:]) != tuple(self.x_0.shape[1:]) or x.shape[0] != self.x_0.shape[0]:
            raise HSpaceError(f"this inversion holds {self.x_0.shape[0]} latent(s) of {list(self.x_0.shape[1:])}, "
                              f"the sampler got {x.shape[0]} of {list(x.shape[1:])}")
