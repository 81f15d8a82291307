"""Directions nobody named, read back by the attribute probe: contrastive discovery (NoiseCLR's objective in
h) and independent components of h beside PCA's top components (Haas et al.) and the Jacobian's top
singular vectors (Park et al.), on the pixel demo world and the miniature SD world (and the miniature flow
world, --worlds flow: a tiny Flux.1, h at its recommended joint block; no Jacobian there).

    python bench/unsupervised.py [--worlds pixel,sd,flow] [--k 8] [--iterations 150] [--faces 16] [--json out.json]
                                 [--docs] [--methods contrastive,ica,pca,jacobian] [--pool 1] [--radius 0.5]
                                 [--orthogonal] [--ica-samples 512] [--ica-dims 2K] [--ica-data samples]
                                 [--strength 2|usable]

Each method makes K directions without labels or words: contrastive discovery from 64 unlabelled
procedural faces (other seeds than the evaluation's), ICA from 512 of the model's own trajectories (or
--ica-data images: that many unlabelled faces, inverted) whitened in their top 2K principal components,
PCA from the model's own trajectories (128 pixel samples; 32 SD trajectories of "a face"), the Jacobian
dh/dx_t of the first of those faces at t_edit
(the pixel world: the pack's subspace iteration; the SD world: the full Jacobian by central differences,
its 256 latent dimensions make that exact and cheap, an SD Jacobian node does not exist). Every direction
is calibrated on its model and applied at calibrated strength +2 and -2 (--strength usable: at the ends
of its usable range, where the pack's default sweeps end) to held-out faces (pixel: 16
inverted faces at the demo t_edit; SD: 16 seeds of "a face" with the recommended settings). For each
direction the probe names the attribute it moves most (the larger of both signs): its mean change,
the share of faces moved that way, and the largest drift of another attribute per unit of it. A
direction covers its attribute when the change is at least 0.3 and the drift at most 0.5; the table
counts the distinct attributes each method's K directions cover.
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
from hspace_core.demo import claims  # noqa: E402

MIN_CHANGE, MAX_DRIFT, STRENGTH = 0.3, 0.5, 2.0
TRAIN_SEED = 31_337  # the unlabelled faces; the evaluation faces come from other seeds


def strongest(before: dict, edited: list[dict]) -> dict:
    """The attribute an edit moves most over both signs (``edited``: readings at +S and -S): its
    ``claims.edit_effects``, the sign, and whether it covers the attribute."""
    best = None
    for sign, after in zip((1, -1), edited):
        for a in claims.READ_ATTRIBUTES:
            mean = float(claims.change(after, before, a).mean())
            eff = claims.edit_effects(before, after, a, 1 if mean >= 0 else -1)
            if best is None or abs(eff["target_mean"]) > abs(best["change"]):
                drift_name = max(eff["drift_per_unit"], key=eff["drift_per_unit"].get)
                best = {"attribute": a, "strength_sign": sign, "change": eff["target_mean"],
                        "same_sign": eff["same_sign"], "drift": eff["drift_per_unit"][drift_name],
                        "drift_attribute": drift_name}
    best["covers"] = abs(best["change"]) >= MIN_CHANGE and best["drift"] <= MAX_DRIFT
    best["mean_change"] = {a: [round(float(claims.change(after, before, a).mean()), 4) for after in edited]
                           for a in claims.READ_ATTRIBUTES}  # at +S and -S, for other criteria read off later
    return best


def strengths_of(cal, strength: str) -> tuple[float, float]:
    """The raw strengths (+, -) a direction is evaluated at: calibrated +-``strength``, or with "usable" the
    ends of its usable range (what the pack's ``strengths: auto`` sweeps to); 0 on a side with no usable
    probe."""
    if strength == "usable":
        return cal.usable[1] * cal.scale, cal.usable[0] * cal.scale
    return float(strength) * cal.scale, -float(strength) * cal.scale


def summary(rows: list[dict]) -> dict:
    covered = sorted({r["attribute"] for r in rows if r["covers"]})
    return {"directions": rows, "covered": covered, "distinct": len(covered)}


# ------------------------------------------------------------------ the pixel demo world

def pixel_world(args) -> dict:
    from hspace_core import calibrated
    from hspace_core.demo.demo import DEMO_T_EDIT
    from hspace_core.demo.faces import render, sample_faces
    from hspace_core.directions.calibration import calibration_of
    from hspace_core.discovery.contrastive import ContrastiveSettings, contrastive_directions
    from hspace_core.discovery.jacobian import jacobian_directions
    from hspace_core.discovery.pca import pca_directions

    world = claims.demo_world(n_faces=args.faces)
    model = world.model
    faces = render(sample_faces(64, TRAIN_SEED))
    base = claims.read(world, claims.edits(world, None, [0.0])[:, 0])
    made = {}
    tic = time.time()
    methods = args.methods.split(",")
    if "contrastive" in methods:
        made["contrastive"] = contrastive_directions(
            model, faces, steps=40, t_edit=DEMO_T_EDIT,
            settings=ContrastiveSettings(k=args.k, iterations=args.iterations, seed=args.seed, pool=args.pool,
                                         radius=args.radius, orthogonal=args.orthogonal))
        print(f"  contrastive: {time.time() - tic:.0f} s", flush=True)
    if "pca" in methods:
        made["pca"] = pca_directions(model, 128, args.k, steps=40, t_edit=DEMO_T_EDIT, seed=args.seed)
    if "ica" in methods:
        from hspace_core.discovery.ica import ica_directions

        unlabelled = render(sample_faces(args.ica_samples, TRAIN_SEED)) if args.ica_data == "images" else None
        made["ica"] = ica_directions(model, unlabelled, n_samples=args.ica_samples, components=args.k,
                                     dims=args.ica_dims, steps=40, t_edit=DEMO_T_EDIT, seed=args.seed,
                                     order=args.ica_order, rotate=args.ica_rotate)
        print(f"  ica: {time.time() - tic:.0f} s", flush=True)
    if "jacobian" in methods:
        made["jacobian"] = jacobian_directions(model, faces[:1], args.k, t_edit=DEMO_T_EDIT, steps=40, seed=args.seed)
    out, calibrated_ds = {}, {}
    for method, ds in made.items():
        rows = []
        calibrated_ds[method] = [calibrated(model, d, usable=args.strength == "usable") for d in ds]
        for d in calibrated_ds[method]:
            cal = calibration_of(d)
            plus, minus = strengths_of(cal, args.strength)
            images = claims.edits(world, d, [plus, minus])
            rows.append({"name": d.info.name, "raw_per_unit": cal.scale, "usable": cal.usable,
                         "calibrated_strengths": [plus / cal.scale, minus / cal.scale], **reproducibility(d),
                         **strongest(base, [claims.read(world, images[:, 0]), claims.read(world, images[:, 1])])})
        out[method] = summary(rows)
        print(f"  {method}: covers {out[method]['covered']} ({time.time() - tic:.0f} s)", flush=True)
    if args.docs:  # the contrastive and ICA directions on three of the evaluation faces, at calibrated -2, 0, +2
        from dataclasses import replace

        from hspace_core.discovery.contrastive import preview_rows
        from hspace_core.images import strip

        inv = world.inversion
        three = replace(inv, x_T=inv.x_T[:3], x_0=inv.x_0[:3], preprocessing=inv.preprocessing[:3])
        docs = ROOT / "docs" / "unsupervised"
        docs.mkdir(parents=True, exist_ok=True)
        for method in ("contrastive", "ica"):
            if method in made:
                picture = strip(preview_rows(model, calibrated_ds[method], three, t_edit=DEMO_T_EDIT, steps=40))
                name = "pixel_ica_effects.png" if method == "ica" and args.ica_rotate == "effects" else \
                    f"pixel_{method}.png"
                picture.save(docs / name)
                print(f"  wrote {docs / name}", flush=True)
    return out


# ------------------------------------------------------------------ the miniature SD world

def sd_jacobian_directions(world, latent: torch.Tensor, t: int, k: int, positive) -> list:
    """The top-k left singular vectors of dh/dx_t at one latent [1, 4, 8, 8] noised to t (the SD world's
    own noise of seed 0), by central differences over the latent's dimensions through the MODEL's guider;
    each scaled to |h| there, as one [C, h, w] shift at every edited step (as the pixel Jacobian directions)."""
    from hspace_core.directions.base import DirectionInfo, TensorDirection
    from nodes.sd.trainable import Kept, run_in_guider, trainable

    family, _, m = trainable(world.model)

    @torch.no_grad()
    def jac(denoise, x0, ms):
        sigma = ms.sigma(torch.tensor(float(t)))
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        x_t = ms.noise_scaling(sigma, noise, x0)
        dim = x_t[0].numel()
        eps = 1e-2 * float(x_t.std())
        basis = torch.eye(dim).view(dim, *x_t.shape[1:]) * eps
        hs = []
        for chunk in torch.cat([x_t + basis, x_t - basis]).split(128):
            kept = Kept()
            denoise(chunk, float(sigma), record=kept)
            hs.append(kept.values[0])
        h = torch.cat(hs)
        plain = Kept()
        denoise(x_t, float(sigma), record=plain)
        jcols = (h[:dim] - h[dim:]).flatten(1) / (2 * eps)      # [dim x, dim h]: J^T
        u, s, _ = torch.linalg.svd(jcols.T.double(), full_matrices=False)
        return u[:, :k].T.float(), s[:k].float(), plain.values[0][0]

    with torch.inference_mode():
        left, values, h0 = run_in_guider(m, positive, latent, jac)
    out = []
    for i in range(k):
        v = left[i].view(h0.shape)
        v = v * torch.sign(v.flatten()[v.flatten().abs().argmax()])
        info = DirectionInfo(h_shape=tuple(h0.shape), family=family, strength_unit="h_norm", name=f"jacobian{i}",
                             t_edit=t, provenance={"method": "jacobian (central differences)", "t": t,
                                                   "singular_value": float(values[i])})
        out.append(TensorDirection(v * float(h0.norm()), None, info))
    return out


def sd_world(args, flow: bool = False) -> dict:
    """The miniature SD world, or (``flow``) the miniature flow world (a tiny Flux.1 on the same latents, h at its
    recommended joint block and place; no Jacobian there)."""
    from bench import sd_claims as sdc
    from hspace_core.demo.faces import render, sample_faces
    from hspace_core.directions.calibration import calibration_of
    from hspace_core.discovery.contrastive import ContrastiveSettings
    from hspace_core.discovery.host import by_timestep, pca_host_direction
    from hspace_sdworld.configs import FLOW_RECOMMENDED, RECOMMENDED
    from nodes.sd.calibration import calibrated_sd
    from nodes.sd.discovery import contrastive_sd

    R = FLOW_RECOMMENDED if flow else RECOMMENDED
    location = None
    if flow:
        from hspace_sdworld.models import load_flow_demo
        from nodes.flow.family import flow_host

        world = sdc.World(R["steps"], R["cfg"], R["branch"], R["t_end"], loader=load_flow_demo, scheduler="simple")
        location = flow_host(world.model).location(R["block"], R["kind"])
    else:
        world = sdc.World(R["steps"], R["cfg"], R["branch"], R["t_end"])
    sd = sdc.sd_nodes()
    source = world.cond(sdc.SOURCE)
    seeds = [sdc.SEED0 + i for i in range(args.faces)]
    with torch.inference_mode():
        latents = world.sw.encode_images(world.vae, render(sample_faces(64, TRAIN_SEED), 64))
    made = {}
    tic = time.time()
    with torch.inference_mode():
        methods = args.methods.split(",")
        if "contrastive" in methods:
            made["contrastive"] = contrastive_sd(
                world.model, source, latents, steps=R["steps"], t_edit=R["t_edit"], t_end=R["t_end"],
                settings=ContrastiveSettings(k=args.k, iterations=args.iterations, seed=args.seed, pool=args.pool,
                                             radius=args.radius, orthogonal=args.orthogonal), location=location)
            print(f"  contrastive: {time.time() - tic:.0f} s", flush=True)
        if "pca" in methods:
            family, rec, which_h = sd.record_trajectories(world.model, source, world.sigmas, 32, sdc.DIRECTION_SEED,
                                                          64, 64, location=location)
            recorded = by_timestep(rec.records[0])
            made["pca"] = [pca_host_direction(recorded, j, family=family, spatial="keep", name=f"PCA {j}",
                                              which_h=which_h) for j in range(args.k)]
        if "ica" in methods:
            from hspace_core.discovery.host import ica_host_directions

            if args.ica_data == "images":  # h along the DDIM inversions of that many unlabelled faces
                from nodes.sd.inversion import invert_latent, recorder

                faces = world.sw.encode_images(world.vae, render(sample_faces(args.ica_samples, TRAIN_SEED), 64))
                if flow:
                    raise SystemExit("--ica-data images: not on the flow world")
                family, _, rec, which_h = recorder(world.model)
                invert_latent(world.model, source, faces, world.sigmas, recorder=rec)
            else:
                family, rec, which_h = sd.record_trajectories(world.model, source,
                                                              sd.sigmas_down_to(world.model, world.sigmas, R["t_edit"]),
                                                              args.ica_samples, sdc.DIRECTION_SEED, 64, 64,
                                                              location=location)
            from nodes.sd.discovery import effect_maps_sd

            def effects_of(shifts):
                return effect_maps_sd(world.model, source, shifts, R["t_edit"], R["t_end"], tuple(latents.shape[-2:]),
                                      seed=args.seed, location=location)
            made["ica"] = ica_host_directions(by_timestep(rec.records[0]), args.k, dims=args.ica_dims,
                                              family=family, spatial="keep",
                                              t_edit=R["t_edit"], t_end=R["t_end"], which_h=which_h, seed=args.seed,
                                              order=args.ica_order, rotate=args.ica_rotate, effects_of=effects_of)
            print(f"  ica: {time.time() - tic:.0f} s", flush=True)
        if "jacobian" in methods and not flow:
            made["jacobian"] = sd_jacobian_directions(world, latents[:1], R["t_edit"], args.k, source)
        base = world.read(sdc.asyrp_batch(world, None, (0.0,), seeds, R["t_edit"])[:, 0])
        out = {}
        for method, ds in made.items():
            rows = []
            for d in ds:
                d = calibrated_sd(world.model, d, source, t=R["t_edit"], t_end=R["t_end"],
                                  usable=args.strength == "usable")
                cal = calibration_of(d)
                plus, minus = strengths_of(cal, args.strength)
                images = sdc.asyrp_batch(world, d, (plus, minus), seeds, R["t_edit"])
                rows.append({"name": d.info.name, "raw_per_unit": cal.scale, "usable": cal.usable,
                             "calibrated_strengths": [plus / cal.scale, minus / cal.scale], **reproducibility(d),
                             **strongest(base, [world.read(images[:, 0]), world.read(images[:, 1])])})
            out[method] = summary(rows)
            print(f"  {method}: covers {out[method]['covered']} ({time.time() - tic:.0f} s)", flush=True)
    return out


def reproducibility(d) -> dict:
    """An independent component's stability and the noise level of its size, as its file records them."""
    return {key: d.info.provenance.get(key) for key in ("stability", "chance_stability")}


def table(title: str, result: dict) -> str:
    lines = [f"\n### {title}\n", "| method | direction | attribute moved most | change | same sign | "
             "largest drift per unit | covers | stability (noise level) |", "|---|---|---|---|---|---|---|---|"]
    for method, r in result.items():
        for row in r["directions"]:
            stable, chance = row.get("stability"), row.get("chance_stability")
            found = "" if stable is None else f"{stable:.2f}" + ("" if chance is None else f" ({chance:.2f})")
            lines.append(f"| {method} | {row['name']} | {row['attribute']} ({'+' if row['strength_sign'] > 0 else '-'}) "
                         f"| {row['change']:+.3f} | {row['same_sign']:.0%} | {row['drift']:.2f} "
                         f"({row['drift_attribute']}) | {'yes' if row['covers'] else ''} | {found} |")
    lines += ["", "| method | distinct attributes covered (change >= 0.3, drift <= 0.5) |", "|---|---|"]
    for method, r in result.items():
        lines.append(f"| {method} | {r['distinct']}: {', '.join(r['covered']) or '-'} |")
    return "\n".join(lines)


def main() -> None:
    from hspace_core.discovery.contrastive import ContrastiveSettings
    from hspace_core.discovery.ica import ORDERS, ROTATIONS, whitened_dims

    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="pixel,sd")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--faces", type=int, default=16, help="evaluation faces (pixel) / seeds (SD)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=ContrastiveSettings.pool,
                    help="contrastive: effects compared on pool x pool block means of the x0 change")
    ap.add_argument("--orthogonal", action="store_true",
                    help="contrastive: the K shifts kept mutually orthogonal in h")
    ap.add_argument("--radius", type=float, default=ContrastiveSettings.radius,
                    help="contrastive: each direction's size while training, in units of h's RMS")
    ap.add_argument("--methods", default="contrastive,ica,pca,jacobian", help="comma list of methods to run")
    ap.add_argument("--ica-samples", type=int, default=512,
                    help="ica: the model's samples (pixel) / trajectories (SD) it is made from")
    ap.add_argument("--ica-data", choices=["samples", "images"], default="samples",
                    help="ica: the model's samples (SD: trajectories of the prompt), or that many unlabelled faces "
                         "inverted")
    ap.add_argument("--ica-dims", type=int, default=None, help="ica: principal components whitened (default 2 x K)")
    ap.add_argument("--ica-rotate", choices=ROTATIONS, default=ROTATIONS[0],
                    help="ica: turn the principal directions by FastICA of h (default) or by their effects on x0 "
                         "(independent effects; SD: on the predicted latent)")
    ap.add_argument("--ica-order", choices=ORDERS, default=ORDERS[0],
                    help="ica: keep the least Gaussian components, or the most reproducible over bootstrap resamples")
    ap.add_argument("--strength", default=str(STRENGTH),
                    help="calibrated strength the directions are applied at (+ and -), or 'usable': each direction at "
                         "the ends of its usable range")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--docs", action="store_true",
                    help="write docs/unsupervised/pixel_contrastive.png and pixel_ica.png (pixel_ica_effects.png with "
                         "--ica-rotate effects) for the methods run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = {"k": args.k, "iterations": args.iterations, "faces": args.faces, "strength": args.strength,
              "min_change": MIN_CHANGE, "max_drift": MAX_DRIFT,
              "contrastive": {"pool": args.pool, "radius": args.radius, "orthogonal": args.orthogonal},
              "ica": {"samples": args.ica_samples, "dims": whitened_dims(args.k, args.ica_dims), "data": args.ica_data,
                      "order": args.ica_order, "rotate": args.ica_rotate}}
    at = "at the ends of each direction's usable range" if args.strength == "usable" else \
        f"at calibrated +-{args.strength}"
    tic = time.time()
    worlds = args.worlds.split(",")
    if "pixel" in worlds:
        print("pixel demo world:", flush=True)
        report["pixel_world"] = pixel_world(args)
        print(table(f"Pixel demo world ({args.faces} inverted faces, {at})", report["pixel_world"]), flush=True)
    if "sd" in worlds:
        from hspace_sdworld.comfy_import import import_comfy

        import_comfy(cpu=True)
        print("miniature SD world:", flush=True)
        report["sd_world"] = sd_world(args)
        print(table(f"Miniature SD world ({args.faces} seeds, recommended settings, {at})", report["sd_world"]),
              flush=True)
    if "flow" in worlds:
        from hspace_sdworld.comfy_import import import_comfy

        import_comfy(cpu=True)
        print("miniature flow world:", flush=True)
        report["flow_world"] = sd_world(args, flow=True)
        print(table(f"Miniature flow world ({args.faces} seeds, recommended settings, {at})", report["flow_world"]),
              flush=True)
    report["seconds"] = round(time.time() - tic)
    print(f"\ntime: {report['seconds']} s")
    if args.json:
        merge_json(args.json, report)


if __name__ == "__main__":
    main()
