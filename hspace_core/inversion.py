"""Inversions of real images, as values: ``invert`` (deterministic DDIM inversion to x_T, asyrp.md 2)
and ``invert_ddpm`` (edit-friendly DDPM inversion: noise maps that replay the image exactly).

Validates everything before any work starts, runs under ``torch.inference_mode()`` and follows the
model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import HSpaceError
from .images import prepare_images
from .model import HSpaceModel
from .noise_maps import edit_friendly_maps
from .sampling import (Callback, JobProgress, ddim_invert, ddim_sample, generation_steps, plain_predictor, vp_predictor,
                       vp_steps)
from .schedule import asyrp_timesteps
from .seeding import NormalDraws, check_seed


class _OnGrid:
    """The grid properties both inversions share (``timesteps``: [n] ascending)."""

    timesteps: torch.Tensor

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def t_0(self) -> int:
        return int(self.timesteps[-1])


@dataclass(frozen=True, eq=False)
class Inversion(_OnGrid):
    """DDIM inversion of a batch of images.

    x_T:       [N, 3, S, S] latents at t_0 (S = the model's size).
    x_0:       [N, 3, S, S] the images as the model saw them, in [-1, 1].
    timesteps: [n] ascending grid used (``asyrp_timesteps(n, t_0)``).
    fingerprint: the model's; ``preprocessing``: what the size policy did, per image.
    reconstruction: [N, 3, S, S] plain DDIM from x_T back down the grid (unclamped), when asked for.
    """

    x_T: torch.Tensor
    x_0: torch.Tensor
    timesteps: torch.Tensor
    fingerprint: str
    preprocessing: tuple[str, ...]
    reconstruction: torch.Tensor | None = None


def check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 2:
        raise HSpaceError(f"steps must be an integer of at least 2, got {steps!r}")


def model_t0(model: HSpaceModel, t_0: int | None) -> int:
    """The top of the grid: ``t_0``, checked, or the schedule's last timestep."""
    top = model.schedule.num_timesteps - 1
    if t_0 is None:
        return top
    if not 1 <= t_0 <= top:
        raise HSpaceError(f"t_0 must lie in [1, {top}], got {t_0}")
    return t_0


def invert(model: HSpaceModel, images, steps: int = 40, *, t_0: int | None = None, size_policy: str = "resize_crop",
           reconstruct: bool = False, callback: Callback | None = None) -> Inversion:
    """DDIM-invert (eta = 0) images to x_{t_0} over ``steps`` grid points (steps - 1 network calls).

    images: [N, 3, H, W] in [-1, 1], or a list of such tensors (sizes may differ); images whose size
    is not the model's are fitted by ``size_policy`` (see ``images.fit_to_size``) and reported.
    reconstruct: also regenerate them without an edit (``steps`` more calls), as the official
    ``precompute_pairs`` does; the progress counts both walks as one job.
    """
    check_steps(steps)
    t_0 = model_t0(model, t_0)
    x_0, report = prepare_images(images, model.image_size, size_policy)
    grid = asyrp_timesteps(steps, t_0)
    x_0 = x_0.to(device=model.device, dtype=torch.float32)
    job = JobProgress(callback, (steps - 1) + (steps if reconstruct else 0))
    with torch.inference_mode():
        x_T = ddim_invert(model, x_0, grid, callback=job.part(steps - 1))
        rec = ddim_sample(model, x_T, grid, callback=job.part(steps)) if reconstruct else None
    return Inversion(x_T=x_T, x_0=x_0, timesteps=grid, fingerprint=model.fingerprint, preprocessing=report,
                     reconstruction=rec)


# ------------------------------------------------------------------ edit-friendly DDPM inversion

@dataclass(frozen=True, eq=False)
class DDPMInversion(_OnGrid):
    """Edit-friendly DDPM inversion of a batch of images (Huberman-Spiegelglas, Kulikov and Michaeli,
    CVPR 2024): noise maps that make stochastic sampling (eta = 1 at every step) reproduce the images.

    x_0:        [N, 3, S, S] the images as the model saw them, in [-1, 1].
    noise_maps: [n, N, 3, S, S] one per generation step of the grid, in generation order
                (``generation_steps(timesteps)``): z_i of step i (t -> t_prev). The last step, to the
                clean image, adds no noise (sigma_up = 0); its map is the residual x_0 - P_{t_min}(x),
                added to the step's x0 as it is, so that regeneration ends exactly on x_0.
    timesteps:  [n] ascending grid (``asyrp_timesteps(n, t_0)``).
    seed:       of the independent draws x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps_t, one per grid
                point (``drawn_x``); generation starts from the draw at its first t. An int (one
                generator for the batch) or a tuple of one seed per image (``seeding.NormalDraws``).
    Memory: n + 1 image-sized tensors per image (the maps and x_0), float32.
    """

    x_0: torch.Tensor
    noise_maps: torch.Tensor
    timesteps: torch.Tensor
    fingerprint: str
    preprocessing: tuple[str, ...]
    seed: int | tuple[int, ...]

    def __post_init__(self):
        check_seed(self.seed, self.x_0.shape[0])
        n = len(self.timesteps)
        if self.noise_maps.shape != (n, *self.x_0.shape):
            raise HSpaceError(f"noise maps of shape {list(self.noise_maps.shape)} do not belong to {self.x_0.shape[0]} "
                              f"image(s) of {list(self.x_0.shape[1:])} on a {n}-step grid "
                              f"(expected {[n, *self.x_0.shape]})")

    @property
    def nbytes(self) -> int:
        return self.noise_maps.numel() * self.noise_maps.element_size()


def drawn_x(schedule, x_0: torch.Tensor, timesteps: torch.Tensor, seed, count: int) -> list[torch.Tensor]:
    """The first ``count`` independent draws x_t ~ q(x_t | x_0) (DDPM Eq. 4) at the grid's points in
    generation order (t_max first), [N, 3, S, S] each, from CPU generators seeded with ``seed`` (an int,
    or one seed per image: ``seeding.NormalDraws``)."""
    draw = NormalDraws(seed, x_0.shape[0])
    out = []
    for t, _ in generation_steps(timesteps)[:count]:
        eps = draw(x_0.shape).to(x_0.device, x_0.dtype)
        a = schedule.alpha_bar_at(t, like=x_0)
        out.append(a.sqrt() * x_0 + (1 - a).sqrt() * eps)
    return out


def invert_ddpm(model: HSpaceModel, images, steps: int = 40, *, t_0: int | None = None, seed: int | tuple[int, ...] = 0,
                size_policy: str = "resize_crop", callback: Callback | None = None) -> DDPMInversion:
    """Edit-friendly DDPM inversion over ``steps`` grid points (``steps`` network calls).

    For every generation step i (t -> t_prev) of the grid: x_t is drawn independently from q(x_t | x_0),
    and z_i = (x_prev - x0_pred - sigma_down eps) / sigma_up in the walk's coordinates, with x_prev the
    draw at t_prev and (x0_pred, eps) the model's at x_t: the z that takes the eta = 1 step from x_t to
    x_prev (the paper's Eq. 5, with DDIM's eta = 1 step on a strided grid; ``noise_maps``). ``edit`` with this
    inversion replays the maps; unedited it lands on x_0 to float error.
    """
    check_steps(steps)
    t_0 = model_t0(model, t_0)
    x_0, report = prepare_images(images, model.image_size, size_policy)
    seed = check_seed(seed, x_0.shape[0])
    grid = asyrp_timesteps(steps, t_0)
    x_0 = x_0.to(device=model.device, dtype=torch.float32)
    pairs = generation_steps(grid)
    walk_steps = vp_steps(pairs, model.schedule, eta=1.0, t_boost=t_0 + 1)
    with torch.inference_mode():
        draws = [x / model.schedule.alpha_bar_at(step.t, like=x_0).sqrt()
                 for x, step in zip(drawn_x(model.schedule, x_0, grid, seed, len(pairs)), walk_steps)]
        maps = edit_friendly_maps(vp_predictor(plain_predictor(model), model.schedule), x_0, walk_steps, draws,
                                  callback)
    return DDPMInversion(x_0=x_0, noise_maps=maps, timesteps=grid, fingerprint=model.fingerprint,
                         preprocessing=report, seed=seed)


# ------------------------------------------------------------------ the inversion file

INVERSION_FORMAT = "hspace-inversion-1"


def save_inversion(inv: Inversion | DDPMInversion, path, *, overwrite: bool = False):
    """Write an inversion to ``path`` (.safetensors: the images, x_T or the noise maps, the grid; the
    model's fingerprint, the kind and seed in the metadata). Refuses to replace a file unless asked."""
    import json
    import os
    from pathlib import Path

    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise HSpaceError(f"{path}: inversion files are .safetensors")
    if path.exists() and not overwrite:
        raise HSpaceError(f"{path}: already exists; choose another name")
    tensors = {"x_0": inv.x_0, "timesteps": inv.timesteps.to(torch.int64)}
    if isinstance(inv, DDPMInversion):
        tensors["noise_maps"], kind, seed = inv.noise_maps, "ddpm", inv.seed
    else:
        tensors["x_T"], kind, seed = inv.x_T, "ddim", None
    meta = {"kind": kind, "fingerprint": inv.fingerprint, "preprocessing": list(inv.preprocessing),
            "seed": list(seed) if isinstance(seed, tuple) else seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().float().cpu().contiguous() if k != "timesteps" else v.cpu().contiguous()
               for k, v in tensors.items()}, str(tmp),
              metadata={"hspace.format": INVERSION_FORMAT, "hspace.inversion": json.dumps(meta)})
    tmp.replace(path)
    return path


def load_inversion(path) -> Inversion | DDPMInversion:
    """An inversion written by ``save_inversion``; anything else is refused with the reason. Every tensor
    is checked here (shapes, dtypes, finite values, the grid), so that a damaged file fails on loading,
    not steps into an edit."""
    import json

    from .checkpoint_files import read_safetensors
    from .images import check_images

    tensors, meta = read_safetensors(path)
    if meta.get("hspace.format") != INVERSION_FORMAT:
        raise HSpaceError(f"{path}: not an inversion file (format {meta.get('hspace.format')!r})")
    try:
        info = json.loads(meta["hspace.inversion"])
        kind, fingerprint, preprocessing = info["kind"], info["fingerprint"], info["preprocessing"]
        x_0, timesteps = tensors["x_0"], tensors["timesteps"]
        trajectory = tensors["noise_maps" if kind == "ddpm" else "x_T"]
    except (KeyError, TypeError, ValueError, RecursionError) as e:
        raise HSpaceError(f"{path}: damaged inversion file ({type(e).__name__}: {e})") from None
    if kind not in ("ddim", "ddpm"):
        raise HSpaceError(f"{path}: unknown inversion kind {kind!r}")
    if not isinstance(fingerprint, str) or not isinstance(preprocessing, list) or \
            not all(isinstance(p, str) for p in preprocessing):
        raise HSpaceError(f"{path}: damaged inversion file (fingerprint / preprocessing metadata)")
    if x_0.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise HSpaceError(f"{path}: damaged inversion file (x_0 has dtype {str(x_0.dtype).replace('torch.', '')})")
    try:
        check_images(x_0, "x_0")
    except HSpaceError as e:
        raise HSpaceError(f"{path}: damaged inversion file ({e})") from None
    n = len(timesteps) if timesteps.ndim == 1 else 0
    if timesteps.dtype not in (torch.int64, torch.int32) or n < 2 or int(timesteps[0]) < 0 or \
            bool((timesteps[1:] <= timesteps[:-1]).any()):
        raise HSpaceError(f"{path}: damaged inversion file (timesteps {str(timesteps.dtype).replace('torch.', '')} "
                          f"{list(timesteps.shape)} are not an ascending grid of at least 2 integer timesteps)")
    expected = (n, *x_0.shape) if kind == "ddpm" else tuple(x_0.shape)
    if trajectory.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64) or \
            tuple(trajectory.shape) != expected or not bool(torch.isfinite(trajectory).all()):
        what = "noise_maps" if kind == "ddpm" else "x_T"
        raise HSpaceError(f"{path}: damaged inversion file ({what} {str(trajectory.dtype).replace('torch.', '')} "
                          f"{list(trajectory.shape)}: expected finite floats of shape {list(expected)})")
    common = dict(x_0=x_0.float(), timesteps=timesteps.to(torch.int64), fingerprint=fingerprint,
                  preprocessing=tuple(preprocessing))
    if kind == "ddpm":
        seed = info.get("seed")
        try:
            seed = check_seed(seed, common["x_0"].shape[0])
        except HSpaceError:
            raise HSpaceError(f"{path}: damaged inversion file (seed {seed!r})") from None
        return DDPMInversion(noise_maps=trajectory.float(), seed=seed, **common)
    return Inversion(x_T=trajectory.float(), **common)
