"""The paper's claims, measured on the miniature world (embedded demo model + attribute probe).

    python bench/claims.py [--faces 16] [--steps 40] [--strength 2] [--text-strength 1] [--threads 2] [--json out.json]

Prints markdown tables; every number comes from this run. Supervised directions are mean
differences found on the model from controlled pairs of procedural faces (other seeds than the
shipped ones); text directions are the shipped ``text_*`` DeltaBlocks, trained with the embedded tiny
CLIP (``python -m hspace_core demo-directions``); PCA directions are components of h over the model's
own samples. Test faces are held-out procedural faces, DDIM-inverted. The editing interval is the
demo world's t_edit (DEMO_T_EDIT).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_core import EditInterval, invert_ddpm, load_direction, measure_interval  # noqa: E402
from hspace_core.demo import claims  # noqa: E402
from hspace_core.demo.clip_world import load_tiny_clip  # noqa: E402
from hspace_core.demo.demo import DEMO_ROWS, demo_directions_dir  # noqa: E402
from hspace_core.demo.pairs import PAIRS  # noqa: E402
from hspace_core.discovery.clip_model import text_cosine  # noqa: E402
from hspace_core.discovery.pca import pca_directions  # noqa: E402

# the text of each attribute's edit, for the directional CLIP similarity of every row
TEXTS = {"smile": ("face", "smiling face"), "glasses": ("face", "face with glasses"), "hat": ("face", "face with a hat"),
         "face_width": ("face", "wide face"), "eye_size": ("face", "face with big eyes")}

# attributes a PCA row may be named for: the ones read on a linear scale
LINEAR = ("smile", "eye_size", "face_width", "skin_tone", "head_tilt", "glasses", "hat")


def verdict(ok: bool) -> str:
    return "holds" if ok else "does NOT hold"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--attribute", default="smile", choices=list(PAIRS))
    ap.add_argument("--second", default="face_width", choices=list(PAIRS), help="for compositionality")
    ap.add_argument("--strength", type=float, default=2.0, help="the strength unit S of supervised directions")
    ap.add_argument("--text-strength", type=float, default=1.0, help="strength of the text-trained DeltaBlocks")
    ap.add_argument("--pca-strength", type=float, default=2.0, help="strength of PCA directions (standard deviations)")
    ap.add_argument("--samples", type=int, default=32, help="plain samples from noise read by the probe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()

    world = claims.demo_world(n_faces=args.faces, steps=args.steps)
    interval = world.interval
    A, B, S = args.attribute, args.second, args.strength
    da, db = claims.find_direction(world, A), claims.find_direction(world, B)
    sweep = [S * k / 4 for k in range(-4, 5)]
    report = {"interval": [interval.t_edit, interval.t_boost, interval.source], "faces": args.faces,
              "steps": args.steps, "attributes": [A, B], "strength": S}
    report["psnr"] = claims.reconstruction_psnr(world)
    report["samples"] = claims.plain_samples(world, args.samples)
    report["linearity"] = claims.linearity(world, da, A, strengths=sweep)
    report["linearity_b"] = claims.linearity(world, db, B, strengths=sweep)
    report["a+"] = claims.effects(world, da, A, S)
    report["a-"] = claims.effects(world, da, A, -S)
    report["a++"] = claims.effects(world, da, A, 2 * S)
    report["composition"] = claims.compositionality(world, da, db, A, B, strength=S)
    report["variants"] = claims.variants(world, da, A, S)

    clip = load_tiny_clip()
    # the attribute at its own t_edit: the official code scales the edit threshold by the cosine of the
    # edit's two texts (asyrp.md 1.5); here measured on the model with the tiny CLIP's cosine
    cos_a = text_cosine(clip, *TEXTS[A])
    own = measure_interval(world.model, steps=args.steps, text_cosine=cos_a).interval
    world_own = replace(world, interval=EditInterval(own.t_edit, 0, own.source))
    da_own = claims.find_direction(world_own, A)
    report["own_interval"] = {"text_cosine": cos_a, "t_edit": own.t_edit, "source": own.source,
                              "linearity": claims.linearity(world_own, da_own, A, strengths=sweep),
                              "a+": claims.effects(world_own, da_own, A, S), "a-": claims.effects(world_own, da_own, A, -S)}

    rows, supervised = {}, {}
    for attribute in ("smile", "face_width", "eye_size", "glasses", "hat"):
        d = da if attribute == A else db if attribute == B else claims.find_direction(world, attribute)
        supervised[attribute] = d
        rows[f"supervised {attribute}"] = (attribute, claims.effects(world, d, attribute, S, clip=clip,
                                                                     texts=TEXTS[attribute]))
    for row in DEMO_ROWS:
        if row.source == "text":
            d = load_direction(demo_directions_dir() / f"{row.name}.safetensors")
            rows[f"text \"{row.texts[0]}\" -> \"{row.texts[1]}\""] = (
                row.attribute, claims.effects(world, d, row.attribute, args.text_strength, clip=clip, texts=row.texts))
    for j, d in enumerate(pca_directions(world.model, 64, 2, steps=args.steps, t_edit=interval.t_edit)):
        out = claims.edits(world, d, [0.0, args.pca_strength])
        before, after = claims.read(world, out[:, 0]), claims.read(world, out[:, 1])
        best = max(LINEAR, key=lambda a: float(claims.change(after, before, a).mean().abs()))
        rows[f"PCA component {j}"] = (best, claims.effects(world, d, best, args.pca_strength))
    report["directions"] = {k: {"attribute": a, **e} for k, (a, e) in rows.items()}
    ddpm_world = replace(world, inversion=invert_ddpm(world.model, world.inversion.x_0, steps=args.steps))
    regen = claims.edits(ddpm_world, None, [0.0])[:, 0]
    report["ddpm_inversion"] = {"max_error": float((regen - world.inversion.x_0).abs().max()), "edits": {}}
    for attribute in (B, "glasses"):
        report["ddpm_inversion"]["edits"][attribute] = {
            "ddim": rows[f"supervised {attribute}"][1],
            "ddpm": claims.effects(ddpm_world, supervised[attribute], attribute, S)}
    report["h_share"] = {a: [claims.h_share(world, a, t) for t in (interval.t_edit, (interval.t_edit + 999) // 2)]
                         for a in PAIRS}
    report["seconds"] = time.perf_counter() - tic

    lin, lin_b = report["linearity"], report["linearity_b"]
    sp, sm, s2 = report["a+"], report["a-"], report["a++"]
    comp, var, smp = report["composition"], report["variants"], report["samples"]
    worst_drift = max(sp["drift_per_unit"].items(), key=lambda kv: kv[1])
    print(f"Miniature world: {args.faces} held-out faces, {args.steps} steps, t_edit {interval.t_edit}, "
          f"t_boost {interval.t_boost} ({interval.source}); directions: supervised mean differences; "
          f"strength unit S = {S:g}\n")
    print("| claim | measurement | result |")
    print("|---|---|---|")
    print(f"| inversion | reconstruction PSNR (no edit) | {report['psnr']['mean_db']:.1f} dB mean, "
          f"{report['psnr']['min_db']:.1f} dB worst: {verdict(report['psnr']['mean_db'] >= 34)} (target >= 34 dB) |")
    print(f"| samples | {smp['n']} plain DDIM samples from noise (eta 0, no clamp): read as faces by the probe | "
          f"{smp['faces']:.0%} (mean face probability {smp['face_prob_mean']:.3f}; {smp['out_of_range']:.2%} of "
          f"pixels outside [-1, 1]): {verdict(smp['faces'] >= 0.9)} |")
    for name, l in ((A, lin), (B, lin_b)):
        print(f"| linearity | {name} change vs strength -S..S (9 strengths): slope {l['slope']:.4f} per unit, "
              f"change at S {l['mean_change'][-1]:+.3f} | R^2 {l['r2']:.3f}: "
              f"{verdict(l['r2'] >= 0.95 and abs(l['mean_change'][-1]) > 0.05)} |")
    print(f"| homogeneity | one {A} direction on {args.faces} faces at +S / -S: same sign | "
          f"{sp['same_sign']:.0%} / {sm['same_sign']:.0%}; change {sp['target_mean']:+.3f} +- {sp['target_std']:.3f} "
          f"(min {sp['target_min']:+.3f}): {verdict(min(sp['same_sign'], sm['same_sign']) >= 0.9)} |")
    oi = report["own_interval"]
    op, om, ol = oi["a+"], oi["a-"], oi["linearity"]
    own_drift = max(op["drift_per_unit"].items(), key=lambda kv: kv[1])
    print(f"| homogeneity at {A}'s own t_edit | t_edit {oi['t_edit']} (the official rule: edit threshold x "
          f"cos(\"{TEXTS[A][0]}\", \"{TEXTS[A][1]}\") = {oi['text_cosine']:.3f}, tiny CLIP); {A} direction found "
          f"there, on the same faces at +S / -S: same sign | {op['same_sign']:.0%} / {om['same_sign']:.0%}; change "
          f"{op['target_mean']:+.3f} / {om['target_mean']:+.3f} (min {op['target_min']:+.3f}); R^2 {ol['r2']:.3f}; "
          f"largest drift {own_drift[1]:.3f} ({own_drift[0]}): "
          f"{verdict(min(op['same_sign'], om['same_sign']) >= 0.9 and ol['r2'] >= 0.95 and own_drift[1] <= 0.15)} |")
    print(f"| disentanglement | drift of other attributes per unit {A} change (largest: {worst_drift[0]}) | "
          f"{worst_drift[1]:.3f}: {verdict(worst_drift[1] <= 0.15)} (target <= 0.15) |")
    ca, cb = comp["changes"]["a"], comp["changes"]["b"]
    cboth = comp["changes"]["both"]
    print(f"| compositionality | {A} + {B} together vs alone | {A} {cboth[A]:+.3f} vs "
          f"{ca[A]:+.3f} ({comp['ratio_a']:.2f}x), {B} {cboth[B]:+.3f} vs {cb[B]:+.3f} "
          f"({comp['ratio_b']:.2f}x): {verdict(0.7 < comp['ratio_a'] < 1.3 and 0.7 < comp['ratio_b'] < 1.3)} |")
    print(f"| robustness | probe face probability edited vs unedited (S / 2S) | {sp['face_prob_edited']:.3f} / "
          f"{s2['face_prob_edited']:.3f} vs {sp['face_prob_unedited']:.3f} (worst {s2['face_prob_edited_min']:.3f}): "
          f"{verdict(s2['face_prob_edited'] > 0.9)} |")
    for v in ("asymmetric", "symmetric", "eps_shift", "xt_shift"):
        e = var[v]
        print(f"| process: {v} | {A} change at strength S, same sign, face prob., largest drift | "
              f"{e['target_mean']:+.3f}, {e['same_sign']:.0%}, {e['face_prob_edited']:.3f}, "
              f"{max(e['drift_per_unit'].values()):.3f} |")
    a = var["asymmetric"]["target_mean"]
    others = {v: var[v]["target_mean"] for v in ("symmetric", "eps_shift", "xt_shift")}
    print(f"| asymmetric wins | the asymmetric change is at least 2x each other process's | "
          f"{verdict(all(abs(a) >= 2 * abs(o) for o in others.values()))} "
          f"({', '.join(f'{k} {abs(a) / max(abs(o), 1e-6):.1f}x' for k, o in others.items())}) |")

    print(f"\nDirections on the same {args.faces} faces (supervised at S = {S:g}, text at {args.text_strength:g}, "
          f"PCA at {args.pca_strength:g} std; PCA's attribute is the one it moves most, hues left out). "
          "Directional CLIP similarity: cos(E_I(edited) - E_I(unedited), dT) with the tiny CLIP and the "
          "attribute's text.\n")
    print("| direction | attribute | change (mean +- std; glasses / hat: faces without them) | same sign | "
          "largest drift per unit | CLIP similarity | face prob. |")
    print("|---|---|---|---|---|---|---|")
    for name, r in report["directions"].items():
        drift = max(r["drift_per_unit"].items(), key=lambda kv: kv[1])
        sim = f"{r['clip_similarity']:+.3f}" if "clip_similarity" in r else "-"
        print(f"| {name} | {r['attribute']} | {r['target_mean']:+.3f} +- {r['target_std']:.3f} ({r['faces']} faces) | "
              f"{r['same_sign']:.0%} | "
              f"{drift[1]:.3f} ({drift[0]}) | {sim} | {r['face_prob_edited']:.3f} |")
    di = report["ddpm_inversion"]
    print(f"\nEdit-friendly DDPM inversion vs DDIM inversion, the same faces and directions at S = {S:g} "
          f"(strength-0 regeneration from the DDPM inversion: max |error| {di['max_error']:.1e}, images in [-1, 1]):\n")
    print("| direction | inversion | change (mean +- std) | same sign | largest drift per unit | face prob. |")
    print("|---|---|---|---|---|---|")
    for attribute, both in di["edits"].items():
        for kind in ("ddim", "ddpm"):
            r = both[kind]
            drift = max(r["drift_per_unit"].items(), key=lambda kv: kv[1])
            print(f"| supervised {attribute} | {kind} | {r['target_mean']:+.3f} +- {r['target_std']:.3f} "
                  f"({r['faces']} faces) | {r['same_sign']:.0%} | {drift[1]:.3f} ({drift[0]}) | "
                  f"{r['face_prob_edited']:.3f} |")
    print("\nWhat h carries: the share of a controlled pair's difference (probe reading of P_t) that appears "
          "when the low face's decoder gets the high face's h, skips unchanged (16 pairs):\n")
    print("| attribute | " + " | ".join(f"share at t = {r['t']}" for r in next(iter(report["h_share"].values())))
          + " |")
    print("|---|---|---|")
    for a, rs in report["h_share"].items():
        print(f"| {a} | " + " | ".join(f"{r['share']:.2f} ({r['low']:+.2f} -> {r['low_with_high_h']:+.2f}, high "
                                         f"{r['high']:+.2f})" for r in rs) + " |")
    print(f"\n({report['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
