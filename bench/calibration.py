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
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import merge_json  # noqa: E402

SD_DIRECTIONS = {  # name -> (attribute, target prompt or "latent sets", region rows)
    "smile (prompt pair)": ("smile", "a smiling face", (48, 64)),
    "glasses (prompt pair)": ("glasses", "a face with glasses", (32, 48)),
    "hat (prompt pair)": ("hat", "a face with a hat", (0, 16)),
    "smile (latent sets)": ("smile", "latent sets", (48, 64)),
}
PIXEL_DIRECTIONS = {"demo_smile": "smile", "demo_width": "face_width", "demo_eyes": "eye_size",
                    "demo_glasses": "glasses", "text_smile": "smile", "text_glasses": "glasses", "text_hat": "hat",
                    "text_wide": "face_width"}


def image_change(images: torch.Tensor, j: int) -> float:
    """Mean over seeds of the RMS change of image j from image 0 of each row of ``images`` [N, K, 3, H, W]
    (pixels in [-1, 1]): what the model did, read without a probe."""
    return float((images[:, j].float() - images[:, 0].float()).flatten(1).pow(2).mean(1).sqrt().mean())


def spread(changes: list[float]) -> float:
    a = [abs(c) for c in changes]
    return max(a) / max(min(a), 1e-9)


def sd_region_direction(world, name: str, usable: bool = True):
    """``SD_DIRECTIONS[name]``'s direction on the bench world (``bench.sd_claims.World`` with the recommended
    settings): made (prompt pair or latent sets), restricted by Direction Region to its rows, calibrated on
    the model over the recommended interval (``usable``: with its usable range)."""
    import bench.sd_claims as sc
    from hspace_sdworld.configs import RECOMMENDED
    from nodes.region import DirectionRegion
    from nodes.sd.calibration import calibrated_sd

    _, target, (top, bottom) = SD_DIRECTIONS[name]
    if target == "latent sets":
        d = sc.latent_set_direction(world, RECOMMENDED["direction_seeds"], "keep")
    else:
        d = sc.sd_nodes().DirectionFromPrompts().make(world.model, world.cond(sc.SOURCE), world.cond(target),
                                                      world.sigmas, RECOMMENDED["direction_seeds"],
                                                      sc.DIRECTION_SEED, 64, 64, "keep", name)[0]
    mask = torch.zeros(1, 64, 64)
    mask[:, top:bottom] = 1.0
    d = DirectionRegion().restrict(d, mask, False)[0]
    return calibrated_sd(world.model, d, world.cond(sc.SOURCE), t=RECOMMENDED["t_edit"], t_end=RECOMMENDED["t_end"],
                         usable=usable)


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
    for name, (attr, _, (top, bottom)) in SD_DIRECTIONS.items():
        tic = time.time()
        d = sd_region_direction(world, name)
        cal = calibration_of(d)
        images = sc.asyrp_sweep(world, d, (0.0, 1.0, cal.scale), seeds, t_edit)
        r = world.read(images)
        raw1 = float((r[attr][:, 1] - r[attr][:, 0]).mean())
        cal1 = float((r[attr][:, 2] - r[attr][:, 0]).mean())
        rows[name] = {"attribute": attr, "rows": [top, bottom - 1], "scale": cal.scale, "gain": cal.gain,
                      "usable": list(cal.usable), "change_raw_1": raw1, "change_calibrated_1": cal1,
                      "psnr_calibrated_1": float(sc.psnr(images[:, 2], images[:, 0]).mean()),
                      "image_change_calibrated_1": image_change(images, 2),
                      "seconds": round(time.time() - tic)}
        print(f"  {name}: scale {cal.scale:.3g}, usable {cal.usable}, {attr} change raw 1 {raw1:+.3f}, calibrated 1 "
              f"{cal1:+.3f} ({rows[name]['seconds']} s)", flush=True)
    # the shipped sd_world workflows' strengths (raw, as they are tuned) against their directions' usable ranges
    smile_all = calibrated_sd(world.model, sc.prompt_pair_direction(world, RECOMMENDED["direction_seeds"], "keep"),
                              world.cond(sc.SOURCE), t=t_edit, t_end=t_end)
    glasses_all = calibrated_sd(world.model, sc.sd_nodes().DirectionFromPrompts().make(
        world.model, world.cond(sc.SOURCE), world.cond("a face with glasses"), world.sigmas,
        RECOMMENDED["direction_seeds"], sc.DIRECTION_SEED, 64, 64, "keep", "glasses")[0], world.cond(sc.SOURCE),
        t=t_edit, t_end=t_end)
    smile_cal = rows["smile (prompt pair)"]
    workflows = [
        ("sd_world_prompt_pair_sweep", "smile, rows 48-63", smile_cal["scale"], smile_cal["usable"], (0.0, 6.0)),
        ("sd_world_edit_real_image", "smile, rows 48-63 (cfg 1)", smile_cal["scale"], smile_cal["usable"], (0.0, 12.0)),
        ("sd_world_region_edit", "smile, rows 48-63", smile_cal["scale"], smile_cal["usable"], (0.0, 6.0)),
        ("sd_world_region_edit", "smile, all of h", calibration_of(smile_all).scale,
         list(calibration_of(smile_all).usable), (0.0, 6.0)),
        ("sd_world_mix_two_directions", "smile, rows 48-63", smile_cal["scale"], smile_cal["usable"], (0.0, 6.0)),
        ("sd_world_mix_two_directions", "glasses, all of h, weight 0.125", calibration_of(glasses_all).scale,
         list(calibration_of(glasses_all).usable), (0.0, 0.75)),
    ]
    return {"directions": rows, "seeds": n_seeds, "t_edit": t_edit, "t_end": t_end,
            "spread_raw": spread([r["change_raw_1"] for r in rows.values()]),
            "spread_calibrated": spread([r["change_calibrated_1"] for r in rows.values()]),
            "spread_image_calibrated": spread([r["image_change_calibrated_1"] for r in rows.values()]),
            "workflows": [ranged(*w) for w in workflows]}


def ranged(workflow: str, direction: str, scale: float, usable, raw: tuple[float, float]) -> dict:
    """A workflow's raw strength range in its direction's calibrated units, and whether it stays usable."""
    lo, hi = raw[0] / scale, raw[1] / scale
    return {"workflow": workflow, "direction": direction, "raw": list(raw), "calibrated": [lo, hi],
            "usable": list(usable), "inside": usable[0] <= lo and hi <= usable[1]}


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
                      "change_calibrated_1": float((v[:, 2] - v[:, 0]).mean()),
                      "image_change_calibrated_1": image_change(images, 2)}
        if name in ("demo_width", "demo_eyes"):
            rows[name]["_cal"] = cal
        print(f"  {name}: scale {cal.scale:.3g}, usable {cal.usable}, {attr} change raw 1 "
              f"{rows[name]['change_raw_1']:+.3f}, calibrated 1 {rows[name]['change_calibrated_1']:+.3f}", flush=True)
    width, eyes = rows["demo_width"].pop("_cal"), rows["demo_eyes"].pop("_cal")
    # the shipped pixel workflows that edit with the embedded directions (raw strengths, as tuned); the
    # directions that workflows make themselves (image sets, text, PCA, Jacobian) are not checked here
    workflows = [ranged("edit_image_with_direction", "demo_width", width.scale, width.usable, (0.0, 4.0)),
                 ranged("strength_sweep_strip", "demo_width", width.scale, width.usable, (-4.0, 4.0)),
                 ranged("edit_friendly_inversion", "demo_width", width.scale, width.usable, (-4.0, 4.0)),
                 ranged("mix_two_directions", "demo_width (weight 1)", width.scale, width.usable, (0.0, 4.0)),
                 ranged("mix_two_directions", "demo_eyes (weight 0.9)", eyes.scale, eyes.usable, (0.0, 3.6))]
    return {"directions": rows, "seeds": n_seeds,
            "spread_raw": spread([r["change_raw_1"] for r in rows.values()]),
            "spread_calibrated": spread([r["change_calibrated_1"] for r in rows.values()]),
            "spread_image_calibrated": spread([r["image_change_calibrated_1"] for r in rows.values()]),
            "workflows": workflows}


def table(title: str, part: dict) -> str:
    lines = [f"\n### {title}\n", "| direction | attribute | calibration: raw per unit | usable range (calibrated) | "
             "change at raw 1 | change at calibrated 1 | image RMS change at calibrated 1 |",
             "|---|---|---|---|---|---|---|"]
    for name, r in part["directions"].items():
        lines.append(f"| {name} | {r['attribute']} | {r['scale']:.3g} | {r['usable'][0]:g} .. {r['usable'][1]:g} | "
                     f"{r['change_raw_1']:+.3f} | {r['change_calibrated_1']:+.3f} | "
                     f"{r['image_change_calibrated_1']:.3f} |")
    lines.append(f"| spread (largest / smallest change) | | | | {part['spread_raw']:.1f}x | "
                 f"{part['spread_calibrated']:.1f}x | {part['spread_image_calibrated']:.2f}x |")
    lines += ["", "| shipped workflow | direction | strengths (raw, as shipped) | in calibrated units | usable range | "
              "inside |", "|---|---|---|---|---|---|"]
    for w in part["workflows"]:
        lines.append(f"| `{w['workflow']}` | {w['direction']} | {w['raw'][0]:g} .. {w['raw'][1]:g} | "
                     f"{w['calibrated'][0]:.2f} .. {w['calibrated'][1]:.2f} | {w['usable'][0]:g} .. {w['usable'][1]:g} | "
                     f"{'yes' if w['inside'] else '**no**'} |")
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
        merge_json(args.json, report)


if __name__ == "__main__":
    with torch.inference_mode():
        main()
