"""The miniature flow world's model card figures: the transformer's loss curve and txt2img samples per prompt
read by the probe (through ComfyUI's objects, as a workflow makes them).

    python scripts/flow_world_card.py [--cfg 5] [--steps 30] [--seeds 8]

Writes docs/flow_world/{flow_loss.png, samples.png, card.json}; the training log it reads is kept in
docs/flow_world/ (copied there by ``python -m hspace_sdworld export-flow``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_sdworld.comfy_import import import_comfy  # noqa: E402
from scripts.plotting import line_plot  # noqa: E402
from scripts.sd_world_card import PROMPTS, curves, prompt_samples  # noqa: E402

OUT = ROOT / "docs" / "flow_world"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfg", type=float, default=None, help="default: the recommended cfg (configs.FLOW_RECOMMENDED)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import_comfy(cpu=True)
    from hspace_core.demo.probe import load_probe
    from hspace_sdworld import sampling as sw
    from hspace_sdworld.configs import FLOW_RECOMMENDED as R
    from hspace_sdworld.models import load_flow_demo

    cfg = args.cfg if args.cfg is not None else R["cfg"]
    steps = args.steps or R["steps"]
    OUT.mkdir(parents=True, exist_ok=True)
    card: dict = {}
    series, entries = curves(OUT / "flow_train_log.jsonl", ["loss", "x0_mse"])
    line_plot({"velocity MSE (the loss)": series["loss"], "x0 MSE (sigma^2-weighted)": series["x0_mse"]},
              OUT / "flow_loss.png", title="flow transformer training loss (per 50 steps)", x_label="step",
              y_label="loss", log_y=True)
    card["training"] = {"steps": entries[-1]["step"], "final_loss": entries[-1]["loss"],
                        "final_x0_mse": entries[-1]["x0_mse"], "captions_seen": entries[-1].get("captions_cached"),
                        "steps_per_s": entries[-1]["steps_per_s"]}
    model, clip, vae = load_flow_demo()
    probe = load_probe()
    seeds = list(range(args.seeds))
    samples = prompt_samples(model, clip, vae, probe, seeds, sw.sigmas(model, steps, "simple"), cfg,
                             OUT / "samples.png")
    card["samples"] = {"cfg": cfg, "steps": steps, "sampler": "euler (simple schedule, Flux's shift)",
                       "seeds": seeds, "prompts": PROMPTS, "probe_means": samples}
    card["parameters"] = {"transformer": sum(p.numel() for p in model.model.diffusion_model.parameters())}
    (OUT / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    with torch.inference_mode():
        main()
