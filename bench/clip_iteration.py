"""One CLIP training iteration of an Asyrp direction on the CelebA-HQ 256 configuration.

One image, every step of the editing interval (t >= t_edit on the 40-step grid), with the released
recipe: a DeltaBlock, SGD, ViT-B/16 CLIP (open_clip architecture ViT-B-16-quickgelu, random weights
of the real shape: the cost does not depend on the weights). The UNet has random weights in the
SDEdit CelebA-HQ configuration.

  1. the iteration through the engine's own ``train_clip_direction`` (one image, DDIM-inverted with
     2 steps before training starts; the time per training step is read from its progress callback);
  2. where the time goes: ``train_clip_direction`` again, on the top --phase-steps steps of the
     interval, with timers wrapped around the engine's own pieces (the unedited reference walk, the
     UNet's encoder and decoder, CLIP's image encoder, the backward pass, the SGD update); what is
     left of the step time is reported as "other" (DeltaBlock, losses, the walk's arithmetic);
  3. with --iterations N > 1: N iterations through the engine twice, with the reference-trajectory
     cache (default) and without it (reference_cache_mib=0), the time per step of iterations >= 1
     side by side (the cache only serves from the second iteration on).

    python bench/clip_iteration.py [--t-edit 500] [--threads 2] [--phase-steps 4] [--iterations 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hspace_core.discovery.clip as clip_training  # noqa: E402
from hspace_core import asyrp_timesteps, load_model  # noqa: E402
from hspace_core.discovery.clip import ClipTrainSettings, TrainStep, train_clip_direction  # noqa: E402
from hspace_core.discovery.clip_model import ClipModel  # noqa: E402


def timed_phases(model, clip, x0, t_edit: int) -> tuple[dict[str, float], float]:
    """Run train_clip_direction with timers around the engine's pieces, from the start of training
    (the first reference walk) to the last update; (seconds per phase, seconds in all)."""
    spent: dict[str, float] = defaultdict(float)
    inside: list[str] = []
    start: list[float] = []

    def timer(name_of, fn):
        def wrapped(*args, **kwargs):
            name = name_of()
            if name is None or inside or not start:  # once per piece, at its outermost call, while training
                return fn(*args, **kwargs)
            inside.append(name)
            tic = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - tic
                inside.pop()
        return wrapped

    plain = clip_training.plain_predictor
    unet, image_tower = model.unet, clip.model

    def reference_walk(m):  # the first reference walk starts the training proper (after the inversion)
        start.append(start[0] if start else time.perf_counter())
        return timer(lambda: "unedited reference trajectory", plain(m))

    patches = [(clip_training, "plain_predictor", reference_walk),
               (unet, "encode", timer(lambda: "encoder (edited trajectory)", unet.encode)),
               (unet, "decode", timer(lambda: "decoder on h + dh (with graph)" if torch.is_grad_enabled()
                                      else "decoder on h (direction term)", unet.decode)),
               (image_tower, "encode_image", timer(lambda: "CLIP image encoder", image_tower.encode_image)),
               (torch.Tensor, "backward", timer(lambda: "backward (CLIP + decoder + f)", torch.Tensor.backward)),
               (torch.optim.SGD, "step", timer(lambda: "SGD update", torch.optim.SGD.step))]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    stamps: list[float] = []
    try:
        for obj, name, new in patches:
            setattr(obj, name, new)
        train_clip_direction(model, clip, "face", "smiling face", images=x0, inversion_steps=2,
                             settings=ClipTrainSettings(t_edit=t_edit),
                             callback=lambda s: stamps.append(time.perf_counter()) if isinstance(s, TrainStep) else None)
    finally:
        for obj, name, old in saved:
            if obj is unet or obj is image_tower:
                delattr(obj, name)  # back to the class's method
            else:
                setattr(obj, name, old)
    return spent, stamps[-1] - start[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t-edit", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phase-steps", type=int, default=4, help="steps timed phase by phase (0: the whole interval)")
    ap.add_argument("--iterations", type=int, default=1, help="> 1: also time later iterations with and without "
                                                              "the reference-trajectory cache")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import open_clip
    from tests.engine.references import GOOGLE_256, ddim_keys_from_diffusers, diffusers_unet

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "celeba_hq.ckpt"
        torch.save(ddim_keys_from_diffusers(diffusers_unet(GOOGLE_256, seed=0).state_dict(), 6), path)
        model = load_model(path)
    net = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None).eval().requires_grad_(False)
    clip = ClipModel(net, open_clip.get_tokenizer("ViT-B-16-quickgelu"), 224, open_clip.OPENAI_DATASET_MEAN,
                     open_clip.OPENAI_DATASET_STD, "ViT-B-16-quickgelu", "random")
    x0 = torch.rand(1, 3, 256, 256) * 2 - 1

    stamps = []
    start = time.perf_counter()
    train_clip_direction(model, clip, "face", "smiling face", images=x0, inversion_steps=2,
                         settings=ClipTrainSettings(t_edit=args.t_edit),
                         callback=lambda step: stamps.append(time.perf_counter()) if isinstance(step, TrainStep) else None)
    whole = time.perf_counter() - start
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    print(f"CLIP training iteration through train_clip_direction, CelebA-HQ 256 configuration, 1 image, "
          f"{len(stamps)} steps (t >= {args.t_edit} on the 40-step grid), {args.threads} threads: "
          f"{per_step * len(stamps):.1f} s ({per_step:.1f} s per step; {whole:.1f} s with set-up and the "
          f"2-step inversion)")

    grid = asyrp_timesteps(40)
    top = [t for t in grid.tolist() if t >= args.t_edit]
    phase_t_edit = top[-args.phase_steps] if args.phase_steps and args.phase_steps < len(top) else args.t_edit
    spent, total = timed_phases(model, clip, x0, phase_t_edit)
    n_phase = sum(1 for t in top if t >= phase_t_edit)
    spent["other (DeltaBlock, losses, the walk's arithmetic)"] = total - sum(spent.values())
    print(f"where the time goes (train_clip_direction with timers on its pieces, the top {n_phase} steps, "
          f"t >= {phase_t_edit}): {total / n_phase:.1f} s per step vs {per_step:.1f} s untimed")
    for name, spent_s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:50s} {spent_s / n_phase:8.2f} s per step  {spent_s / total:6.1%}")
    report = {"engine_steps": len(stamps), "engine_s_per_step": per_step, "engine_whole_s": whole,
              "phase_steps": n_phase, "phase_s_per_step": total / n_phase,
              "phases_s_per_step": {k: v / n_phase for k, v in spent.items()}}
    if args.iterations > 1:
        later = {}
        for label, mib in (("cached", 2048), ("recomputed", 0)):
            ends = {}
            train_clip_direction(model, clip, "face", "smiling face", images=x0, inversion_steps=2,
                                 settings=ClipTrainSettings(t_edit=args.t_edit, n_iter=args.iterations),
                                 callback=lambda step: ends.__setitem__(step.iteration, time.perf_counter())
                                 if isinstance(step, TrainStep) else None,
                                 reference_cache_mib=mib)
            later[label] = (ends[args.iterations - 1] - ends[0]) / ((args.iterations - 1) * len(stamps))
        print(f"iterations 2..{args.iterations}, per step: reference trajectory cached {later['cached']:.1f} s vs "
              f"recomputed {later['recomputed']:.1f} s ({later['cached'] / later['recomputed']:.2f}x)")
        report["later_iterations_s_per_step"] = later
    print(json.dumps(report))


if __name__ == "__main__":
    main()
