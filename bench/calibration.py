"""Strengths that mean the same for every direction: each direction's own attribute change at raw strength 1
and at calibrated strength 1, in the miniature SD world and the pixel demo world, side by side in one run.

    python bench/calibration.py [--seeds 16] [--only sd,pixel] [--json out.json]

Calibration (``hspace_core.directions.calibration``): strength 1 = an RMS change of the predicted x0 of 2 %
of its own per edited step, averaged over the editing interval; the usable range = the calibrated strengths
whose whole edits keep the image off the direction's target within 20 dB of strength 0.

SD world (the shipped model, ComfyUI's own objects, the pack's SD nodes; the recommended sampler, cfg and
interval of ``hspace_sdworld.configs.RECOMMENDED``): four directions kept per position and restricted by
Direction Region to the rows of their attribute (smile: the mouth's rows 48-63; glasses: the eyes' rows
32-47; hat: the top rows 0-15; the latent-set smile: rows 48-63), calibrated on the model over the
recommended interval. For each: its raw scale, usable range, and its own attribute's mean change (probe,
16 evaluation seeds) at raw strength 1 and at calibrated strength 1; the spread is the largest over the
smallest change. Then every shipped sd_world workflow's strengths against its direction's usable range.

Pixel demo world (the embedded model and its shipped directions, calibrated here): the same columns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SD_DIRECTIONS = {  # name -> (attribute, target prompt or "latent sets", region rows)
    "smile (prompt pair)": ("smile", "a smiling face", (48, 64)),
    "glasses (prompt pair)": ("glasses", "a face with glasses", (32, 48)),
    "hat (prompt pair)": ("hat", "a face with a hat", (0, 16)),
    "smile (latent sets)": ("smile", "latent sets", (48, 64)),
}
PIXEL_DIRECTIONS = {"demo_smile": "smile", "demo_width": "face_width", "demo_eyes": "eye_size",
                    "demo_glasses": "glasses", "text_smile": "smile", "text_glasses": "glasses", "text_hat": "hat",
                    "text_wide": "face_width"}


def spread(changes: list[float]) -> float:
    a = [abs(c) for c in changes]
    return max(a) / max(min(a), 1e-9)


def sd_world(n_seeds: int) -> dict:
    from hspace_sdworld.comfy_import import import_comfy

    import_comfy(cpu=True)
    import bench.sd_claims as sc
    from hspace_core.directions.calibration import calibration_of
    from hspace_sdworld.configs import RECOMMENDED
    from nodes.sd.calibration import calibrated_sd

    world = sc.World(RECOMMENDED["steps"], RECOMMENDED["cfg"], RECOMMENDED["branch"], RECOMMENDED["t_end"])
    seeds = [sc.SEED0 + i for i in range(n_seeds)]
    t_edit, t_end = RECOMMENDED["t_edit"], RECOMMENDED["t_end"]
    rows = {}
    for name, (attr, target, (top, bottom)) in SD_DIRECTIONS.items():
        tic = time.time()
        if target == "latent sets":
            d = sc.latent_set_direction(world, RECOMMENDED["direction_seeds"], "keep")
        else:
            d = sc.sd_nodes().DirectionFromPrompts().make(world.model, world.cond(sc.SOURCE), world.cond(target),
                                                          world.sigmas, RECOMMENDED["direction_seeds"],
                                                          sc.DIRECTION_SEED, 64, 64, "keep", name)[0]
        mask = torch.zeros(1, 64, 64)
        mask[:, top:bottom] = 1.0
        from nodes.region import DirectionRegion

        d = DirectionRegion().restrict(d, mask, False)[0]
        d = calibrated_sd(world.model, d, world.cond(sc.SOURCE), t=t_edit, t_end=t_end)
        cal = calibration_of(d)
        images = sc.asyrp_sweep(world, d, (0.0, 1.0, cal.scale), seeds, t_edit)
        r = world.read(images)
        raw1 = float((r[attr][:, 1] - r[attr][:, 0]).mean())
        cal1 = float((r[attr][:, 2] - r[attr][:, 0]).mean())
        rows[name] = {"attribute": attr, "rows": [top, bottom - 1], "scale": cal.scale, "gain": cal.gain,
                      "usable": list(cal.usable), "change_raw_1": raw1, "change_calibrated_1": cal1,
                      "psnr_calibrated_1": float(sc.psnr(images[:, 2], images[:, 0]).mean()),
                      "seconds": round(time.time() - tic)}
        print(f"  {name}: scale {cal.scale:.3g}, usable {cal.usable}, {attr} change raw 1 {raw1:+.3f}, calibrated 1 "
              f"{cal1:+.3f} ({rows[name]['seconds']} s)", flush=True)
    return {"directions": rows, "seeds": n_seeds, "t_edit": t_edit, "t_end": t_end,
            "spread_raw": spread([r["change_raw_1"] for r in rows.values()]),
            "spread_calibrated": spread([r["change_calibrated_1"] for r in rows.values()])}


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
        d = calibrated(model, load_direction(demo_directions_dir() / f"{name}.safetensors"))
        cal = calibration_of(d)
        images = edit(model, x_T, d, [0.0, 1.0, cal.scale], t_edit=cal.t, steps=40).images
        r = probe.read(images.flatten(0, 1).clamp(-1, 1))
        v = r[attr].reshape(n_seeds, 3)
        rows[name] = {"attribute": attr, "t": cal.t, "scale": cal.scale, "gain": cal.gain, "usable": list(cal.usable),
                      "change_raw_1": float((v[:, 1] - v[:, 0]).mean()),
                      "change_calibrated_1": float((v[:, 2] - v[:, 0]).mean())}
        print(f"  {name}: scale {cal.scale:.3g}, usable {cal.usable}, {attr} change raw 1 "
              f"{rows[name]['change_raw_1']:+.3f}, calibrated 1 {rows[name]['change_calibrated_1']:+.3f}", flush=True)
    return {"directions": rows, "seeds": n_seeds,
            "spread_raw": spread([r["change_raw_1"] for r in rows.values()]),
            "spread_calibrated": spread([r["change_calibrated_1"] for r in rows.values()])}


def table(title: str, part: dict) -> str:
    lines = [f"\n### {title}\n", "| direction | attribute | calibration: raw per unit | usable range (calibrated) | "
             "change at raw 1 | change at calibrated 1 |", "|---|---|---|---|---|---|"]
    for name, r in part["directions"].items():
        lines.append(f"| {name} | {r['attribute']} | {r['scale']:.3g} | {r['usable'][0]:g} .. {r['usable'][1]:g} | "
                     f"{r['change_raw_1']:+.3f} | {r['change_calibrated_1']:+.3f} |")
    lines.append(f"| spread (largest / smallest change) | | | | {part['spread_raw']:.1f}x | "
                 f"{part['spread_calibrated']:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=16)
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
        print(table(f"Miniature SD world ({args.seeds} seeds, recommended settings)", report["sd_world"]))
    if "pixel" in parts:
        print("pixel demo world:", flush=True)
        report["pixel_world"] = pixel_world(args.seeds)
        print(table(f"Pixel demo world ({args.seeds} seeds, 40 steps, each direction's t_edit)",
                    report["pixel_world"]))
    report["seconds"] = round(time.time() - tic)
    print(f"\ntime: {report['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
