"""The miniature SD world's claims: Stable Diffusion edits in h-space, measured with the world's probe.

    python bench/sd_claims.py [--seeds 16] [--steps 30] [--cfg 5] [--t-edit 200] [--scan 100,200,300]
                              [--scan-t-end 999,850,700] [--region-from 48] [--region-cols 16,48]
                              [--docs] [--json out.json]

Defaults are the recommended settings (``hspace_sdworld.configs.RECOMMENDED``): the edits act on the
recommended CFG branch (``--branch``) inside [t_edit, t_end], strengths 0, S/4, S/2, 3S/4, S; inverted
images are edited inside [t_edit, real_t_end] at the real-image strength.

Runs in a ComfyUI process (ComfyUI found as the tests find it, imported on the CPU) on the shipped
model (``hspace_sdworld/weights``), through ComfyUI's own objects (CLIP encoding as CLIPTextEncode,
CFGGuider, KSAMPLER, the VAE) and the pack's SD nodes (direction finders, Apply H-Space Direction,
the Asyrp sampler, Invert Latent). Every output is decoded to 64 px and read by the engine's
attribute probe at 32 px. Prints markdown tables; with --docs, writes the strength plot and the strip
under docs/sd_world/. Every number comes from this run.

1. txt2img follows the prompt: for "a smiling face", "a face with glasses", "a face with a hat" and
   their opposites, the share of samples the probe reads as the prompt says, at several cfg.
2. t_edit: the interval rule of the pixel side on this model (d(x0, P_t) along DDIM inversions of its
   samples, P_t decoded by the VAE; the fallback metric's relative threshold times the tiny CLIP's
   cos("face", "smiling face")), and a scan of t_edit measuring the edit itself.
3. "a face" -> "a smiling face", side by side on the same seeds: the prompt-pair direction with the
   Asyrp sampler (asymmetric), the same direction symmetric with the stock sampler, the latent-set and
   PCA directions (asymmetric), and the stock-node baselines: the conditioning moved from the source
   prompt towards the target one (ConditioningAverage) from the same noise, and from the same
   edit-friendly inversion; and the prompt-pair direction kept per position, on all of h and on the lower
   half of the image only (Direction Region: the mouth's half). With ``--region-from R`` every direction
   is kept per position and restricted to the image rows R..63 (the recommended edit), and the prompt pair
   on all of h is the comparison row. Target change, homogeneity, linearity, drift, PSNR to the unedited
   image.
4. Real images: held-out faces VAE-encoded, inverted (DDIM, edit-friendly), regenerated at strength 0
   (PSNR) and edited with the prompt-pair direction.
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
from hspace_sdworld.configs import RECOMMENDED  # noqa: E402

SOURCE, TARGET, NEGATIVE = "a face", "a smiling face", ""
# prompt -> (attribute, does a reading agree with the prompt?); the captions' own thresholds (clip_world.caption)
PROMPTS = {
    "a smiling face": ("smile", lambda v: v > 1 / 3),
    "a frowning face": ("smile", lambda v: v < -1 / 3),
    "a face with glasses": ("glasses", lambda v: v > 0.5),
    "a face without glasses": ("glasses", lambda v: v < 0.5),
    "a face with a hat": ("hat", lambda v: v > 0.5),
    "a face without a hat": ("hat", lambda v: v < 0.5),
}
SEED0 = 10_000  # evaluation seeds: SEED0, SEED0 + 1, ...; directions are found on other seeds
DIRECTION_SEED = 500


class World:
    """The shipped model in ComfyUI's objects, the probe, and what every measurement shares."""

    def __init__(self, steps: int, cfg: float, branch: str, t_end: int, loader=None, scheduler: str = "normal"):
        from hspace_core.demo.probe import load_probe
        from hspace_sdworld.models import load_demo
        from hspace_sdworld import sampling as sw

        self.sw = sw
        self.model, self.clip, self.vae = (loader or load_demo)()
        self.probe = load_probe()
        self.steps, self.cfg, self.branch, self.t_end = steps, cfg, branch, t_end
        self.sigmas = sw.sigmas(self.model, steps, scheduler)
        self._conds = {}

    def cond(self, text: str):
        if text not in self._conds:
            self._conds[text] = self.sw.encode(self.clip, text)
        return self._conds[text]

    def read(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = images.shape[:-3]
        r = self.sw.read(self.probe, images.reshape(-1, *images.shape[-3:]))
        return {k: v.reshape(lead) for k, v in r.items()}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.sw.decode(self.vae, latents)

    def txt2img(self, text, seeds, cfg=None, model=None, positive=None) -> torch.Tensor:
        """Images [N, 3, 64, 64] of ``text`` (or a ``positive`` CONDITIONING), stock euler from each seed's noise."""
        cfg = self.cfg if cfg is None else cfg
        lat = self.sw.sample(model or self.model, positive or self.cond(text), self.cond(NEGATIVE),
                             self.sw.seed_noise(seeds), self.sigmas, cfg)
        return self.decode(lat)


# ------------------------------------------------------------------ 1. prompt following

def prompt_following(world: World, seeds: list[int], cfgs: list[float]) -> dict:
    out = {}
    for cfg in cfgs:
        row = {}
        for text, (attr, agrees) in PROMPTS.items():
            r = world.read(world.txt2img(text, seeds, cfg))
            row[text] = {"agree": float(sum(bool(agrees(float(v))) for v in r[attr]) / len(seeds)),
                         "mean": float(r[attr].mean()), "face": float(r["face"].mean())}
        out[cfg] = row
    return out


# ------------------------------------------------------------------ directions (the pack's SD nodes)

def sd_nodes():
    import nodes.sd as sd  # the pack's adapter (ComfyUI's own top-level ``nodes`` is never imported here)

    return sd


def prompt_pair_direction(world: World, n: int, spatial: str):
    return sd_nodes().DirectionFromPrompts().make(world.model, world.cond(SOURCE), world.cond(TARGET), world.sigmas,
                                                  n, DIRECTION_SEED, 64, 64, spatial, "smile (prompt pair)")[0]


def rows_region(direction, top: int, cols: tuple[int, int] = (0, 64)):
    """The direction (kept per position) restricted to the image's rows ``top``..63 (the mouth's rows: it sits at
    73 % of the height, the eyes at 56 %) and columns ``cols[0]``..``cols[1] - 1``, through the pack's Direction
    Region node with a MASK as ComfyUI's mask nodes give it ([1, 64, 64], 1 = edit)."""
    from nodes.region import DirectionRegion

    mask = torch.zeros(1, 64, 64)
    mask[:, top:, cols[0]:cols[1]] = 1.0
    return DirectionRegion().restrict(direction, mask, False)[0]


def latent_set_direction(world: World, n: int, spatial: str):
    from hspace_core.demo.pairs import PAIRS, attribute_sets

    hi, lo = attribute_sets("smile", n, DIRECTION_SEED, *PAIRS["smile"], size=64)
    enc = lambda x: {"samples": world.sw.encode_images(world.vae, x)}  # noqa: E731
    return sd_nodes().DirectionFromLatentSets().make(world.model, world.cond(SOURCE), enc(hi), enc(lo), world.sigmas,
                                                     spatial, "smile (latent sets)")[0]


def pca_direction(world: World, n: int, component: int, spatial: str):
    return sd_nodes().DirectionPCASD().make(world.model, world.cond(SOURCE), world.sigmas, n, DIRECTION_SEED,
                                            component, 64, 64, spatial, "PCA")[0]


# ------------------------------------------------------------------ edits

def applied(world: World, direction, strength: float, t_edit: int, mode: str, t_end: int | None = None):
    """The direction at ``strength`` in raw units (the sweeps' strengths multiply it)."""
    t_end = world.t_end if t_end is None else t_end
    return sd_nodes().ApplyHSpaceDirection().apply(world.model, direction, strength, t_edit, t_end, world.branch,
                                                     mode, units="raw")[0]


def asyrp_sweep(world: World, direction, strengths, seeds, t_edit: int, *, positive=None, cfg=None,
                starts: torch.Tensor | None = None, maps=None, t_end: int | None = None) -> torch.Tensor:
    """Images [N, K, 3, 64, 64]: the Asyrp sampler's sweep of ``strengths`` from each seed's noise (or from
    ``starts`` [N, 4, 8, 8], inverted latents, with add_noise off; with ``maps`` their noise maps)."""
    import comfy.samplers

    sd = sd_nodes()
    m = world.model if direction is None else applied(world, direction, 1.0, t_edit, "asymmetric", t_end)
    out = []
    for i, seed in enumerate(seeds):
        options = {"strengths": tuple(strengths)}
        if maps is not None:
            options["noise_maps"] = maps[i]
        sampler = comfy.samplers.KSAMPLER(sd.sample_asyrp, extra_options=options)
        if starts is None:
            noise, latent = world.sw.seed_noise([seed]), None
        else:
            latent = starts[i:i + 1]
            noise = torch.zeros_like(latent)
        lat = world.sw.sample(m, positive or world.cond(SOURCE), world.cond(NEGATIVE), noise, world.sigmas,
                              world.cfg if cfg is None else cfg, sampler, latent=latent, seed=seed)
        out.append(world.decode(lat))
    return torch.stack(out)


def asyrp_batch(world: World, direction, strengths, seeds, t_edit: int) -> torch.Tensor:
    """Images [N, K, 3, 64, 64]: the Asyrp sampler's ``strengths`` from every seed's noise, all seeds in one batch
    (``asyrp_sweep`` samples seed by seed; eta 0, so the rows are independent): each seed's noise
    repeated K times, one strength per row."""
    import comfy.samplers

    k = len(strengths)
    m = world.model if direction is None else applied(world, direction, 1.0, t_edit, "asymmetric")
    sampler = comfy.samplers.KSAMPLER(sd_nodes().sample_asyrp,
                                      extra_options={"strengths": tuple(strengths) * len(seeds)})
    noise = world.sw.seed_noise(seeds).repeat_interleave(k, 0)
    lat = world.sw.sample(m, world.cond(SOURCE), world.cond(NEGATIVE), noise, world.sigmas, world.cfg,
                          sampler)
    return world.decode(lat).view(len(seeds), len(strengths), 3, 64, 64)


def symmetric_sweep(world: World, direction, strengths, seeds, t_edit: int) -> torch.Tensor:
    """The direction in every call (mode symmetric) with the stock euler sampler: [N, K, 3, 64, 64]."""
    cols = [world.txt2img(SOURCE, seeds, model=applied(world, direction, s, t_edit, "symmetric")) for s in strengths]
    return torch.stack(cols, dim=1)


def blend(a, b, w: float):
    """ComfyUI's ConditioningAverage with ``b`` as conditioning_to and weight ``w`` (cross-attention
    tokens and pooled vector, (1 - w) a + w b)."""
    ta, tb = a[0][0], b[0][0]
    extra = dict(a[0][1])
    if "pooled_output" in extra and "pooled_output" in b[0][1]:
        extra["pooled_output"] = (1 - w) * extra["pooled_output"] + w * b[0][1]["pooled_output"]
    return [[(1 - w) * ta + w * tb, extra]]


def reprompt_sweep(world: World, weights, seeds) -> torch.Tensor:
    cols = [world.txt2img(SOURCE, seeds, positive=blend(world.cond(SOURCE), world.cond(TARGET), w)) for w in weights]
    return torch.stack(cols, dim=1)


def unedited_latents(world: World, seeds) -> torch.Tensor:
    return world.sw.sample(world.model, world.cond(SOURCE), world.cond(NEGATIVE), world.sw.seed_noise(seeds),
                           world.sigmas, world.cfg)


def ddpm_inversions(world: World, latents: torch.Tensor, seed: int = 0):
    """Edit-friendly inversion of each clean latent [N, 4, 8, 8] (cfg 1, source prompt): (starts, maps)."""
    sd = sd_nodes()
    starts, maps = [], []
    for i in range(len(latents)):
        s, m = sd.invert_latent_ddpm(world.model, world.cond(SOURCE), latents[i:i + 1], world.sigmas, seed)
        starts.append(s)
        maps.append(m)
    return torch.cat(starts), maps


def ddim_inversions(world: World, latents: torch.Tensor) -> torch.Tensor:
    return sd_nodes().invert_latent(world.model, world.cond(SOURCE), latents, world.sigmas)


def reprompt_inverted_sweep(world: World, weights, starts, maps, seeds) -> torch.Tensor:
    """The edit-friendly inversion replayed with the blended conditioning (cfg 1): [N, K, 3, 64, 64]."""
    cols = []
    for w in weights:
        positive = blend(world.cond(SOURCE), world.cond(TARGET), w)
        cols.append(asyrp_sweep(world, None, (0.0,), seeds, 0, positive=positive, cfg=1.0, starts=starts,
                                maps=maps)[:, 0])
    return torch.stack(cols, dim=1)


# ------------------------------------------------------------------ reading an edit

def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def method_row(world: World, images: torch.Tensor, strengths, attribute: str = "smile") -> dict:
    """images [N, K, 3, 64, 64] over ``strengths`` (one of them 0, the unedited image): the target's mean
    change per strength, R^2 of its line, and at the largest strength the effects, PSNR to the unedited
    image and the other attributes' mean absolute change."""
    from hspace_core.demo import claims

    strengths = [float(s) for s in strengths]
    r = world.read(images)
    i0, top = strengths.index(0.0), max(range(len(strengths)), key=lambda k: strengths[k])
    per = [{k: v[:, j] for k, v in r.items()} for j in range(len(strengths))]
    mean = torch.stack([claims.change(per[j], per[i0], attribute).mean() for j in range(len(strengths))])
    slope, r2 = claims.line_fit(strengths, mean)
    eff = claims.edit_effects(per[i0], per[top], attribute, 1)
    others = [a for a in claims.READ_ATTRIBUTES if a != attribute and a not in ("hair_hue", "background_hue")]
    drift_name = max(eff["drift_per_unit"], key=eff["drift_per_unit"].get)
    return {"strengths": strengths, "mean_change": [round(float(v), 4) for v in mean], "slope": slope, "r2": r2,
            "change": eff["target_mean"], "change_std": eff["target_std"], "same_sign": eff["same_sign"],
            "drift": eff["drift_per_unit"][drift_name], "drift_attribute": drift_name,
            "psnr": float(psnr(images[:, top], images[:, i0]).mean()),
            "others_abs_change": float(torch.stack([claims.change(per[top], per[i0], a).abs().mean()
                                                    for a in others]).mean()),
            "face": eff["face_prob_edited"]}


# ------------------------------------------------------------------ 2. t_edit

def measured_t_edit(world: World, seeds, text_cosine: float) -> dict:
    """The pixel side's rule on this model: samples of the source prompt DDIM-inverted (cfg 1), at every
    inversion step d(x0, P_t) with P_t decoded to pixels (multiscale RMS, relative threshold times the
    text cosine): ``interval_from_curves``."""
    import comfy.samplers

    from hspace_core.interval import interval_from_curves, multiscale_rmse

    sd = sd_nodes()
    latents = unedited_latents(world, seeds)
    x0 = world.decode(latents)
    ms = world.model.get_model_object("model_sampling")
    fmt = world.model.get_model_object("latent_format")
    xi, gamma, ts = [], [], []

    def record(i, denoised, x, total):
        xi.append(multiscale_rmse(world.decode(fmt.process_out(denoised.float())), x0).mean())
        gamma.append(multiscale_rmse(world.decode(fmt.process_out(x.float())), x0).mean())

    up = torch.flip(world.sigmas[world.sigmas > 0], dims=[0])
    guider = comfy.samplers.CFGGuider(world.model)
    guider.set_conds(world.cond(SOURCE), world.cond(SOURCE))
    guider.set_cfg(1.0)
    guider.sample(torch.zeros_like(latents), latents, comfy.samplers.KSAMPLER(sd.invert_walk), up, callback=record)
    ts = [float(ms.timestep(s.reshape(1))) for s in up[1:]]
    m = interval_from_curves(torch.tensor(ts), torch.stack(xi), torch.stack(gamma), "multiscale_rmse",
                             text_cosine=text_cosine, what=f"{len(seeds)} samples, {world.steps} steps, VAE-decoded P_t")
    return {"t_edit": int(round(m.interval.t_edit)), "t_boost": m.interval.t_boost, "source": m.interval.source,
            "curve": {round(t): round(float(v / m.xi[-1]), 3) for t, v in zip(ts, m.xi)}}


# ------------------------------------------------------------------ 4. real images

def real_images(world: World, direction, n: int, strength: float, t_edit: int, t_end: int) -> dict:
    from hspace_core.demo.faces import render, sample_faces
    from hspace_sdworld.data import HELD_OUT_SEED

    images = render(sample_faces(n, HELD_OUT_SEED), 64)
    latents = world.sw.encode_images(world.vae, images)
    vae_rec = world.decode(latents)
    seeds = list(range(n))
    out = {"faces": n, "vae_psnr": float(psnr(vae_rec, images).mean())}
    ddim = ddim_inversions(world, latents)
    starts, maps = ddpm_inversions(world, latents)
    for name, kw in (("ddim", {"starts": ddim}), ("ddpm", {"starts": starts, "maps": maps})):
        imgs = asyrp_sweep(world, direction, (0.0, strength), seeds, t_edit, cfg=1.0, t_end=t_end, **kw)
        r = world.read(imgs)
        from hspace_core.demo import claims

        before = {k: v[:, 0] for k, v in r.items()}
        after = {k: v[:, 1] for k, v in r.items()}
        eff = claims.edit_effects(before, after, "smile", 1)
        out[name] = {"psnr_to_input": float(psnr(imgs[:, 0], images).mean()),
                     "psnr_to_input_min": float(psnr(imgs[:, 0], images).min()),
                     "psnr_to_vae": float(psnr(imgs[:, 0], vae_rec).mean()),
                     "psnr_edited_to_unedited": float(psnr(imgs[:, 1], imgs[:, 0]).mean()),
                     "smile_change": eff["target_mean"], "same_sign": eff["same_sign"],
                     "drift": max(eff["drift_per_unit"].values())}
    return out


# ------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cfg", type=float, default=5.0, help="the recommended cfg (edits and baselines)")
    ap.add_argument("--cfgs", default="1,3,5,7.5", help="cfg values of the prompt-following table")
    ap.add_argument("--t-edit", default=str(RECOMMENDED["t_edit"]),
                    help="'auto': the measured t_edit; or a timestep (the measured one is reported with part interval)")
    ap.add_argument("--scan", default="", help="t_edit values to scan, e.g. 300,500,700")
    ap.add_argument("--scan-t-end", default="", help="t_end values to scan at the chosen t_edit, e.g. 999,850,700")
    ap.add_argument("--strength", type=float, default=RECOMMENDED["strength"],
                    help="largest shown strength of the prompt-pair edit (the sweeps run 0, S/4, ..., S)")
    ap.add_argument("--real-strength", type=float, default=RECOMMENDED["real_strength"],
                    help="the strength of the edits of inverted images (sampled at cfg 1)")
    ap.add_argument("--t-end", type=int, default=RECOMMENDED["t_end"], help="the edit interval's upper end")
    ap.add_argument("--real-t-end", type=int, default=RECOMMENDED["real_t_end"],
                    help="the edit interval's upper end for inverted images")
    ap.add_argument("--direction-seeds", type=int, default=RECOMMENDED["direction_seeds"],
                    help="seeds of the prompt-pair direction (as the workflows)")
    ap.add_argument("--spatial", default=RECOMMENDED["spatial"], choices=["average", "keep"])
    ap.add_argument("--region-from", type=int, default=RECOMMENDED["region_from"],
                    help="restrict the directions (kept per position) to the image rows from this pixel row of 64 "
                         "down (Direction Region); 0: all of h")
    ap.add_argument("--region-cols", default="0,64",
                    help="with --region-from: the mask's columns a,b (a..b-1 of 64), e.g. 16,48 for the middle cells")
    ap.add_argument("--branch", default=RECOMMENDED["branch"], choices=["cond", "uncond", "both"],
                    help="the CFG branch the directions act on (cond: the edit is scaled by cfg as the prompt is)")
    ap.add_argument("--only", default="", help="comma list of parts: follow,interval,scan,methods,real,trained")
    ap.add_argument("--trained-iterations", type=int, default=200,
                    help="the trained directions' updates (output-side latent sets, CLIP)")
    ap.add_argument("--docs", action="store_true", help="write docs/sd_world/strength_plot.png and strip")
    ap.add_argument("--seed0", type=int, default=SEED0,
                    help="first evaluation seed (another range checks settings chosen on the default one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import_comfy(cpu=True)
    from hspace_core.demo.clip_world import load_tiny_clip
    from hspace_core.discovery.clip_model import text_cosine

    if args.region_from and args.spatial != "keep":
        ap.error("--region-from needs --spatial keep (an averaged direction has no positions to restrict)")
    tic = time.time()
    parts = set(args.only.split(",")) if args.only else {"follow", "interval", "scan", "methods", "real", "trained"}
    world = World(args.steps, args.cfg, args.branch, args.t_end)
    seeds = [args.seed0 + i for i in range(args.seeds)]
    report: dict = {"seeds": args.seeds, "steps": args.steps, "cfg": args.cfg, "branch": args.branch,
                    "spatial": args.spatial, "region_from": args.region_from}

    cols = tuple(int(v) for v in args.region_cols.split(","))
    report["region_cols"] = list(cols)

    def shaped(direction):  # every direction finder's output, restricted as the main edit is
        return rows_region(direction, args.region_from, cols) if args.region_from else direction

    if "follow" in parts:
        cfgs = [float(c) for c in args.cfgs.split(",")]
        report["prompt_following"] = follow = prompt_following(world, seeds, cfgs)
        print(f"\n### txt2img follows the prompt ({args.seeds} seeds, {args.steps} euler steps)\n")
        print("| prompt | " + " | ".join(f"cfg {c:g}" for c in cfgs) + " |")
        print("|---|" + "---|" * len(cfgs))
        for text in PROMPTS:
            print(f"| {text} | " + " | ".join(f"{follow[c][text]['agree']:.0%}" for c in cfgs) + " |")
        print(f"({time.time() - tic:.0f} s)")

    cos = float(text_cosine(load_tiny_clip(), "face", "smiling face"))
    t_edit = None if args.t_edit == "auto" else int(args.t_edit)
    if "interval" in parts or t_edit is None:
        report["interval"] = iv = measured_t_edit(world, seeds[:4], cos)
        print(f"\n### t_edit: {iv['t_edit']} ({iv['source']}); d(x0, P_t) / final: {iv['curve']}")
        t_edit = iv["t_edit"] if t_edit is None else t_edit
    report["t_edit"] = t_edit

    if parts & {"scan", "methods", "real", "trained"}:
        pp_all = prompt_pair_direction(world, args.direction_seeds, args.spatial)
        pp = shaped(pp_all)
    S = args.strength
    strengths = [0.0, S / 4, S / 2, 3 * S / 4, S]
    if "scan" in parts and args.scan:
        report["scan"] = {}
        print("\n### t_edit scan (prompt-pair direction, Asyrp, strengths up to S)\n\n| t_edit | change at S | same sign | "
              "R^2 | largest drift per unit | PSNR to unedited |\n|---|---|---|---|---|---|")
        for te in [int(v) for v in args.scan.split(",")]:
            if te >= args.t_end:  # an empty interval edits nothing: no row to read
                print(f"| {te} | no edit: t_edit is not below t_end {args.t_end} | | | | |")
                continue
            row = method_row(world, asyrp_sweep(world, pp, strengths, seeds, te), strengths)
            report["scan"][te] = row
            print(f"| {te} | {row['change']:+.3f} | {row['same_sign']:.0%} | {row['r2']:.3f} | "
                  f"{row['drift']:.3f} ({row['drift_attribute']}) | {row['psnr']:.1f} dB |", flush=True)
    if "scan" in parts and args.scan_t_end:
        report["scan_t_end"] = {}
        print(f"\n### t_end scan (prompt-pair direction, Asyrp, t_edit {t_edit}, strengths up to S)\n\n| t_end | "
              "change at S | same sign | R^2 | largest drift per unit | PSNR to unedited | other attributes |\n"
              "|---|---|---|---|---|---|---|")
        for end in [int(v) for v in args.scan_t_end.split(",")]:
            row = method_row(world, asyrp_sweep(world, pp, strengths, seeds, t_edit, t_end=end), strengths)
            report["scan_t_end"][end] = row
            print(f"| {end} | {row['change']:+.3f} | {row['same_sign']:.0%} | {row['r2']:.3f} | "
                  f"{row['drift']:.3f} ({row['drift_attribute']}) | {row['psnr']:.1f} dB | "
                  f"{row['others_abs_change']:.3f} |", flush=True)
    if "methods" in parts:
        rows, images = {}, {}
        part = "" if cols == (0, 64) else f", columns {cols[0]}-{cols[1] - 1}"
        where = f" on rows {args.region_from}-63{part} (Direction Region)" if args.region_from else ""
        images[f"prompt pair{where}, asymmetric (Asyrp)"] = asyrp_sweep(world, pp, strengths, seeds, t_edit)
        keep = pp_all if args.spatial == "keep" else prompt_pair_direction(world, args.direction_seeds, "keep")
        if args.region_from:
            images["prompt pair kept per position on all of h, asymmetric"] = asyrp_sweep(
                world, keep, strengths, seeds, t_edit)
        else:
            if args.spatial != "keep":
                images["prompt pair kept per position, asymmetric"] = asyrp_sweep(world, keep, strengths, seeds,
                                                                                   t_edit)
            images["prompt pair kept per position on the lower half (Direction Region), asymmetric"] = asyrp_sweep(
                world, rows_region(keep, 32), strengths, seeds, t_edit)
        images["prompt pair, symmetric (stock sampler)"] = symmetric_sweep(world, pp, strengths, seeds, t_edit)
        images[f"latent sets{where}, asymmetric"] = asyrp_sweep(
            world, shaped(latent_set_direction(world, args.direction_seeds, args.spatial)), strengths, seeds, t_edit)
        pcs = [shaped(pca_direction(world, 2 * args.direction_seeds, k, args.spatial)) for k in range(3)]
        pc_images = [asyrp_sweep(world, d, strengths, seeds, t_edit) for d in pcs]
        pc_rows = [method_row(world, im, strengths) for im in pc_images]
        best = max(range(3), key=lambda k: abs(pc_rows[k]["change"]))
        sign = 1 if pc_rows[best]["change"] >= 0 else -1
        images[f"PCA component {best}{' (negated)' if sign < 0 else ''}{where}, asymmetric"] = pc_images[best].flip(1) \
            if sign < 0 else pc_images[best]
        weights = [0.0, 0.25, 0.5, 0.75, 1.0]
        images["stock: target prompt blended in, same noise"] = reprompt_sweep(world, weights, seeds)
        starts, maps = ddpm_inversions(world, unedited_latents(world, seeds))
        images["stock: target prompt blended in, edit-friendly inversion"] = reprompt_inverted_sweep(
            world, weights, starts, maps, seeds)
        for name, im in images.items():
            st = weights if name.startswith("stock") else strengths
            rows[name] = method_row(world, im, st)
        report["methods"] = rows
        print(f"\n### \"{SOURCE}\" -> \"{TARGET}\" on {args.seeds} seeds (t_edit {t_edit}, cfg {args.cfg:g}, "
              f"directions {'averaged over' if args.spatial == 'average' else 'kept per position of'} h{where}; "
              f"strengths up to {S:g}, the stock baselines' blend weight up to 1)\n")
        print("| method | smile change at the largest strength (mean +- std) | same sign | R^2 (5 strengths) | "
              "largest drift per unit | PSNR to unedited | other attributes' mean abs change | face prob. |")
        print("|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            print(f"| {name} | {r['change']:+.3f} +- {r['change_std']:.3f} | {r['same_sign']:.0%} | {r['r2']:.3f} | "
                  f"{r['drift']:.3f} ({r['drift_attribute']}) | {r['psnr']:.1f} dB | {r['others_abs_change']:.3f} | "
                  f"{r['face']:.2f} |")
        if args.docs:
            write_docs(world, images, rows)

    if "trained" in parts:
        report["trained"] = trained_rows(world, pp, shaped, seeds, t_edit, args)

    if "real" in parts:
        report["real"] = real = real_images(world, pp, args.seeds, args.real_strength, t_edit, args.real_t_end)
        print(f"\n### Real images: {real['faces']} held-out faces, VAE reconstruction {real['vae_psnr']:.1f} dB\n")
        print("| inversion | strength-0 PSNR to the input (mean / worst) | PSNR to the VAE reconstruction | "
              f"smile change at strength {args.real_strength:g} (cfg 1, interval [{t_edit}, {args.real_t_end}]) | "
              "same sign | largest drift per unit | PSNR edited to strength 0 |")
        print("|---|---|---|---|---|---|---|")
        for name in ("ddim", "ddpm"):
            r = real[name]
            print(f"| {name} | {r['psnr_to_input']:.1f} / {r['psnr_to_input_min']:.1f} dB | {r['psnr_to_vae']:.1f} dB | "
                  f"{r['smile_change']:+.3f} | {r['same_sign']:.0%} | {r['drift']:.3f} | "
                  f"{r['psnr_edited_to_unedited']:.1f} dB |")
    report["seconds"] = round(time.time() - tic)
    print(f"\ntime: {report['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")


def trained_rows(world: World, pp, shaped, seeds, t_edit: int, args) -> dict:
    """The directions trained through the MODEL beside the prompt pair, on the same seeds and settings, each
    shaped as the main edit and swept over calibrated strengths 0..4 (its own raw scale): the latent-set
    direction as the mean difference of h and on the output side, and Asyrp's CLIP training ("face" ->
    "smiling face", the tiny CLIP) on 8 neutral faces."""
    from hspace_core.demo.clip_world import load_tiny_clip
    from hspace_core.demo.faces import render, sample_faces
    from hspace_core.demo.pairs import PAIRS, attribute_sets
    from hspace_core.directions.calibration import calibration_of
    from hspace_core.discovery.shift_training import ShiftSettings
    from nodes.sd.calibration import calibrated_sd
    from nodes.sd.discovery import clip_sd, output_side_sd

    n = args.direction_seeds
    hi, lo = attribute_sets("smile", n, DIRECTION_SEED, *PAIRS["smile"], size=64)
    enc = lambda x: world.sw.encode_images(world.vae, x)  # noqa: E731
    source = world.cond(SOURCE)
    settings = ShiftSettings(iterations=args.trained_iterations, seed=0)
    tic = time.time()
    made = {"prompt pair": pp,
            "latent sets, mean difference of h": shaped(latent_set_direction(world, n, args.spatial)),
            "latent sets, output side": shaped(output_side_sd(world.model, source, enc(hi), enc(lo), steps=args.steps,
                                                              t_edit=t_edit, t_end=args.t_end, settings=settings)),
            "CLIP (Asyrp's loss through the VAE)": shaped(clip_sd(
                world.model, world.vae, source, enc(render(sample_faces(n, DIRECTION_SEED), 64)), load_tiny_clip(),
                "face", "smiling face", steps=args.steps, t_edit=t_edit, t_end=args.t_end,
                settings=ShiftSettings(iterations=args.trained_iterations, lr=0.05, seed=0)))}
    print(f"\n### Trained through the MODEL, beside the prompt pair ({len(seeds)} seeds, calibrated strengths 0..4; "
          f"made in {time.time() - tic:.0f} s)\n\n| direction | raw per calibrated unit | smile change at 4 | same sign | "
          "R^2 | largest drift per unit | PSNR to unedited |\n|---|---|---|---|---|---|---|")
    strengths = [0.0, 1.0, 2.0, 3.0, 4.0]
    rows = {}
    for name, d in made.items():
        d = calibrated_sd(world.model, d, source, t=t_edit, t_end=args.t_end, usable=False)
        scale = calibration_of(d).scale
        row = method_row(world, asyrp_batch(world, d, [s * scale for s in strengths], seeds, t_edit),
                         [s * scale for s in strengths])
        rows[name] = {**row, "raw_per_unit": scale}
        print(f"| {name} | {scale:.3g} | {row['change']:+.3f} | {row['same_sign']:.0%} | {row['r2']:.3f} | "
              f"{row['drift']:.3f} ({row['drift_attribute']}) | {row['psnr']:.1f} dB |", flush=True)
    return rows


def write_docs(world: World, images: dict, rows: dict) -> None:
    from hspace_core.images import strip
    from scripts.plotting import line_plot

    out = ROOT / "docs" / "sd_world"
    out.mkdir(parents=True, exist_ok=True)
    series = {}
    for name, r in rows.items():
        top = max(r["strengths"])
        series[name] = ([s / top for s in r["strengths"]], r["mean_change"])
    line_plot(series, out / "strength_plot.png", title="smile change vs strength (fraction of the largest shown)",
              x_label="strength / largest strength", y_label="probe smile change", width=1100)
    cols = 4
    rows_img = []
    for name, im in images.items():
        strengths = rows[name]["strengths"]  # every sweep starts at 0 (the unedited image) and ends at its largest
        zero, top = strengths.index(0.0), strengths.index(max(strengths))
        rows_img.append([im[j, zero] for j in range(cols)] + [im[j, top] for j in range(cols)])
    grid = strip(rows_img)
    grid.resize((grid.width * 2, grid.height * 2)).save(out / "methods_strip.png")
    (out / "methods_strip.txt").write_text("rows: " + "; ".join(images) + "\ncolumns: seeds 0-3 unedited, then "
                                           "the same seeds at the largest strength\n")


if __name__ == "__main__":
    with torch.inference_mode():  # as ComfyUI's executor runs nodes
        main()
