"""Direction discovery on the embedded demo model, read back by the attribute probe.

For supervised directions (mean difference and classifier normal, from controlled pairs of
procedural faces), the first PCA components of h over the model's own samples, and the first two
Jacobian components of every face (its own directions, found at t_edit), edits 16 held-out faces at
strength +S and -S (default 2; the Jacobian ones at +-0.3, unit |h|) and prints which attributes the
probe sees change (mean change, and the fraction of faces changing in the direction of the mean).

    python bench/discovery.py [--faces 16] [--pca-samples 128] [--components 4] [--strength 2] [--threads 2]
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
from hspace_core.demo.pairs import PAIRS, attribute_sets  # noqa: E402
from hspace_core.discovery.jacobian import jacobian_directions  # noqa: E402
from hspace_core.discovery.pca import pca_directions  # noqa: E402
from hspace_core.discovery.supervised import classifier_normal  # noqa: E402

SHOW = ("smile", "eye_size", "face_width", "skin_tone", "head_tilt", "hair_hue", "background_hue", "glasses", "hat")


def profile(world, direction, strength=1.0) -> dict:
    out = claims.edits(world, direction, [0.0, strength, -strength])
    base, up, down = (claims.read(world, out[:, i]) for i in range(3))
    res = {}
    for a in SHOW:
        d_up, d_down = claims.change(up, base, a), claims.change(down, base, a)
        mean = float(d_up.mean())
        res[a] = {"up": mean, "down": float(d_down.mean()),
                  "consistent": float(((d_up * (1 if mean >= 0 else -1)) > 0).float().mean())}
    res["face_prob"] = float(up["face"].mean())
    return res


def per_image_profile(world, directions, strength) -> dict:
    """``profile`` for per-image directions: face i is edited with its own directions[i]. A singular
    vector's sign is a convention (its largest h entry positive), not a meaning, so besides the mean
    change the mean absolute change (``mean_abs``) says how much the component moves an attribute."""
    from dataclasses import replace

    from hspace_core import edit

    ups, downs, face = {a: [] for a in SHOW}, {a: [] for a in SHOW}, []
    inv = world.inversion
    for i, d in enumerate(directions):
        one = replace(inv, x_T=inv.x_T[i:i + 1], x_0=inv.x_0[i:i + 1], preprocessing=inv.preprocessing[i:i + 1])
        out = edit(world.model, one, d, [0.0, strength, -strength], t_edit=world.interval).images
        base, up, down = (claims.read(world, out[:, j]) for j in range(3))
        for a in SHOW:
            ups[a].append(claims.change(up, base, a))
            downs[a].append(claims.change(down, base, a))
        face.append(up["face"])
    res = {}
    for a in SHOW:
        u, dn = torch.cat(ups[a]), torch.cat(downs[a])
        mean = float(u.mean())
        res[a] = {"up": mean, "down": float(dn.mean()), "mean_abs": float(u.abs().mean()),
                  "consistent": float(((u * (1 if mean >= 0 else -1)) > 0).float().mean())}
    res["face_prob"] = float(torch.cat(face).mean())
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=int, default=16)
    ap.add_argument("--pca-samples", type=int, default=128)
    ap.add_argument("--components", type=int, default=4)
    ap.add_argument("--strength", type=float, default=2.0, help="edit strength of the readings (see README)")
    ap.add_argument("--jacobian-strength", type=float, default=0.3,
                    help="strength of the per-image Jacobian directions (unit: |h|)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tic = time.perf_counter()
    world = claims.demo_world(n_faces=args.faces)
    model, interval = world.model, world.interval
    directions = {"supervised face width (mean difference)": claims.find_direction(world, "face_width"),
                  "supervised eye size (mean difference)": claims.find_direction(world, "eye_size"),
                  "supervised glasses (mean difference)": claims.find_direction(world, "glasses")}
    pos, neg = attribute_sets("face_width", 32, 20_000, *PAIRS["face_width"])
    directions["supervised face width (classifier normal)"] = classifier_normal(model, pos, neg, t_edit=interval.t_edit)
    for j, d in enumerate(pca_directions(model, args.pca_samples, args.components, t_edit=interval.t_edit)):
        directions[f"PCA component {j}"] = d
    report = {name: profile(world, d, args.strength) for name, d in directions.items()}
    per_face = [jacobian_directions(model, world.inversion.x_0[i:i + 1], 2, t_edit=interval.t_edit,
                                    steps=world.steps) for i in range(args.faces)]
    for j in range(2):
        report[f"Jacobian component {j} (per face, at +-{args.jacobian_strength:g})"] = per_image_profile(
            world, [ds[j] for ds in per_face], args.jacobian_strength)
    print(f"demo model, {args.faces} held-out faces, t_edit {interval.t_edit}; change read by the probe at "
          f"strength +{args.strength:g} / -{args.strength:g} (in brackets: faces changing with the mean)\n")
    print("| direction | " + " | ".join(SHOW) + " | face prob. |")
    print("|---|" + "---|" * (len(SHOW) + 1))
    for name, r in report.items():
        cells = [f"{r[a]['up']:+.2f} / {r[a]['down']:+.2f} ({r[a]['consistent']:.0%})"
                 + (f", abs {r[a]['mean_abs']:.2f}" if "mean_abs" in r[a] else "") for a in SHOW]
        print(f"| {name} | " + " | ".join(cells) + f" | {r['face_prob']:.2f} |")
    print(f"\n(hues in turns, 1 = 360 degrees; {time.perf_counter() - tic:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
