"""Text-to-image and reading images in the miniature SD world, through ComfyUI's own objects: prompts
encoded as ``CLIPTextEncode`` does, noise drawn as ``KSampler`` / ``RandomNoise`` draw it for one
latent and a seed, sampling with ``CFGGuider``, decoding with the VAE; images read by the engine's
attribute probe at its 32 px."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .configs import LATENT_SIZE


def encode(clip, text: str):
    """A CONDITIONING, as ``CLIPTextEncode`` gives it."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def sigmas(model, steps: int, scheduler: str = "normal") -> torch.Tensor:
    """The sigmas ``BasicScheduler`` gives at denoise 1."""
    import comfy.samplers

    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def seed_noise(seeds: list[int]) -> torch.Tensor:
    """[N, 4, 8, 8]: row i is the noise a workflow with one 64 px latent and seed ``seeds[i]`` starts from
    (``comfy.sample.prepare_noise``: torch.randn of the latent's shape from a generator seeded with it)."""
    return torch.cat([torch.randn([1, 4, LATENT_SIZE, LATENT_SIZE], generator=torch.manual_seed(s)) for s in seeds])


def sample(model, positive, negative, noise: torch.Tensor, sig: torch.Tensor, cfg: float, sampler=None,
           latent: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """Latents [N, 4, 8, 8] sampled from ``noise`` (``SamplerCustom`` with add_noise on; with a
    ``latent`` and zero noise, add_noise off) with ``sampler`` (default: euler)."""
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    sampler = sampler or comfy.samplers.sampler_object("euler")
    latent = torch.zeros_like(noise) if latent is None else latent
    return guider.sample(noise, latent, sampler, sig, seed=seed).float()


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents -> images [N, 3, 64, 64] in [-1, 1] (``VAEDecode``, then the engine's convention)."""
    return vae.decode(latents).float().movedim(-1, 1).reshape(-1, 3, latents.shape[-2] * 8,
                                                                 latents.shape[-1] * 8) * 2 - 1


def encode_images(vae, images: torch.Tensor) -> torch.Tensor:
    """Images [N, 3, 64, 64] in [-1, 1] -> latents (``VAEEncode``)."""
    return vae.encode(((images + 1) / 2).movedim(1, -1)).float()


def probe_size(images: torch.Tensor) -> torch.Tensor:
    """64 px images -> the probe's 32 px by 2x2 box averaging (the renderer's own box reduction: a face
    rendered at 64 px and averaged equals the face rendered at 32 px up to 8-bit rounding)."""
    while images.shape[-1] > 32:
        images = F.avg_pool2d(images, 2)
    return images


def read(probe, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Probe readings [N] per attribute of images [N, 3, 64, 64] in [-1, 1]."""
    with torch.no_grad():
        return probe.read(probe_size(images.clamp(-1, 1).float()))
