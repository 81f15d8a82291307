"""Training of the miniature SD world's VAE: ComfyUI's ``AutoencoderKL`` (SD's layout, x8 down, 4 latent
channels; ``configs.VAE``) on 64 px procedural faces.

The loss is SD's autoencoder loss without its two learned parts (no LPIPS or discriminator weights can
be had here): a per-pixel L1 reconstruction of a latent drawn from the posterior, an L1 on the image's
horizontal and vertical differences (``edge_weight``: keeps the thin lines, the mouth and the glasses'
rims, that a plain L1 blurs), and the KL to N(0, 1) at SD's tiny weight (1e-6 of the summed
reconstruction loss), which keeps the latent a smooth, nearly deterministic code. After training,
``export`` folds a per-channel shift and scale into ``quant_conv`` / ``post_quant_conv`` (exact) so
that the latent means have zero mean and standard deviation 1 / 0.18215: SD1.5's latent format then
hands the UNet unit-variance latents.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .configs import IMAGE_SIZE, LATENT_SCALE
from .data import to_unit, training_images
from .models import vae_module
from .train_common import RunFolder, Ticker, warmup_cosine


@dataclass(frozen=True)
class VAESettings:
    steps: int = 4000
    batch: int = 32
    lr: float = 2e-4
    warmup: int = 100
    edge_weight: float = 1.0
    kl_weight: float = 1e-6
    dataset_size: int = 20000
    seed: int = 0
    save_every: int = 200


def posterior(module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, logvar) [N, 4, H/8, W/8] of the latent of images x [N, 3, H, W] in [-1, 1]."""
    mean, logvar = module.quant_conv(module.encoder(x)).chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def decode(module, z: torch.Tensor) -> torch.Tensor:
    return module.decoder(module.post_quant_conv(z))


def edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def vae_loss(module, x: torch.Tensor, noise: torch.Tensor, s: VAESettings) -> tuple[torch.Tensor, dict]:
    mean, logvar = posterior(module, x)
    z = mean + (0.5 * logvar).exp() * noise
    y = decode(module, z)
    rec = (y - x).abs().mean()
    edge = sum((a - b).abs().mean() for a, b in zip(edges(y), edges(x))) / 2
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
    loss = rec + s.edge_weight * edge + s.kl_weight * kl / x[0].numel()
    mse = (y.detach().clamp(-1, 1) - x).pow(2).mean(dim=(1, 2, 3))
    psnr = float((10 * torch.log10(4.0 / mse)).mean())
    return loss, {"rec": rec.item(), "edge": edge.item(), "kl": kl.item(), "psnr": psnr}


def train(run_dir: Path, settings: VAESettings, *, until: int | None = None,
          log=print) -> Path:
    run = RunFolder(run_dir)
    s = VAESettings(**run.settings(asdict(settings)))
    module = vae_module(seed=s.seed)
    module.requires_grad_(True).train()
    opt = torch.optim.Adam(module.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    step = 0
    state = run.load()
    if state is not None:
        module.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        step = int(state["step"])
        log(f"resumed {run.ckpt} at step {step}")
    data = training_images(s.dataset_size, run.path.parent / "cache")
    ticker, window = Ticker(), []
    last = s.steps if until is None else min(s.steps, until)  # until: stop early (a time-boxed session)
    while step < last:
        idx = torch.randint(0, len(data), (s.batch,), generator=gen)
        x = to_unit(data[idx])
        flip = torch.rand(s.batch, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        noise = torch.randn(s.batch, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8, generator=gen)
        loss, parts = vae_loss(module, x, noise, s)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, s.steps, s.warmup, s.lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        step += 1
        window.append({"loss": loss.item(), **parts})
        if step % 50 == 0:
            entry = {"step": step, **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                     "steps_per_s": round(ticker.rate(50), 3)}
            run.log(entry)
            log(f"vae step {step}/{s.steps} loss {entry['loss']:.4f} psnr {entry['psnr']:.2f} dB "
                f"({entry['steps_per_s']:.2f} steps/s)")
            window = []
        if step % s.save_every == 0 or step == last:
            run.save({"model": module.state_dict(), "opt": opt.state_dict(), "rng": gen.get_state(), "step": step})
    return run.ckpt


@torch.no_grad()
def latent_statistics(module, images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation [4] of the posterior means of uint8 images [N, 3, H, W]."""
    means = torch.cat([posterior(module, to_unit(images[i:i + batch]))[0] for i in range(0, len(images), batch)])
    return means.mean(dim=(0, 2, 3)), means.std(dim=(0, 2, 3))


@torch.no_grad()
def normalise_latent(module, shift: torch.Tensor, std: torch.Tensor) -> None:
    """Fold z' = (z - shift) * c, c = 1 / (std * LATENT_SCALE), into the 1x1 ``quant_conv`` (mean and
    logvar rows) and ``post_quant_conv``: encode and decode compose to the same images, and the latent
    means get zero mean and standard deviation 1 / LATENT_SCALE per channel."""
    c = 1.0 / (std * LATENT_SCALE)
    q, p = module.quant_conv, module.post_quant_conv
    k = len(c)
    q.weight[:k] *= c[:, None, None, None]
    q.bias[:k] = (q.bias[:k] - shift) * c
    q.bias[k:] += 2 * torch.log(c)
    p.bias += (p.weight[:, :, 0, 0] @ shift)
    p.weight /= c[None, :, None, None]


def export(run_dir: Path, out_path: Path, stats_images: int = 4000, *, docs: Path | None = None, log=print) -> dict:
    """Normalise the trained VAE's latent on ``stats_images`` training faces and write its state dict
    (float16 safetensors, ComfyUI's ``AutoencoderKL`` key names); returns the statistics."""
    from safetensors.torch import save_file

    run = RunFolder(run_dir)
    run.keep_log(docs, "vae")
    module = vae_module(seed=0)
    module.load_state_dict(run.load()["model"])
    module.eval()
    images = training_images(VAESettings(**json.loads((run.path / "settings.json").read_text())).dataset_size,
                             run.path.parent / "cache")[:stats_images]
    shift, std = latent_statistics(module, images)
    normalise_latent(module, shift, std)
    after_shift, after_std = latent_statistics(module, images)
    log(f"latent per channel: mean {shift.tolist()} std {std.tolist()} -> std {after_std.tolist()}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in module.state_dict().items()}, str(out_path),
              metadata={"hspace.format": "hspace-sdworld-vae-1", "hspace.training_steps": str(run.load()["step"])})
    return {"shift": shift.tolist(), "std": std.tolist(), "std_after": after_std.tolist(),
            "mean_after": after_shift.tolist()}
