"""Training of the embedded demo DDPM on the procedural faces (``python -m hspace_core train-demo``).

The network is the DDIM/SDEdit family's UNet (``DDPMUNet``, ermongroup key names) in a CPU-sized
configuration, an eps-prediction DDPM like the real checkpoints (Ho et al. 2020, Eq. 14: MSE between
the true and predicted noise). What the first demo model taught, and what the recipe does about it:

* the highest noise levels: a plain DDIM sample from pure noise starts from P_T, whose error is the
  eps error times sqrt((1 - alpha_bar_T) / alpha_bar_T): 157 on the linear schedule. The schedule is
  Stable Diffusion's scaled-linear one (beta 0.00085..0.012, alpha_bar_T = 0.0047, factor 14.5);
  timesteps are drawn from a density rising towards t = 999 (``t_tilt``); and the loss is weighted by
  clamp(1 / SNR, 1, ``snr_weight_cap``), the eps loss moved towards the x0 loss at high noise;
* h: the decoder reads the faces' parts from the encoder's skips as much as from h. For half the
  batch (``skip_drop``) the skips at ``skip_drop_size`` px and below are zeroed, so the decoder learns
  to take the coarse content from h; the full-resolution skips stay (eps needs the noise pixel by
  pixel). The exported network is the standard UNet, run with all its skips.

Training is resumable: every ``save_every`` steps the run folder receives ``last.pt`` (weights, EMA,
optimizer, RNG, step), and ``log.jsonl`` gets the running loss; a resumed run equals an uninterrupted
one. ``export`` writes the EMA weights as a float16 safetensors file with the metadata (image size,
schedule) ``load_model`` reads.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..images import to_uint8
from ..schedule import schedule_from_diffusers_config
from ..seeding import seeded_module
from ..unets.common import Encoded
from ..unets.ddpm import DDPMConfig, DDPMUNet
from .faces import Face, render, sample_faces

# h is 128 x 8 x 8 at 32 px (three levels): the first demo model's 4 x 4 h (four levels) barely held
# the mouth, an 8 x 8 one keeps the face's parts in separate cells. Self-attention at 8 x 8 only.
DEMO_CONFIG = DDPMConfig(ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, attn_levels_down=(2,),
                         attn_levels_up=(2,), image_size=32)


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 12000
    batch: int = 64
    lr: float = 3e-4
    t_tilt: float = 2.0
    snr_weight_cap: float = 20.0
    skip_drop: float = 0.5
    skip_drop_size: int = 8
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    init_from: str = ""
    warmup: int = 500
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    dataset_size: int = 60000
    dataset_seed: int = 0
    seed: int = 0
    save_every: int = 250


def dataset_faces(size: int, seed: int) -> list[Face]:
    """The attributes of ``dataset(size, seed, ...)``'s faces, in its order (drawn in chunks of 1000)."""
    return [f for start in range(0, size, 1000) for f in sample_faces(min(1000, size - start), seed * 1_000_003 + start)]


def dataset(size: int, seed: int, cache_dir: Path, image_size: int = 32) -> torch.Tensor:
    """The training faces as uint8 [N, 3, S, S], rendered once and cached in ``cache_dir``."""
    path = cache_dir / f"faces{image_size}_n{size}_seed{seed}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    faces = dataset_faces(size, seed)
    # contiguous, as np.load gives it back: a run and its resumption then compute in the same memory layout
    data = torch.cat([to_uint8(render(faces[i:i + 1000], image_size)) for i in range(0, size, 1000)]).contiguous()
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, data.numpy())
    return data


def schedule_of(settings: TrainSettings):
    """The noise schedule of a training run, as a diffusers scheduler config would name it."""
    return schedule_from_diffusers_config({"beta_schedule": settings.beta_schedule, "beta_start": settings.beta_start,
                                           "beta_end": settings.beta_end, "num_train_timesteps": 1000})


def snr_weight(alpha_bar: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-sample loss weight clamp(1 / SNR, 1, cap), 1 / SNR = (1 - alpha_bar) / alpha_bar: an eps error
    becomes an x0 error sqrt(1 / SNR) times as large (P_t, DDIM Eq. 12), so at high noise the eps loss
    is weighted towards the x0 loss (up to ``cap``); below SNR 1 it is the plain eps loss. 0: off."""
    if not cap:
        return torch.ones_like(alpha_bar)
    return ((1 - alpha_bar) / alpha_bar).clamp(1.0, cap)


def timestep_density(num_timesteps: int, tilt: float) -> torch.Tensor:
    """[T] float64 probabilities of drawing t: proportional to 1 + tilt * t / (T - 1)."""
    w = 1.0 + tilt * torch.arange(num_timesteps, dtype=torch.float64) / (num_timesteps - 1)
    return w / w.sum()


def train(run_dir: Path, settings: TrainSettings, *, log=print) -> Path:
    """Train (or resume) in ``run_dir``; returns the path of the last checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "last.pt"
    model = seeded_module(lambda: DDPMUNet(DEMO_CONFIG), torch.Generator().manual_seed(settings.seed))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        step = int(state["step"])
        log(f"resumed {ckpt_path} at step {step}")
    else:
        if settings.init_from:
            init = torch.load(settings.init_from, map_location="cpu", weights_only=True)["ema"]
            model.load_state_dict(init)
            log(f"initialised from the EMA weights of {settings.init_from}")
        ema.load_state_dict(model.state_dict())
        (run_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=2))

    data = dataset(settings.dataset_size, settings.dataset_seed, run_dir / "cache")
    alpha_bar = schedule_of(settings).alpha_bar.to(torch.float32)
    t_weights = timestep_density(1000, settings.t_tilt)
    log_file = (run_dir / "log.jsonl").open("a")
    window: list[float] = []
    tic = time.time()
    model.train()
    while step < settings.steps:
        idx = torch.randint(0, len(data), (settings.batch,), generator=gen)
        x0 = data[idx].float() / 127.5 - 1.0
        t = torch.multinomial(t_weights, settings.batch, replacement=True, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alpha_bar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise  # q(x_t | x_0), DDPM Eq. 4
        enc = model.encode(x_t, t)
        if settings.skip_drop:
            keep = (torch.rand(settings.batch, generator=gen) >= settings.skip_drop).float()[:, None, None, None]
            enc = Encoded(enc.h, tuple(s * keep if s.shape[-1] <= settings.skip_drop_size else s for s in enc.skips),
                          enc.emb)
        mse = (model.decode(enc, enc.h) - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (mse * snr_weight(a.flatten(), settings.snr_weight_cap)).mean()
        for g in opt.param_groups:
            g["lr"] = settings.lr * min(1.0, (step + 1) / settings.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        step += 1
        decay = min(settings.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        window.append(loss.item())
        if step % 50 == 0:
            rate = 50 / (time.time() - tic)
            tic = time.time()
            entry = {"step": step, "loss": float(np.mean(window)), "steps_per_s": round(rate, 4)}
            log_file.write(json.dumps(entry) + "\n")
            log_file.flush()
            log(f"step {step}/{settings.steps} loss {entry['loss']:.4f} ({rate:.2f} steps/s)")
            window = []
        if step % settings.save_every == 0 or step == settings.steps:
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "rng": gen.get_state(), "step": step}, tmp)
            tmp.replace(ckpt_path)
    log_file.close()
    return ckpt_path


def export(ckpt_path: Path, out_path: Path) -> Path:
    """Write the EMA weights of a training checkpoint as float16 safetensors with metadata."""
    from safetensors.torch import save_file

    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    tensors = {k: v.to(torch.float16).contiguous() for k, v in state["ema"].items()}
    settings_file = Path(ckpt_path).parent / "settings.json"
    settings = TrainSettings(**json.loads(settings_file.read_text())) if settings_file.exists() else TrainSettings()
    meta = {
        "hspace.format": "hspace-ddpm-1",
        "hspace.family": "ddim",
        "hspace.image_size": str(DEMO_CONFIG.image_size),
        "hspace.schedule": json.dumps({"kind": settings.beta_schedule, "num_timesteps": 1000,
                                       "beta_start": settings.beta_start, "beta_end": settings.beta_end}),
        "hspace.training_steps": str(int(state["step"])),
        "hspace.description": "procedural cartoon faces, 32 px (hspace_core.demo.faces)",
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_path), metadata=meta)
    return out_path

