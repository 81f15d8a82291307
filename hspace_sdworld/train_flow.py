"""Training of the miniature flow world's transformer: ComfyUI's ``Flux`` class (``configs.FLOW``) on the
SD world's VAE latents of 64 px faces, conditioned on the frozen SD world text encoder's hidden states
(``txt_in``) and pooled end token (``vector_in``) of their captions.

The recipe is rectified flow as SD3 (Esser et al., 2024) and Flux train it: x_t = (1 - sigma) x0 + sigma
eps, the network predicts the velocity v = eps - x0 (ComfyUI's CONST sampling then denoises with
x0 = x_t - sigma v), sigmas drawn logit-normal (``logit_mean``, ``logit_std``) and moved by Flux's shift
(``configs.FLOW_SHIFT``, the one ComfyUI's ``ModelSamplingFlux`` samples with), the text encoder frozen,
captions dropped for classifier-free guidance. The network starts adaLN-zero (``models.init_flow_``).
Every block runs through the differentiable forward of ``flow_blocks`` (ComfyUI's own per-block hook);
the data, the caption encoder, the loop and the export are the SD world's (``train_unet``,
``train_common``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hspace_core.checkpoint_files import read_safetensors

from .configs import FLOW_SHIFT, LATENT_SCALE
from .data import captions, training_faces
from .flow_blocks import training_options
from .models import build_clip, flow_model
from .train_common import RunFolder, export_ema, train_loop
from .train_unet import latent_dataset

FORMAT = "hspace-flowworld-transformer-1"


@dataclass(frozen=True)
class FlowSettings:
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-4
    warmup: int = 200
    ema_decay: float = 0.999
    logit_mean: float = 0.0
    logit_std: float = 1.0
    caption_drop: float = 0.1
    dataset_size: int = 50000
    seed: int = 0
    save_every: int = 100
    init_from: str = ""


def shifted_sigma(t: torch.Tensor, shift: float = FLOW_SHIFT) -> torch.Tensor:
    """Flux's shift of t in (0, 1): e^shift / (e^shift + 1 / t - 1) (``ModelSamplingFlux.sigma``)."""
    return math.exp(shift) / (math.exp(shift) + 1.0 / t - 1.0)


class PooledCaptionEncoder:
    """(hidden states [N, 77, 64], pooled [N, 64]) of captions through ComfyUI's CLIP object, as
    ``CLIPTextEncode`` gives them (cond and ``pooled_output``); each caption encoded once."""

    def __init__(self, clip):
        self.clip, self.cache = clip, {}

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        for t in set(texts) - set(self.cache):
            cond, pooled = self.clip.encode_from_tokens(self.clip.tokenize(t), return_pooled=True)
            self.cache[t] = (cond.float()[0], pooled.float()[0])
        return (torch.stack([self.cache[t][0] for t in texts]), torch.stack([self.cache[t][1] for t in texts]))


def train(run_dir: Path, settings: FlowSettings, vae_file: Path, text_encoder_file: Path, *, until: int | None = None,
          log=print) -> Path:
    run = RunFolder(run_dir)
    s = FlowSettings(**run.settings(asdict(settings)))
    net = flow_model(seed=s.seed).diffusion_model
    te_state, _ = read_safetensors(Path(text_encoder_file))
    encode = PooledCaptionEncoder(build_clip({k: v.float() for k, v in te_state.items()}))
    latents = latent_dataset(vae_file, s.dataset_size, run.path.parent / "cache", log=log)
    faces = training_faces(s.dataset_size)
    options = training_options(net)

    def batch_loss(step: int, gen: torch.Generator):
        idx = torch.randint(0, len(latents), (s.batch,), generator=gen)
        post = latents[idx].float()
        x0 = (post[:, 0] + post[:, 1] * torch.randn(post[:, 0].shape, generator=gen)) * LATENT_SCALE
        t = torch.sigmoid(s.logit_mean + s.logit_std * torch.randn(s.batch, generator=gen))
        sigma = shifted_sigma(t)
        noise = torch.randn(x0.shape, generator=gen)
        s4 = sigma[:, None, None, None]
        x_t = (1 - s4) * x0 + s4 * noise
        rng = np.random.default_rng([s.seed, step])
        context, pooled = encode(captions([faces[int(i)] for i in idx], rng, drop=s.caption_drop))
        v = net(x_t, sigma, context, y=pooled, transformer_options=options)
        mse = (v - (noise - x0)).pow(2).mean(dim=(1, 2, 3))
        # the x0 error the sampler sees at each sigma: x0_pred - x0 = -sigma (v_pred - v)
        return mse.mean(), {"x0_mse": (mse * sigma ** 2).mean().item()}

    return train_loop(run, s, net, batch_loss, name="flow", until=until, log=log,
                      status=lambda: {"captions_cached": len(encode.cache)})


def export(run_dir: Path, out_path: Path, docs: Path | None = None) -> Path:
    """The EMA weights as float16 safetensors (``diffusion_model`` key names without the prefix)."""
    return export_ema(RunFolder(run_dir), out_path, FORMAT, {}, docs, "flow")
