"""Figures of the embedded demo model's card: the loss curve and a sample grid read by the probe.

    python scripts/model_card.py [--log hspace_core/data/demo_faces32_train_log.jsonl] [--out docs/demo_model]

Writes loss.png (running training loss per 50 steps, log scale), samples.png (64 samples from seeds
0..63, 40 plain DDIM steps, eta 0, unclamped) and samples.json (what the attribute probe reads on them: face probability and
attribute statistics, compared with the training distribution).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_core import load_model  # noqa: E402
from hspace_core.demo.demo import SAMPLE_CLIP_X0, demo_model_path, sample_from_model  # noqa: E402
from hspace_core.demo.faces import CIRCULAR, CONTINUOUS, attribute_table, render, sample_faces  # noqa: E402
from hspace_core.demo.probe import load_probe  # noqa: E402
from hspace_core.images import strip  # noqa: E402


def loss_plot(entries: list[dict], out: Path, width: int = 640, height: int = 320) -> None:
    steps = [e["step"] for e in entries]
    losses = [math.log10(e["loss"]) for e in entries]
    lo, hi = min(losses), max(losses)
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    m = 40
    d.rectangle([m, 10, width - 10, height - m], outline="black")

    def xy(s, v):
        return (m + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (width - m - 10),
                height - m - (v - lo) / max(1e-9, hi - lo) * (height - m - 10))

    d.line([xy(s, v) for s, v in zip(steps, losses)], fill=(30, 80, 200), width=2)
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        d.text((2, xy(steps[0], v)[1] - 5), f"{10 ** v:.3f}", fill="black")
        s = steps[0] + frac * (steps[-1] - steps[0])
        d.text((xy(s, lo)[0] - 15, height - m + 5), f"{int(s)}", fill="black")
    d.text((m + 5, 14), "training loss (MSE on eps), running mean per 50 steps, log scale", fill="black")
    img.save(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", default=str(ROOT / "hspace_core" / "data" / "demo_faces32_train_log.jsonl"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "demo_model"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = [json.loads(line) for line in Path(args.log).read_text().splitlines() if line.strip()]
    loss_plot(entries, out / "loss.png")

    model = load_model(demo_model_path())
    probe = load_probe()
    samples = sample_from_model(model, 64, 0, 40)
    grid = strip([list(samples[r * 8:(r + 1) * 8]) for r in range(8)])
    grid.resize((grid.width * 3, grid.height * 3), Image.NEAREST).save(out / "samples.png")
    stale = out / "samples_unclamped.png"  # the first model's card showed its unclamped samples apart
    if stale.exists():
        stale.unlink()
    read = probe.read(samples)
    data = attribute_table(sample_faces(2000, 123))
    report = {"training_steps": entries[-1]["step"], "final_loss": entries[-1]["loss"],
              "face_probability": {"mean": float(read["face"].mean()), "min": float(read["face"].min()),
                                   "fraction_above_0.5": float((read["face"] > 0.5).float().mean())},
              "sampler": {"steps": 40, "eta": 0.0, "clip_x0": SAMPLE_CLIP_X0, "seeds": "0..63 of one generator"},
              "attributes": {}}
    for k in (k for k in CONTINUOUS if k not in CIRCULAR):
        report["attributes"][k] = {"samples_mean": float(read[k].mean()), "samples_std": float(read[k].std()),
                                   "data_mean": float(data[k].mean()), "data_std": float(data[k].std())}
    for k in ("glasses", "hat"):
        report["attributes"][k] = {"samples_rate": float((read[k] > 0.5).float().mean()),
                                   "data_rate": float(data[k].mean())}
    real = probe.read(render(sample_faces(64, 123)))
    report["face_probability_of_rendered_faces"] = float(real["face"].mean())
    (out / "samples.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
