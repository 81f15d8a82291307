"""Peak memory of finding independent directions on an SD model, from the recorded h to the directions: as the
pack did before (every step's h kept whole, grouped by timestep into a copy, the rows concatenated into a
third) against now (``host.Recording``: h kept as the rows use it, averaged at once for ``spatial``
"average"; one batch per timestep grouped without a copy; the rows handed to ICA as per-step column blocks,
never concatenated), side by side in one run.

    python bench/recording_memory.py [--seeds 256] [--steps 20] [--json docs/recording_memory.json]

h is SD1.5's middle block output at 512 px (1280 x 8 x 8 per step and trajectory), one batch of all seeds per
step as the sampler hands it to the recorder, synthetic (16 non-Gaussian factors along random directions plus
noise) so that no UNet has to run: what is measured is what happens to h after the UNet made it. Each way and
``spatial`` runs in its own process (``--way``); its peak is the growth of the high-water mark (``VmHWM``,
reset through ``/proc/self/clear_refs``) over the resident size before the first step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ica_memory import status_kb  # noqa: E402
from bench.report import merge_json  # noqa: E402

WAYS = ("before", "now")
SPATIALS = ("average", "keep")
H_SHAPE = (1280, 8, 8)  # SD1.5's middle block output at 512 px
FACTORS = 16


def step_h(seeds: int, step: int, factors: torch.Tensor) -> torch.Tensor:
    """h [seeds, 1280, 8, 8] at one step: the factors along this step's random directions, plus noise."""
    g = torch.Generator().manual_seed(1000 + step)
    width = H_SHAPE[0] * H_SHAPE[1] * H_SHAPE[2]
    h = torch.randn(seeds, width, generator=g).mul_(0.1)  # made in place: one step's h is the only temporary
    return h.addmm_(factors, torch.randn(FACTORS, width, generator=g)).view(seeds, *H_SHAPE)


def run_way(way: str, spatial: str, seeds: int, steps: int, k: int) -> dict:
    from hspace_core.discovery.host import Recording, _reduce, by_timestep, ica_host_directions
    from hspace_core.discovery.ica import independent_components, whitened_dims

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    factors = torch.stack([(torch.rand(seeds, generator=g) < 0.3).float() if i % 2 else torch.rand(seeds, generator=g)
                           for i in range(FACTORS)], dim=1) * 3
    timesteps = torch.linspace(999, 500, steps).round().tolist()
    recording = Recording() if way == "before" else Recording(spatial)
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kb("VmRSS")
    tic = time.time()
    records = []
    for i, t in enumerate(timesteps):  # what the recorder is handed at each step
        records.append((t, recording.take(t, step_h(seeds, i, factors))))
    if way == "before":  # by_timestep copied every group; ica_host_directions concatenated the rows
        recorded = {int(t): torch.cat([h]) for t, h in records}  # the recorder still held its records
        rows = torch.cat([_reduce(recorded[t], spatial).flatten(1) for t in sorted(recorded, reverse=True)], dim=1)
        ds = independent_components(rows, k, dims=whitened_dims(k, None), seed=0)[0]
    else:
        ds = ica_host_directions(by_timestep(records), k, family="sd1", spatial=spatial, seed=0)
    seconds = time.time() - tic
    peak = status_kb("VmHWM") - before
    h_mb = seeds * steps * H_SHAPE[0] * H_SHAPE[1] * H_SHAPE[2] * 4 / 2 ** 20
    return {"way": way, "spatial": spatial, "seconds": round(seconds, 1), "peak_mb": round(peak / 1024),
            "h_mb": round(h_mb), "directions": len(ds)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--way", choices=WAYS, default=None, help="(internal) run one way and print its JSON")
    ap.add_argument("--spatial", choices=SPATIALS, default="average", help="(internal) with --way")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, args.spatial, args.seeds, args.steps, args.k)))
        return
    results = {}
    for spatial in SPATIALS:
        for way in WAYS:
            out = subprocess.run([sys.executable, __file__, "--way", way, "--spatial", spatial, "--seeds",
                                  str(args.seeds), "--steps", str(args.steps), "--k", str(args.k)],
                                 capture_output=True, text=True, check=True)
            results[f"{spatial} {way}"] = json.loads(out.stdout.strip().splitlines()[-1])
    h_mb = results["average before"]["h_mb"]
    print(f"{args.seeds} trajectories x {args.steps} steps of SD1.5's h at 512 px ({h_mb} MB of h in all), "
          f"k {args.k}\n")
    print("| spatial | way | peak memory, recording to directions | time |")
    print("|---|---|---|---|")
    for r in results.values():
        print(f"| {r['spatial']} | {r['way']} | {r['peak_mb']} MB ({r['peak_mb'] / h_mb:.2f}x the h) | {r['seconds']} s |")
    ratios = {s: round(results[f"{s} before"]["peak_mb"] / max(results[f"{s} now"]["peak_mb"], 1), 1)
              for s in SPATIALS}
    print("\npeak ratio before / now: " + ", ".join(f"{s} {r}x" for s, r in ratios.items()))
    if args.json:
        merge_json(args.json, {"seeds": args.seeds, "steps": args.steps, "k": args.k, "h_mb": h_mb,
                               "ways": results, "peak_ratio": ratios})


if __name__ == "__main__":
    main()
