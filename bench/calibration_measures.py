"""Which measured change could make calibrated strengths move every attribute alike? Each direction of
``bench/calibration.py`` swept over calibrated strengths 0 .. 16 (the pack's calibration), its own attribute
read by the probe beside five probe-free measures of what the edit did; then, for each measure, the strength
where it reaches a target and the spread (largest / smallest) of the attribute changes there.

    python bench/calibration_measures.py [--seeds 8] [--only sd,pixel] [--json docs/calibration_measures.json]

Measures (mean over seeds; the edited result against strength 0 of the same seed):
  * ``latent_rms`` / ``image_rms``: RMS change of the final latent (relative to its RMS; SD world only) or
    image (pixels in [-1, 1]);
  * ``latent_rows``: the latent's RMS change inside the direction's rows (SD world);
  * ``image_top5`` / ``image_top25``: RMS of the largest 5 % / 25 % of the per-pixel change magnitudes (a
    change's size where it happens, whatever its area).
A measure that equalised the probe readings would give a small spread at every target; the spread at small
targets is what a calibration unit of "a modest edit" would see.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.calibration import PIXEL_DIRECTIONS, SD_DIRECTIONS, sd_region_direction, spread  # noqa: E402
from bench.report import merge_json  # noqa: E402

MULTIPLES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
SUPERVISED = ("demo_smile", "demo_width", "demo_eyes", "demo_glasses")  # the pixel directions that are dials


def image_measures(images: torch.Tensor) -> dict[str, list[float]]:
    """images [N, K, 3, H, W] in [-1, 1], column 0 unedited -> measure -> [K] means over N."""
    d = (images.float() - images[:, :1].float())
    per_pixel = d.pow(2).sum(2).sqrt().flatten(2) / 3 ** 0.5           # [N, K, H W], RMS over channels
    out = {"image_rms": d.flatten(2).pow(2).mean(2).sqrt().mean(0).tolist()}
    for q, name in ((0.05, "image_top5"), (0.25, "image_top25")):
        k = max(1, int(q * per_pixel.shape[2]))
        out[name] = per_pixel.topk(k, dim=2).values.pow(2).mean(2).sqrt().mean(0).tolist()
    return out


def crossing(multiples, measure, probe, target: float):
    """(strength, probe change) where ``measure`` first reaches ``target``, linear between the sweep's points;
    None when it never does."""
    for i in range(1, len(multiples)):
        if measure[i] >= target:
            f = (target - measure[i - 1]) / (measure[i] - measure[i - 1]) if measure[i] != measure[i - 1] else 1.0
            return (multiples[i - 1] + f * (multiples[i] - multiples[i - 1]),
                    probe[i - 1] + f * (probe[i] - probe[i - 1]))
    return None


def spreads(rows: dict, names, targets: dict[str, tuple[float, ...]]) -> list[dict]:
    out = []
    for measure, ts in targets.items():
        for target in ts:
            at = [crossing(rows[n]["multiples"], rows[n][measure], rows[n]["probe"], target) for n in names]
            if any(a is None for a in at):
                continue
            out.append({"measure": measure, "target": target, "strengths": [round(a[0], 3) for a in at],
                        "changes": [round(a[1], 4) for a in at], "spread": spread([a[1] for a in at])})
    return out


def sd_world(n_seeds: int) -> dict:
    from hspace_sdworld.comfy_import import import_comfy

    import_comfy(cpu=True)
    import comfy.samplers

    import bench.sd_claims as sc
    from hspace_core.directions.calibration import calibration_of
    from hspace_sdworld.configs import RECOMMENDED

    world = sc.World(RECOMMENDED["steps"], RECOMMENDED["cfg"], RECOMMENDED["branch"], RECOMMENDED["t_end"])
    seeds = [sc.SEED0 + i for i in range(n_seeds)]
    t_edit, t_end = RECOMMENDED["t_edit"], RECOMMENDED["t_end"]
    rows = {}
    for name, (attr, _, (top, bottom)) in SD_DIRECTIONS.items():
        tic = time.time()
        d = sd_region_direction(world, name, usable=False)
        scale = calibration_of(d).scale
        m = sc.applied(world, d, 1.0, t_edit, "asymmetric", t_end)
        latents, images = [], []
        for seed in seeds:
            sampler = comfy.samplers.KSAMPLER(sc.sd_nodes().sample_asyrp,
                                              extra_options={"strengths": tuple(k * scale for k in MULTIPLES)})
            lat = world.sw.sample(m, world.cond(sc.SOURCE), world.cond(sc.NEGATIVE), world.sw.seed_noise([seed]),
                                  world.sigmas, world.cfg, sampler, seed=seed).float()
            latents.append(lat)
            images.append(world.decode(lat))
        latents, images = torch.stack(latents), torch.stack(images)   # [N, K, 4, 8, 8], [N, K, 3, 64, 64]
        v = world.read(images)[attr]
        dl = latents - latents[:, :1]
        base = latents[:, :1].flatten(2).pow(2).mean(2).sqrt()          # [N, 1]
        rt, rb = top * latents.shape[-2] // 64, bottom * latents.shape[-2] // 64
        rows[name] = {"attribute": attr, "scale": scale, "multiples": list(MULTIPLES),
                      "probe": (v - v[:, :1]).mean(0).tolist(),
                      "latent_rms": (dl.flatten(2).pow(2).mean(2).sqrt() / base).mean(0).tolist(),
                      "latent_rows": (dl[..., rt:rb, :].flatten(2).pow(2).mean(2).sqrt() / base).mean(0).tolist(),
                      **image_measures(images), "seconds": round(time.time() - tic)}
        print(f"  {name}: {attr} at calibrated {list(MULTIPLES)}: "
              f"{' '.join(f'{x:+.2f}' for x in rows[name]['probe'])} ({rows[name]['seconds']} s)", flush=True)
    targets = {"latent_rms": (0.1, 0.2, 0.3, 0.4, 0.6), "latent_rows": (0.15, 0.3, 0.45, 0.6, 0.8),
               "image_rms": (0.05, 0.1, 0.2, 0.3, 0.4), "image_top5": (0.15, 0.3, 0.45, 0.6, 0.8),
               "image_top25": (0.1, 0.2, 0.3, 0.4, 0.6)}
    return {"directions": rows, "seeds": n_seeds, "spreads": spreads(rows, list(rows), targets)}


def pixel_world(n_seeds: int) -> dict:
    from hspace_core import calibrated, edit, load_direction, load_model
    from hspace_core.demo.demo import demo_directions_dir, demo_model_path
    from hspace_core.demo.probe import load_probe
    from hspace_core.directions.calibration import calibration_of

    model = load_model(demo_model_path())
    probe = load_probe()
    x_T = torch.randn(n_seeds, 3, 32, 32, generator=torch.Generator().manual_seed(10_000))
    rows = {}
    for name, attr in PIXEL_DIRECTIONS.items():
        tic = time.time()
        d = calibrated(model, load_direction(demo_directions_dir() / f"{name}.safetensors"), usable=False)
        cal = calibration_of(d)
        images = edit(model, x_T, d, [k * cal.scale for k in MULTIPLES], t_edit=cal.t, steps=40).images.float()
        v = probe.read(images.flatten(0, 1).clamp(-1, 1))[attr].reshape(n_seeds, len(MULTIPLES))
        rows[name] = {"attribute": attr, "scale": cal.scale, "multiples": list(MULTIPLES),
                      "probe": (v - v[:, :1]).mean(0).tolist(), **image_measures(images),
                      "seconds": round(time.time() - tic)}
        print(f"  {name}: {attr} at calibrated {list(MULTIPLES)}: "
              f"{' '.join(f'{x:+.2f}' for x in rows[name]['probe'])} ({rows[name]['seconds']} s)", flush=True)
    targets = {"image_rms": (0.05, 0.1, 0.15, 0.2, 0.3), "image_top5": (0.1, 0.2, 0.3, 0.4, 0.6),
               "image_top25": (0.05, 0.1, 0.2, 0.3, 0.4)}
    return {"directions": rows, "seeds": n_seeds, "spreads_supervised": spreads(rows, SUPERVISED, targets)}


def table(title: str, part: dict, key: str) -> str:
    rows = part["directions"]
    lines = [f"\n### {title}\n", "| direction | attribute | " + " | ".join(f"calibrated {k:g}" for k in MULTIPLES[1:])
             + " |", "|---|---|" + "---|" * (len(MULTIPLES) - 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['attribute']} | " + " | ".join(f"{x:+.2f}" for x in r["probe"][1:]) + " |")
    lines += ["", "| measure | target | strengths there (calibrated) | attribute changes there | spread |",
              "|---|---|---|---|---|"]
    for s in part[key]:
        lines.append(f"| {s['measure']} | {s['target']:g} | {', '.join(f'{x:.2f}' for x in s['strengths'])} | "
                     f"{', '.join(f'{x:+.2f}' for x in s['changes'])} | {s['spread']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--only", default="sd,pixel")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.only.split(","))
    report = {}
    tic = time.time()
    if "sd" in parts:
        print("miniature SD world:", flush=True)
        report["sd_world"] = sd_world(args.seeds)
        print(table(f"Miniature SD world ({args.seeds} seeds): own attribute's change, and each measure's spread",
                    report["sd_world"], "spreads"))
    if "pixel" in parts:
        print("pixel demo world:", flush=True)
        report["pixel_world"] = pixel_world(args.seeds)
        print(table(f"Pixel demo world ({args.seeds} seeds): own attribute's change, and each measure's spread "
                    f"over {', '.join(SUPERVISED)}", report["pixel_world"], "spreads_supervised"))
    report["seconds"] = round(time.time() - tic)
    print(f"\ntime: {report['seconds']} s")
    if args.json:
        merge_json(args.json, report)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
