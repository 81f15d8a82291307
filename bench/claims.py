"""The paper's claims, measured on the miniature world (embedded demo model + attribute probe).

    python bench/claims.py [--faces 32] [--steps 40] [--threads 2] [--json out.json]

Prints a markdown table; every number comes from this run. Directions are supervised mean
differences found on the model from controlled pairs of procedural faces; test faces are held-out
procedural faces, DDIM-inverted. The editing interval is the demo world's t_edit (DEMO_T_EDIT).
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

from hspace_core.demo import claims  # noqa: E402
from hspace_core.demo.pairs import PAIRS  # noqa: E402


def verdict(ok: bool) -> str:
    return "holds" if ok else "does NOT hold"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=32)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--attribute", default="face_width", choices=list(PAIRS))
    ap.add_argument("--second", default="eye_size", choices=list(PAIRS), help="for compositionality")
    ap.add_argument("--strength", type=float, default=10.0, help="the strength unit S of the measurements")
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
    report["linearity"] = claims.linearity(world, da, A, strengths=sweep)
    report["linearity_b"] = claims.linearity(world, db, B, strengths=sweep)
    report["smile_linearity"] = claims.linearity(world, claims.find_direction(world, "smile"), "smile", strengths=sweep)
    report["a+"] = claims.effects(world, da, A, S)
    report["a-"] = claims.effects(world, da, A, -S)
    report["a++"] = claims.effects(world, da, A, 2 * S)
    report["composition"] = claims.compositionality(world, da, db, A, B, strength=S)
    report["variants"] = claims.variants(world, da, A, S)
    report["seconds"] = time.perf_counter() - tic

    lin, lin_b, lin_s = report["linearity"], report["linearity_b"], report["smile_linearity"]
    sp, sm, s2 = report["a+"], report["a-"], report["a++"]
    comp = report["composition"]
    var = report["variants"]
    worst_drift = max(sp["drift_per_unit"].items(), key=lambda kv: kv[1])
    print(f"Miniature world: {args.faces} held-out faces, {args.steps} steps, t_edit {interval.t_edit}, "
          f"t_boost {interval.t_boost} ({interval.source}); directions: supervised mean differences; "
          f"strength unit S = {S:g}\n")
    print("| claim | measurement | result |")
    print("|---|---|---|")
    print(f"| inversion | reconstruction PSNR (no edit) | {report['psnr']['mean_db']:.1f} dB mean, "
          f"{report['psnr']['min_db']:.1f} dB worst |")
    for name, l in ((A, lin), (B, lin_b), ("smile", lin_s)):
        print(f"| linearity | {name} change vs strength -S..S (9 strengths): slope {l['slope']:.4f} per unit, "
              f"change at S {l['mean_change'][-1]:+.3f} | R^2 {l['r2']:.3f}: "
              f"{verdict(l['r2'] > 0.95 and abs(l['mean_change'][-1]) > 0.05)} |")
    print(f"| homogeneity | one {A} direction on {args.faces} faces at +S / -S: same sign | "
          f"{sp['same_sign']:.0%} / {sm['same_sign']:.0%}; change {sp['target_mean']:+.3f} +- {sp['target_std']:.3f} "
          f"(min {sp['target_min']:+.3f}): {verdict(min(sp['same_sign'], sm['same_sign']) >= 0.9)} |")
    print(f"| disentanglement | drift of other attributes per unit {A} change (largest: {worst_drift[0]}) | "
          f"{worst_drift[1]:.3f}: {verdict(worst_drift[1] < 0.3)} |")
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
    print(f"\n({report['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
