"""The miniature flow world's claims: Flux-class edits in h-space, measured with the world's probe, in the columns
of ``bench/sd_claims.py`` so that the README shows the SD and flow worlds in one table.

    python bench/flow_claims.py [--seeds 16] [--seed0 10000] [--steps 30] [--cfg 5] [--only follow,scan,methods,larger,real,mix]
                                [--larger 4] [--docs] [--json out.json]

Runs in a ComfyUI process on the shipped flow model (``hspace_sdworld/weights/flow.safetensors`` with the SD
world's text encoder and VAE; ``HSPACE_SDWORLD_WEIGHTS`` points at another folder), through ComfyUI's own
objects (CLIP encoding as CLIPTextEncode, CFGGuider, the VAE) and the pack's nodes (the direction finders, Apply
H-Space Direction, the Asyrp sampler, Invert Latent). Every output is decoded to 64 px and read by the engine's
attribute probe. Every number comes from this run.

1. txt2img follows the prompt: the share of samples the probe reads as the prompt says, at several cfg.
2. Where h is: the prompt-pair smile ("a face" -> "a smiling face") at every joint block, as the residual
   stream and as the attention output, kept per position: change, homogeneity, linearity, drift, PSNR. The
   recommended block and kind come from this scan (``hspace_sdworld.configs.FLOW_RECOMMENDED``).
3. Methods side by side on the same seeds: Asyrp at the recommended place on all of h and on the mouth's
   rows of the token grid (Direction Region); the symmetric shift of the same h (stock euler); FluxSpace's fine
   edit as its paper defines it (FluxSpace Edit: every joint block's image attention output gets lambda x the
   edit prompt's less its projection onto the empty prompt's, in every call of the interval); re-prompting
   (the target prompt blended into the conditioning, ConditioningAverage) from the same noise and from the
   exact-replay inversion of the unedited image.
3b. The recommended edit past the shipped range (strengths 0, S, ..., --larger x S): how far the linear dial
   goes before the image goes, beside re-prompting's change.
4. Held-out faces VAE-encoded, inverted (the flow ODE backwards, exact replay), regenerated and edited.
5. Two directions mixed (smile + glasses): both move, each within 1.5x of its alone change.
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

from hspace_sdworld.comfy_import import import_comfy  # noqa: E402

import bench.sd_claims as sc  # noqa: E402  (the SD world's bench: World, sweeps, readings)

KINDS = {"stream": "residual stream", "attention": "attention output"}


def world(args):
    from hspace_sdworld.models import load_flow_demo

    return sc.World(args.steps, args.cfg, "both", args.t_end, loader=load_flow_demo, scheduler="simple")


def prompt_pair(w, target: str, n: int, block: int, kind: str, spatial: str = "keep", name: str = ""):
    return sc.sd_nodes().DirectionFromPrompts().make(w.model, w.cond(sc.SOURCE), w.cond(target), w.sigmas, n,
                                                     sc.DIRECTION_SEED, 64, 64, spatial, name or target,
                                                     block=block, h=KINDS[kind])[0]


FLUXSPACE = "FluxSpace's fine edit, every joint block (symmetric)"


def fluxspace_sweep(w, scales, seeds, t_edit: int, t_end: int) -> torch.Tensor:
    """FluxSpace's fine edit towards the target prompt, the empty prompt as its prior, at each lambda in
    ``scales`` over [t_edit, t_end], stock euler from each seed's noise: [N, K, 3, 64, 64]."""
    from nodes.flow.fluxspace import FluxSpaceEdit

    cols = [w.txt2img(sc.SOURCE, seeds, model=FluxSpaceEdit().apply(w.model, w.cond(sc.TARGET), w.cond(""), lam,
                                                                     t_edit, t_end, "all")[0]) for lam in scales]
    return torch.stack(cols, dim=1)


def exact_replays(w, latents: torch.Tensor, method: str = "ddpm"):
    """Each clean latent [N, 4, 8, 8] inverted (cfg 1, source prompt): (starts, inversions)."""
    from nodes.flow.host import invert

    starts, maps = [], []
    for i in range(len(latents)):
        s, m = invert(w.model, w.cond(sc.SOURCE), latents[i:i + 1], w.sigmas, method)
        starts.append(s)
        maps.append(m)
    return torch.cat(starts), maps


def row_text(name: str, r: dict) -> str:
    return (f"| {name} | {r['change']:+.3f} +- {r['change_std']:.3f} | {r['same_sign']:.0%} | {r['r2']:.3f} | "
            f"{r['drift']:.3f} ({r['drift_attribute']}) | {r['psnr']:.1f} dB | {r['others_abs_change']:.3f} | "
            f"{r['face']:.2f} |")


HEADER = ("| method | smile change at the largest strength (mean +- std) | same sign | R^2 (5 strengths) | "
          "largest drift per unit | PSNR to unedited | other attributes' mean abs change | face prob. |\n"
          "|---|---|---|---|---|---|---|---|")


def main() -> None:
    from hspace_sdworld.configs import FLOW_RECOMMENDED as R

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--seed0", type=int, default=sc.SEED0)
    ap.add_argument("--steps", type=int, default=R["steps"])
    ap.add_argument("--cfg", type=float, default=R["cfg"])
    ap.add_argument("--cfgs", default="1,3,5,7.5")
    ap.add_argument("--t-edit", type=int, default=R["t_edit"])
    ap.add_argument("--t-end", type=int, default=R["t_end"])
    ap.add_argument("--strength", type=float, default=R["strength"], help="largest strength (raw units)")
    ap.add_argument("--block", type=int, default=R["block"])
    ap.add_argument("--kind", default=R["kind"], choices=list(KINDS))
    ap.add_argument("--region-from", type=int, default=R["region_from"])
    ap.add_argument("--direction-seeds", type=int, default=R["direction_seeds"])
    ap.add_argument("--fluxspace-scale", type=float, default=R["fluxspace_scale"],
                    help="largest lambda of FluxSpace's edit")
    ap.add_argument("--real-strength", type=float, default=R["real_strength"])
    ap.add_argument("--only", default="", help="comma list of parts: follow,scan,methods,larger,real,mix")
    ap.add_argument("--larger", type=int, default=4, help="the part 'larger' sweeps 0, S, ..., this many S")
    ap.add_argument("--docs", action="store_true", help="write docs/flow_world/methods_strip.png and the plot")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import_comfy(cpu=True)
    tic = time.time()
    parts = set(args.only.split(",")) if args.only else {"follow", "scan", "methods", "larger", "real", "mix"}
    w = world(args)
    seeds = [args.seed0 + i for i in range(args.seeds)]
    S = args.strength
    strengths = [0.0, S / 4, S / 2, 3 * S / 4, S]
    report: dict = {"seeds": args.seeds, "seed0": args.seed0, "steps": args.steps, "cfg": args.cfg,
                    "t_edit": args.t_edit, "t_end": args.t_end, "block": args.block, "kind": args.kind}

    def region(d):
        return sc.rows_region(d, args.region_from) if args.region_from else d

    if "follow" in parts:
        cfgs = [float(c) for c in args.cfgs.split(",")]
        report["prompt_following"] = follow = sc.prompt_following(w, seeds, cfgs)
        print(f"\n### txt2img follows the prompt ({args.seeds} seeds, {args.steps} euler steps)\n")
        print("| prompt | " + " | ".join(f"cfg {c:g}" for c in cfgs) + " |\n|---|" + "---|" * len(cfgs))
        for text in sc.PROMPTS:
            print(f"| {text} | " + " | ".join(f"{follow[c][text]['agree']:.0%}" for c in cfgs) + " |")
        print(f"({time.time() - tic:.0f} s)", flush=True)

    if "scan" in parts:
        from nodes.flow.family import flow_host

        report["scan"] = {}
        print(f"\n### Where h is: the prompt-pair smile kept per position, Asyrp over [{args.t_edit}, {args.t_end}], "
              f"strengths up to {S:g}\n\n" + HEADER.replace("| method |", "| place |"))
        for kind in KINDS:
            for block in range(flow_host(w.model).blocks):
                d = prompt_pair(w, sc.TARGET, args.direction_seeds, block, kind)
                row = sc.method_row(w, sc.asyrp_sweep(w, d, strengths, seeds, args.t_edit), strengths)
                report["scan"][f"{kind} {block}"] = row
                print(row_text(f"{KINDS[kind]} after block {block}" if kind == "stream" else
                               f"attention output of block {block}", row), flush=True)

    pp = None
    if parts & {"methods", "larger", "real", "mix"}:
        pp = prompt_pair(w, sc.TARGET, args.direction_seeds, args.block, args.kind, name="smile (prompt pair)")
    if "methods" in parts:
        rows, images = {}, {}
        where = f"{KINDS[args.kind]}, block {args.block}"
        images[f"Asyrp, prompt pair on rows {args.region_from}-63 ({where})"] = sc.asyrp_sweep(
            w, region(pp), strengths, seeds, args.t_edit)
        images[f"Asyrp, prompt pair on all of h ({where})"] = sc.asyrp_sweep(w, pp, strengths, seeds, args.t_edit)
        images["symmetric shift of the same h (stock euler)"] = sc.symmetric_sweep(w, region(pp), strengths, seeds,
                                                                                   args.t_edit)
        lams = [args.fluxspace_scale * f for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
        images[FLUXSPACE] = fluxspace_sweep(w, lams, seeds, args.t_edit, args.t_end)
        weights = [0.0, 0.25, 0.5, 0.75, 1.0]
        images["stock: target prompt blended in, same noise"] = sc.reprompt_sweep(w, weights, seeds)
        starts, maps = exact_replays(w, sc.unedited_latents(w, seeds))
        images["stock: target prompt blended in, exact-replay inversion"] = sc.reprompt_inverted_sweep(
            w, weights, starts, maps, seeds)
        for name, im in images.items():
            rows[name] = sc.method_row(w, im, weights if name.startswith("stock") else
                                       lams if name == FLUXSPACE else strengths)
        report["methods"] = rows
        print(f"\n### \"{sc.SOURCE}\" -> \"{sc.TARGET}\" on {args.seeds} seeds (interval [{args.t_edit}, "
              f"{args.t_end}], cfg {args.cfg:g}, strengths up to {S:g} raw; FluxSpace's lambda up to "
              f"{args.fluxspace_scale:g}; the blend weight up to 1)\n\n{HEADER}")
        for name, r in rows.items():
            print(row_text(name, r))
        if args.docs:
            write_docs(images, rows)

    if "larger" in parts:  # the recommended edit past the shipped range: how far the linear dial goes
        tops = [S * m for m in range(0, args.larger + 1)]
        im = sc.asyrp_sweep(w, region(pp), tops, seeds, args.t_edit)
        whole = sc.method_row(w, im, tops)
        report["larger"] = {"strengths": tops, "r2": whole["r2"], "mean_change": whole["mean_change"],
                            "rows": {f"{top:g}": sc.method_row(w, im[:, :j + 1], tops[:j + 1])
                                     for j, top in enumerate(tops) if j}}
        print(f"\n### The recommended edit at larger strengths ({args.seeds} seeds; R^2 over 0 ... {tops[-1]:g}: "
              f"{whole['r2']:.3f})\n\n" + HEADER.replace("| method |", "| largest strength |"))
        for top, r in report["larger"]["rows"].items():
            print(row_text(top, r))

    if "real" in parts:
        from hspace_core.demo.faces import render, sample_faces
        from hspace_sdworld.data import HELD_OUT_SEED

        images = render(sample_faces(args.seeds, HELD_OUT_SEED), 64)
        latents = w.sw.encode_images(w.vae, images)
        real = {"faces": args.seeds, "vae_psnr": float(sc.psnr(w.decode(latents), images).mean())}
        for method in ("ddim", "ddpm"):
            starts, maps = exact_replays(w, latents, method)
            imgs = sc.asyrp_sweep(w, region(pp), (0.0, args.real_strength), list(range(args.seeds)), args.t_edit,
                                  cfg=1.0, starts=starts, maps=maps)
            r = w.read(imgs)
            from hspace_core.demo import claims

            eff = claims.edit_effects({k: v[:, 0] for k, v in r.items()}, {k: v[:, 1] for k, v in r.items()}, "smile", 1)
            real[method] = {"psnr_to_input": float(sc.psnr(imgs[:, 0], images).mean()),
                            "psnr_edited_to_unedited": float(sc.psnr(imgs[:, 1], imgs[:, 0]).mean()),
                            "smile_change": eff["target_mean"], "same_sign": eff["same_sign"],
                            "drift": max(eff["drift_per_unit"].values())}
        report["real"] = real
        print(f"\n### Real images: {args.seeds} held-out faces, VAE reconstruction {real['vae_psnr']:.1f} dB\n\n| "
              f"inversion | strength-0 PSNR to the input | smile change at strength {args.real_strength:g} (cfg 1) | "
              "same sign | largest drift per unit | PSNR edited to strength 0 |\n|---|---|---|---|---|---|")
        for method, label in (("ddim", "flow ODE backwards"), ("ddpm", "exact replay")):
            r = real[method]
            print(f"| {label} | {r['psnr_to_input']:.1f} dB | {r['smile_change']:+.3f} | {r['same_sign']:.0%} | "
                  f"{r['drift']:.3f} | {r['psnr_edited_to_unedited']:.1f} dB |")

    if "mix" in parts:
        glasses = prompt_pair(w, "a face with glasses", args.direction_seeds, args.block, args.kind, name="glasses")
        from hspace_core import mix

        smile = region(pp)
        top = S
        alone_s = sc.asyrp_sweep(w, smile, (0.0, top), seeds, args.t_edit)
        alone_g = sc.asyrp_sweep(w, glasses, (0.0, top), seeds, args.t_edit)
        both = sc.asyrp_sweep(w, mix([(smile, 1.0), (glasses, 1.0)]), (0.0, top), seeds, args.t_edit)
        read = {k: w.read(v) for k, v in (("smile", alone_s), ("glasses", alone_g), ("both", both))}

        def change(r, attr):
            return float((r[attr][:, 1] - r[attr][:, 0]).mean())
        report["mix"] = m = {"smile_alone": change(read["smile"], "smile"),
                             "glasses_alone": change(read["glasses"], "glasses"),
                             "smile_mixed": change(read["both"], "smile"), "glasses_mixed": change(read["both"], "glasses")}
        print(f"\n### Mixing smile and glasses (strength {top:g} each)\n\n| | smile change | glasses change |\n|---|---|---|\n"
              f"| alone | {m['smile_alone']:+.3f} | {m['glasses_alone']:+.3f} |\n"
              f"| mixed | {m['smile_mixed']:+.3f} | {m['glasses_mixed']:+.3f} |")
    report["seconds"] = round(time.time() - tic)
    print(f"\ntime: {report['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")


def write_docs(images: dict, rows: dict) -> None:
    from hspace_core.images import strip
    from scripts.plotting import line_plot

    out = ROOT / "docs" / "flow_world"
    out.mkdir(parents=True, exist_ok=True)
    series = {name: ([s / max(r["strengths"]) for s in r["strengths"]], r["mean_change"]) for name, r in rows.items()}
    line_plot(series, out / "strength_plot.png", title="smile change vs strength (fraction of the largest shown)",
              x_label="strength / largest strength", y_label="probe smile change", width=1100)
    rows_img = []
    for name, im in images.items():
        st = rows[name]["strengths"]
        zero, top = st.index(0.0), st.index(max(st))
        rows_img.append([im[j, zero] for j in range(4)] + [im[j, top] for j in range(4)])
    grid = strip(rows_img)
    grid.resize((grid.width * 2, grid.height * 2)).save(out / "methods_strip.png")
    (out / "methods_strip.txt").write_text("rows: " + "; ".join(images) + "\ncolumns: seeds 0-3 unedited, then the "
                                           "same seeds at the largest strength\n")


if __name__ == "__main__":
    with torch.inference_mode():
        main()
