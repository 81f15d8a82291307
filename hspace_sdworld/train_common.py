"""What the two training loops share: seeded initialisation of ComfyUI's modules, the resumable
checkpoint, the loss log and the learning-rate schedule."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hspace_core.seeding import reset_parameters_


def init_comfy_module(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """ComfyUI builds its networks with ``ops.disable_weight_init`` (weights left uninitialised, to be
    loaded); for training they get PyTorch's default initialisation, drawn in module order from a seeded
    generator (``hspace_core.seeding.reset_parameters_`` for convolutions, linear and norm layers;
    embeddings N(0, 0.02), as CLIP's; RMS norms' scales 1)."""
    g = torch.Generator().manual_seed(seed)
    leaf_kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm, torch.nn.LayerNorm)
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding):
            with torch.no_grad():
                m.weight.normal_(0.0, 0.02, generator=g)
        elif isinstance(m, leaf_kinds):
            reset_parameters_(m, g)
        elif type(m).__name__ == "RMSNorm" and isinstance(getattr(m, "scale", None), torch.nn.Parameter):
            with torch.no_grad():
                m.scale.fill_(1.0)
        elif any(True for _ in m.parameters(recurse=False)):
            raise ValueError(f"no seeded initialisation for {type(m).__name__}")
    return module


def warmup_cosine(step: int, steps: int, warmup: int, lr: float, floor: float = 0.1) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from ``lr`` to ``floor * lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


class RunFolder:
    """A training run's folder: ``settings.json``, ``last.pt`` (written atomically every few steps) and
    ``log.jsonl`` (one line per logged step)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.path / "last.pt"

    def load(self) -> dict | None:
        if not self.ckpt.exists():
            return None
        return torch.load(self.ckpt, map_location="cpu", weights_only=True)

    def save(self, state: dict) -> None:
        tmp = self.ckpt.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.ckpt)

    def settings(self, settings: dict, mutable: tuple[str, ...] = ("steps", "save_every")) -> dict:
        """The run's settings: when resuming, those it was started with (a resumed run keeps its recipe)
        except the ``mutable`` ones (a run can be extended)."""
        f = self.path / "settings.json"
        if f.exists():
            old = json.loads(f.read_text())
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            ignored = [k for k in changed if k not in mutable]
            if ignored:
                print(f"resuming with the run's own settings; ignored: {', '.join(ignored)}")
            old.update({k: settings[k] for k in changed if k in mutable})
            f.write_text(json.dumps(old, indent=2) + "\n")
            return old
        f.write_text(json.dumps(settings, indent=2) + "\n")
        return settings

    def log(self, entry: dict) -> None:
        with (self.path / "log.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def keep_log(self, docs: Path | None, name: str) -> None:
        """Copy ``log.jsonl`` and ``settings.json`` to ``docs`` as ``<name>_train_log.jsonl`` and
        ``<name>_settings.json`` (the run folder is not kept; the model card reads these)."""
        if docs is None:
            return
        docs.mkdir(parents=True, exist_ok=True)
        for src, dst in (("log.jsonl", "train_log.jsonl"), ("settings.json", "settings.json")):
            if (self.path / src).exists():
                (docs / f"{name}_{dst}").write_text((self.path / src).read_text())

    def history(self) -> list[dict]:
        f = self.path / "log.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


class Ticker:
    """Steps per second over the last logging window."""

    def __init__(self):
        self.t = time.time()

    def rate(self, n: int) -> float:
        now = time.time()
        r = n / max(1e-9, now - self.t)
        self.t = now
        return r


BatchLoss = Callable[[int, torch.Generator], "tuple[torch.Tensor, dict[str, float]]"]


def train_loop(run: RunFolder, s, net: torch.nn.Module, batch_loss: BatchLoss, *, name: str,
               until: int | None = None, status: Callable[[], dict] | None = None, log=print) -> Path:
    """The training loop of the world's denoisers (the SD world's UNet, the flow world's transformer).

    ``s``: the run's settings (``steps``, ``lr``, ``warmup``, ``ema_decay``, ``seed``, ``save_every``,
    ``init_from``). ``batch_loss(step, gen)`` draws one batch from ``gen`` (the run's only random stream,
    saved with the weights) and returns the loss to minimise and the metrics to log. AdamW with a
    warm-up and cosine learning rate (``warmup_cosine``), gradients clipped at norm 1, an EMA of the
    weights (decay ``min(ema_decay, (1 + step) / (10 + step))``); every 50 steps the window's mean metrics
    and ``status()`` go to the log, every ``save_every`` steps weights, EMA, optimizer, generator and step
    to ``last.pt``, so a resumed run equals an uninterrupted one. ``until``: stop early (a time-boxed
    session); ``init_from``: start from an exported file (a later session continues the shipped weights;
    the optimizer state is not shipped)."""
    net.requires_grad_(True).train()
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(s.seed)
    step = 0
    state = run.load()
    if state is not None:
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"])
        step = int(state["step"])
        log(f"resumed {run.ckpt} at step {step}")
    elif s.init_from:
        from hspace_core.checkpoint_files import read_safetensors

        init, _ = read_safetensors(Path(s.init_from))
        net.load_state_dict({k: v.float() for k, v in init.items()})
        ema.load_state_dict(net.state_dict())
        log(f"initialised from {s.init_from}")
    ticker, window = Ticker(), []
    last = s.steps if until is None else min(s.steps, until)
    while step < last:
        loss, metrics = batch_loss(step, gen)
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, s.steps, s.warmup, s.lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(s.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), net.parameters()):
                pe.lerp_(pm, 1 - decay)
        window.append({"loss": loss.item(), **metrics})
        if step % 50 == 0:
            entry = {"step": step, **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                     "steps_per_s": round(ticker.rate(50), 3), **(status() if status else {})}
            run.log(entry)
            shown = " ".join(f"{k.replace('_', ' ')} {entry[k]:.4f}" for k in window[0])
            log(f"{name} step {step}/{s.steps} {shown} ({entry['steps_per_s']:.2f} steps/s)")
            window = []
        if step % s.save_every == 0 or step == last:
            run.save({"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                      "rng": gen.get_state(), "step": step})
    return run.ckpt


def export_ema(run: RunFolder, out_path: Path, fmt: str, metadata: dict, docs: Path | None, name: str) -> Path:
    """The run's EMA weights as float16 safetensors (``diffusion_model`` key names without the prefix) with
    ``hspace.format`` = ``fmt``, the training steps and ``metadata``; the run's loss log and settings are
    copied to ``docs`` as ``<name>_*`` (the model card's folder)."""
    from safetensors.torch import save_file

    state = run.load()
    run.keep_log(docs, name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in state["ema"].items()}, str(out_path),
              metadata={"hspace.format": fmt, "hspace.training_steps": str(state["step"]), **metadata})
    return out_path
