"""Forward-pass costs on the CelebA-HQ 256 configuration (DDIM/SDEdit family), CPU, batch 1.

Prints, side by side in one run on the same random weights:
  * our DDPMUNet forward vs the reference diffusers UNet2DModel forward (target: ours <= 1.0x);
  * one encoder pass + a batched decoder on [h, h + delta_h] (what an asymmetric Asyrp step needs)
    vs one full forward and vs two full forwards (target: pair <= 1.6x one forward).
Timings are interleaved (ours, reference, pair, ...) and the median of --repeats is reported.

    python bench/forward.py [--repeats 5] [--threads 2] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_core import load_model  # noqa: E402
from tests.engine.references import GOOGLE_256, ddim_keys_from_diffusers, diffusers_unet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ref = diffusers_unet(GOOGLE_256, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "celeba_hq.ckpt"
        torch.save(ddim_keys_from_diffusers(ref.state_dict(), 6), path)
        model = load_model(path)

    x = torch.randn(1, 3, args.size, args.size)
    t = torch.tensor([500])
    delta_h = 0.1 * torch.randn(1, *model.config.h_shape(args.size))

    def ours():
        return model.predict(x, t).eps

    def reference():
        return ref(x, t).sample

    def pair():
        enc = model.encode(x, t)
        return model.decode(enc, torch.cat([enc.h, enc.h + delta_h])).eps

    def encoder_only():
        return model.encode(x, t).h

    cases = {"ours": ours, "reference": reference, "pair": pair, "encoder": encoder_only}
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.inference_mode():
        for fn in cases.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in cases.items():
                tic = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - tic)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"CelebA-HQ 256 config (113.7 M params), input {args.size}x{args.size}, batch 1, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"  reference diffusers UNet2DModel forward : {med['reference']:.3f} s")
    print(f"  ours (DDPMUNet) forward                 : {med['ours']:.3f} s   "
          f"ratio ours/reference = {med['ours'] / med['reference']:.2f}x (target <= 1.0x)")
    print(f"  encoder + middle block only             : {med['encoder']:.3f} s   "
          f"({med['encoder'] / med['ours']:.0%} of a forward)")
    print(f"  eps(h) + eps(h + dh), shared encoder    : {med['pair']:.3f} s   "
          f"ratio pair/one forward = {med['pair'] / med['ours']:.2f}x (target <= 1.6x); "
          f"pair/two forwards = {med['pair'] / (2 * med['ours']):.2f}x")
    print(json.dumps({k: round(v, 4) for k, v in med.items()}))


if __name__ == "__main__":
    main()
