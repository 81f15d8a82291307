"""The miniature world's own CLIP: a small open_clip model trained contrastively on procedural faces
and captions generated from their attributes ("a smiling face with glasses and a red hat").

Architecture (``TINY_CLIP``): a ViT image tower at the demo resolution (32 px, 4 px patches, 4 layers,
width 64) and a text tower (3 layers, width 64, context 32) with open_clip's own tokenizer, whose
49,408-token embedding is most of the 3.5 M parameters (about 7 MB in float16). It is written in the
open_clip Hugging Face layout to ``hspace_core/data/tiny_clip/`` and loaded by
``discovery.clip_model.load_clip``, the path that loads real open_clip weights.

``python -m hspace_core train-tiny-clip`` retrains it; ``evaluate`` measures zero-shot accuracy per
attribute against the ground truth on held-out faces (prompt pairs in ``ZERO_SHOT``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..discovery.clip_contrastive import build_clip, contrastive_loss, save_clip, zero_shot
from ..errors import HSpaceError
from .faces import Face, render, sample_faces

TINY_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "patch_size": 4, "head_width": 16, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3},
}
# images reach the towers as (x + 1) / 2 normalised with open_clip's OpenAI statistics, the default that
# ``load_clip`` applies when a config names none
PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
# The captions read "a smiling face with glasses ..." (``caption``): text directions put the text after "a".
TEXT_TEMPLATES = ("a {}",)
EMBEDDED = Path(__file__).resolve().parents[1] / "data" / "tiny_clip"

# attribute -> (prompt for the positive class, prompt for the negative class, ground truth or None to skip)
ZERO_SHOT = {
    "smile": ("a smiling face", "a frowning face", lambda f: True if f.smile > 1 / 3 else (False if f.smile < -1 / 3 else None)),
    "glasses": ("a face with glasses", "a face without glasses", lambda f: f.glasses),
    "hat": ("a face with a hat", "a face without a hat", lambda f: f.hat),
    "face_width": ("a wide face", "a narrow face",
                   lambda f: True if f.face_width > 2 / 3 else (False if f.face_width < 1 / 3 else None)),
    "eye_size": ("a face with big eyes", "a face with small eyes",
                 lambda f: True if f.eye_size > 2 / 3 else (False if f.eye_size < 1 / 3 else None)),
}

_HUES = [(0.0, "red"), (0.08, "orange"), (0.16, "yellow"), (0.33, "green"), (0.5, "cyan"), (0.62, "blue"),
         (0.75, "purple"), (0.88, "pink"), (1.0, "red")]


def hue_name(hue: float) -> str:
    return min(_HUES, key=lambda h: min(abs(hue - h[0]), 1 - abs(hue - h[0])))[1]


def caption(face: Face, rng: np.random.Generator) -> str:
    """A caption of the face's attributes, parts in random order and sometimes left out, absences said
    some of the time ("without glasses"), so the text tower sees each attribute on its own."""
    mood = "smiling" if face.smile > 1 / 3 else "frowning" if face.smile < -1 / 3 else "neutral"
    shape = "wide" if face.face_width > 2 / 3 else "narrow" if face.face_width < 1 / 3 else ""
    head = " ".join(w for w in (mood, shape) if w and rng.random() < 0.9)
    parts = []
    if face.glasses:
        parts.append("with glasses")
    elif rng.random() < 0.5:
        parts.append("without glasses")
    if face.hat:
        parts.append(f"with a {hue_name(face.hair_hue)} hat" if rng.random() < 0.5 else "with a hat")
    elif rng.random() < 0.5:
        parts.append("without a hat")
    if face.eye_size > 2 / 3 and rng.random() < 0.7:
        parts.append("with big eyes")
    elif face.eye_size < 1 / 3 and rng.random() < 0.7:
        parts.append("with small eyes")
    if rng.random() < 0.3:
        parts.append(f"on a {hue_name(face.background_hue)} background")
    rng.shuffle(parts)
    text = f"a {head} face" if head else "a face"
    if parts:
        text += " " + (" and ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " and " + parts[-1])
    return text


@dataclass(frozen=True)
class TinyClipSettings:
    steps: int = 2000
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 200
    dataset_size: int = 30000
    dataset_seed: int = 1234
    seed: int = 0


def train_tiny_clip(out: Path, settings: TinyClipSettings = TinyClipSettings(), *, log=print) -> dict:
    """Train the tiny CLIP from scratch and write it to ``out`` (open_clip folder layout)."""
    t0 = time.time()
    faces = sample_faces(settings.dataset_size, settings.dataset_seed)
    images = torch.cat([render(faces[i:i + 1000]) for i in range(0, len(faces), 1000)])
    log(f"rendered {len(faces)} faces in {time.time() - t0:.0f} s")
    gen = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model, tokenizer = build_clip(TINY_CLIP, gen)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    mean = torch.tensor(PREPROCESS["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS["std"]).view(1, 3, 1, 1)
    history = []
    for step in range(settings.steps):
        lr = settings.lr * min(1.0, (step + 1) / settings.warmup) * 0.5 * (1 + np.cos(np.pi * step / settings.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(faces), (settings.batch,), generator=gen)
        x = ((images[idx] + 1) / 2 - mean) / std
        tokens = tokenizer([caption(faces[int(i)], rng) for i in idx])
        loss = contrastive_loss(model.encode_image(x), model.encode_text(tokens), model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == settings.steps - 1:
            value = loss.item()
            history.append({"step": step, "loss": round(value, 4), "lr": lr})
            log(f"step {step}/{settings.steps} loss {value:.4f} ({time.time() - t0:.0f} s)")
    model.eval()
    save_clip(model, TINY_CLIP, out, preprocess=PREPROCESS, templates=list(TEXT_TEMPLATES))
    report = {"settings": asdict(settings), "seconds": round(time.time() - t0), "loss": history}
    (out / "train_log.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def load_tiny_clip(folder: Path = EMBEDDED):
    """The embedded tiny CLIP through ``load_clip`` (the open_clip folder layout)."""
    from ..discovery.clip_model import load_clip

    if not (folder / "open_clip_model.safetensors").exists():
        raise HSpaceError(f"no tiny CLIP at {folder}; train it with `python -m hspace_core train-tiny-clip`")
    return load_clip(folder)


def evaluate(clip, n: int = 1000, seed: int = 999_001) -> dict:
    """Zero-shot accuracy per attribute on ``n`` held-out faces (a seed the training never drew):
    each decidable face is classified between the attribute's two prompts."""
    faces = sample_faces(n, seed)
    images = render(faces)
    out = {}
    for name, (pos, neg, truth) in ZERO_SHOT.items():
        labels = [truth(f) for f in faces]
        keep = [i for i, y in enumerate(labels) if y is not None]
        pred = zero_shot(clip, images[keep], [pos, neg])
        correct = sum(int(p) == (0 if labels[i] else 1) for p, i in zip(pred.tolist(), keep))
        out[name] = {"accuracy": round(correct / len(keep), 4), "faces": len(keep), "prompts": [pos, neg]}
    return out
