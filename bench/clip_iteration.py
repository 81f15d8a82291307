"""One CLIP training iteration of an Asyrp direction on the CelebA-HQ 256 configuration.

One image, every step of the editing interval (t >= t_edit on the 40-step grid), with the released
recipe: a DeltaBlock, SGD, ViT-B/16 CLIP (open_clip architecture ViT-B-16-quickgelu, random weights
of the real shape: the cost does not depend on the weights). The UNet has random weights in the
SDEdit CelebA-HQ configuration.

  1. the iteration through the engine's own ``train_clip_direction`` (one image, DDIM-inverted with
     2 steps before training starts; the time per training step is read from its progress callback);
  2. where the time goes: the same training step re-written here with a timer around each phase,
     on the first --phase-steps steps (the two totals are printed side by side as a check that the
     re-written step still costs what the engine's does);
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

from hspace_core import asyrp_timesteps, load_model  # noqa: E402
from hspace_core.directions.clip import (ClipModel, ClipTrainSettings, directional_clip_loss,  # noqa: E402
                                         text_cosine, text_direction, train_clip_direction)
from hspace_core.directions.deltablock import DDPMDeltaBlock  # noqa: E402
from hspace_core.sampling import ddim_step, predict_x0  # noqa: E402


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
                         callback=lambda step: stamps.append(time.perf_counter()))
    whole = time.perf_counter() - start
    per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    print(f"CLIP training iteration through train_clip_direction, CelebA-HQ 256 configuration, 1 image, "
          f"{len(stamps)} steps (t >= {args.t_edit} on the 40-step grid), {args.threads} threads: "
          f"{per_step * len(stamps):.1f} s ({per_step:.1f} s per step; {whole:.1f} s with set-up and the "
          f"2-step inversion)")

    torch.manual_seed(0)
    f = DDPMDeltaBlock(512, 512)
    opt = torch.optim.SGD(f.parameters(), lr=0.5)
    text_dir = text_direction(clip, "face", "smiling face")
    cos = text_cosine(clip, "face", "smiling face")
    grid = asyrp_timesteps(40)
    ts = [t for t in grid.tolist() if t >= args.t_edit]
    pairs = list(zip(reversed(ts), reversed([-1] + ts[:-1])))
    if args.phase_steps:
        pairs = pairs[:args.phase_steps]
    x_e = x_o = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        src = clip.image_features(x0)
    spent = defaultdict(float)

    def timed(name, fn):
        tic = time.perf_counter()
        out = fn()
        spent[name] += time.perf_counter() - tic
        return out

    total_tic = time.perf_counter()
    for t, t_prev in pairs:
        tt = torch.tensor([t])
        a, a_prev = model.schedule.alpha_bar_at(t, like=x_e), model.schedule.alpha_bar_at(t_prev, like=x_e)
        with torch.no_grad():
            enc = timed("encoder (edited trajectory)", lambda: model.encode(x_e, tt))
            eps = timed("decoder on h (direction term)", lambda: model.decode(enc, enc.h).eps)
            enc_o = timed("unedited trajectory (encoder + decoder)", lambda: model.encode(x_o, tt))
            eps_o = timed("unedited trajectory (encoder + decoder)", lambda: model.decode(enc_o, enc_o.h).eps)
            p_o = predict_x0(x_o, eps_o, a)
            x_o = ddim_step(p_o, eps_o, a, a_prev)
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            dh = timed("DeltaBlock f(h, t)", lambda: f(enc.h, enc.emb))
            eps_e = timed("decoder on h + dh (with graph)", lambda: model.decode(enc, enc.h + dh).eps)
            p_e = predict_x0(x_e, eps_e, a)
            feat = timed("CLIP image encoder (with graph)", lambda: clip.image_features(p_e))
            loss = -torch.log((2 - directional_clip_loss(feat, src, text_dir)) / 2) + 3.0 * cos * (p_e - p_o).abs().mean()
            timed("backward (CLIP + decoder + f)", loss.backward)
        timed("SGD update", opt.step)
        x_e = ddim_step(p_e.detach(), eps, a, a_prev)
    total = time.perf_counter() - total_tic
    print(f"where the time goes (training step re-written with timers, first {len(pairs)} steps): "
          f"{total / len(pairs):.1f} s per step vs {per_step:.1f} s in the engine")
    for name, spent_s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:42s} {spent_s / len(pairs):8.2f} s per step  {spent_s / total:6.1%}")
    report = {"engine_steps": len(stamps), "engine_s_per_step": per_step, "engine_whole_s": whole,
              "phase_steps": len(pairs), "phase_s_per_step": total / len(pairs),
              "phases_s_per_step": {k: v / len(pairs) for k, v in spent.items()}}
    if args.iterations > 1:
        later = {}
        for label, mib in (("cached", 2048), ("recomputed", 0)):
            ends = {}
            train_clip_direction(model, clip, "face", "smiling face", images=x0, inversion_steps=2,
                                 settings=ClipTrainSettings(t_edit=args.t_edit, n_iter=args.iterations),
                                 callback=lambda step: ends.__setitem__(step.iteration, time.perf_counter()),
                                 reference_cache_mib=mib)
            later[label] = (ends[args.iterations - 1] - ends[0]) / ((args.iterations - 1) * len(stamps))
        print(f"iterations 2..{args.iterations}, per step: reference trajectory cached {later['cached']:.1f} s vs "
              f"recomputed {later['recomputed']:.1f} s ({later['cached'] / later['recomputed']:.2f}x)")
        report["later_iterations_s_per_step"] = later
    print(json.dumps(report))


if __name__ == "__main__":
    main()
