"""What the two training loops share: seeded initialisation of ComfyUI's modules, the resumable
checkpoint, the loss log and the learning-rate schedule."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from hspace_core.seeding import reset_parameters_


def init_comfy_module(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """ComfyUI builds its networks with ``ops.disable_weight_init`` (weights left uninitialised, to be
    loaded); for training they get PyTorch's default initialisation, drawn in module order from a seeded
    generator (``hspace_core.seeding.reset_parameters_`` for convolutions, linear and norm layers;
    embeddings N(0, 0.02), as CLIP's)."""
    g = torch.Generator().manual_seed(seed)
    leaf_kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm, torch.nn.LayerNorm)
    for m in module.modules():
        if isinstance(m, torch.nn.Embedding):
            with torch.no_grad():
                m.weight.normal_(0.0, 0.02, generator=g)
        elif isinstance(m, leaf_kinds):
            reset_parameters_(m, g)
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
