"""Training of the miniature SD world's UNet: ComfyUI's ``SD15`` model class (``configs.UNET``) on the
VAE latents of 64 px faces, conditioned on the frozen text encoder's embedding of their captions.

The recipe is SD's (eps prediction on the scaled-linear schedule, latents scaled by 0.18215, the text
encoder frozen, captions dropped for classifier-free guidance) with what the pixel demo model measured
it needs for h to carry the image's content (``hspace_core.demo.train``):

* ``t_tilt`` / ``snr_weight_cap``: timesteps drawn more often at high noise and the eps loss weighted
  by clamp(1 / SNR, 1, cap) there, because a sample from noise is decided at the highest noise
  levels, where an eps error is amplified into P_t by sqrt(1 / SNR);
* ``skip_drop``: for that share of each batch the skips below the latent's full resolution (4x4 and
  2x2) are zeroed, through ComfyUI's own ``output_block_patch`` hook, so that the output blocks learn to
  read the coarse content from h (the middle block's output) as well as from the skips; the exported
  network is the standard UNet, run with all its skips;
* ``caption_drop``: the empty prompt for that share of the batch (the unconditional branch of CFG).

The text encoder is the tiny CLIP's text tower, converted to SD1's CLIP class (``models``); each
caption is encoded once, exactly as ``CLIPTextEncode`` does, and kept (the captions are a finite set).
Latents are encoded once with the exported VAE (posterior mean and standard deviation) and a latent is
drawn from the posterior at every step, as SD does.

Resumable (``last.pt`` every ``save_every`` steps: weights, EMA, optimizer, generator, step; the caption
generator is reseeded per step, so a resumed run equals an uninterrupted one).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hspace_core.checkpoint_files import read_safetensors
from hspace_core.demo.train import snr_weight, timestep_density

from .configs import DEFAULT_LEVELS, LATENT_SCALE, LEGACY_LEVELS
from .data import captions, to_unit, training_faces, training_images
from .models import build_clip, unet_model, vae_module
from .train_common import RunFolder, export_ema, train_loop


@dataclass(frozen=True)
class UNetSettings:
    steps: int = 1400
    batch: int = 128
    lr: float = 2e-4
    warmup: int = 500
    ema_decay: float = 0.9995
    t_tilt: float = 2.0
    snr_weight_cap: float = 20.0
    skip_drop: float = 0.9
    caption_drop: float = 0.1
    dataset_size: int = 50000
    seed: int = 0
    save_every: int = 200
    init_from: str = ""
    levels: int = DEFAULT_LEVELS


class SkipDrop:
    """An ``output_block_patch`` zeroing, for the rows in ``drop`` ([B] bool), every skip whose spatial
    size is below the latent's (the patch ComfyUI calls before each output block)."""

    def __init__(self, drop: torch.Tensor, full_size: int):
        self.keep = (~drop).float()[:, None, None, None]
        self.full_size = full_size

    def __call__(self, h, hsp, transformer_options):
        if hsp.shape[-1] < self.full_size:
            hsp = hsp * self.keep.to(hsp)
        return h, hsp


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@torch.no_grad()
def encode_latents(vae_file: Path, images: torch.Tensor, batch: int = 256, log=print) -> torch.Tensor:
    """Posterior mean and standard deviation of uint8 images [N, 3, 64, 64] under the exported VAE:
    float16 [N, 2, 4, 8, 8] (the VAE's own latent units, before the 0.18215 scale)."""
    from .train_vae import posterior

    state, _ = read_safetensors(Path(vae_file))
    module = vae_module()
    module.load_state_dict({k: v.float() for k, v in state.items()})
    module.eval()
    out = []
    for i in range(0, len(images), batch):
        mean, logvar = posterior(module, to_unit(images[i:i + batch]))
        out.append(torch.stack([mean, (0.5 * logvar).exp()], dim=1).half())
        if (i // batch) % 40 == 0:
            log(f"encoded {i + len(out[-1])}/{len(images)} faces")
    return torch.cat(out)


def latent_dataset(vae_file: Path, size: int, cache_dir: Path, log=print) -> torch.Tensor:
    path = cache_dir / f"latents_n{size}_vae{file_digest(vae_file)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    data = encode_latents(vae_file, training_images(size, cache_dir), log=log)
    torch.save(data, path)
    return data


def differentiable_attention(func, *args, **kwargs):
    """``transformer_options["optimized_attention_override"]`` for training: PyTorch's attention. On the
    CPU ComfyUI picks sub-quadratic attention, which chunks (and then writes in place, breaking autograd)
    as soon as free memory looks short; a training step must not depend on what else the machine runs."""
    from comfy.ldm.modules.attention import attention_pytorch

    return attention_pytorch(*args, **kwargs)


class CaptionEncoder:
    """Conditioning [N, 77, 64] of captions through ComfyUI's CLIP object, each caption encoded once."""

    def __init__(self, clip):
        self.clip, self.cache = clip, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        for t in set(texts) - set(self.cache):
            self.cache[t] = self.clip.encode_from_tokens(self.clip.tokenize(t)).float()[0]
        return torch.stack([self.cache[t] for t in texts])


def train(run_dir: Path, settings: UNetSettings, vae_file: Path, text_encoder_file: Path, *, until: int | None = None,
          log=print) -> Path:
    run = RunFolder(run_dir)
    # a run started before the levels setting existed resumes as the three-level UNet it is
    s = UNetSettings(**{"levels": LEGACY_LEVELS, **run.settings(asdict(settings))})
    model = unet_model(seed=s.seed, levels=s.levels)
    net = model.diffusion_model
    te_state, _ = read_safetensors(Path(text_encoder_file))
    encode = CaptionEncoder(build_clip({k: v.float() for k, v in te_state.items()}))
    latents = latent_dataset(vae_file, s.dataset_size, run.path.parent / "cache", log=log)
    faces = training_faces(s.dataset_size)
    alpha_bar = (1.0 / (1.0 + model.model_sampling.sigmas.float() ** 2))  # SD's schedule, as ComfyUI holds it
    t_weights = timestep_density(len(alpha_bar), s.t_tilt)
    size = latents.shape[-1]

    def batch_loss(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(latents), (s.batch,), generator=gen)
        post = latents[idx].float()
        z = post[:, 0] + post[:, 1] * torch.randn(post[:, 0].shape, generator=gen)
        x0 = z * LATENT_SCALE
        t = torch.multinomial(t_weights, s.batch, replacement=True, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alpha_bar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        drop = torch.rand(s.batch, generator=gen) < s.skip_drop
        rng = np.random.default_rng([s.seed, step])
        context = encode(captions([faces[int(i)] for i in idx], rng, drop=s.caption_drop))
        options = {"patches": {"output_block_patch": [SkipDrop(drop, size)]},
                   "optimized_attention_override": differentiable_attention}
        eps = net(x_t, t.float(), context=context, transformer_options=options)
        mse = (eps - noise).pow(2).mean(dim=(1, 2, 3))
        return (mse * snr_weight(a.flatten(), s.snr_weight_cap)).mean(), {"eps_mse": mse.mean().item()}

    return train_loop(run, s, net, batch_loss, name="unet", until=until, log=log,
                      status=lambda: {"captions_cached": len(encode.cache)})


def export(run_dir: Path, out_path: Path, docs: Path | None = None) -> Path:
    """The EMA weights as float16 safetensors (``diffusion_model`` key names without the prefix, the
    UNet's levels in the metadata, for the loader); the run's loss log and settings are copied to ``docs``
    (the model card's folder)."""
    run = RunFolder(run_dir)
    settings = run.path / "settings.json"
    levels = int(json.loads(settings.read_text()).get("levels", LEGACY_LEVELS)) if settings.exists() \
        else UNetSettings().levels
    return export_ema(run, out_path, "hspace-sdworld-unet-1", {"hspace.unet_levels": str(levels)}, docs, "unet")
