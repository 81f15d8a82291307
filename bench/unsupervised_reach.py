"""What the top principal components of h can reach: how much of each named direction lies in the subspace that
PCA and ICA choose from, on the pixel demo world and the miniature SD world.

    python bench/unsupervised_reach.py [--worlds pixel,sd] [--samples 512] [--json docs/unsupervised/reach.json]

The rows are those ``bench/unsupervised.py`` gives ICA (seed 0): the pixel world's 512 model samples, h at the
23 edited steps of the 40-step grid (t >= 435), one row each; the SD world's 512 trajectories of "a face",
h kept per position at the recorded timesteps of [t_edit, t_end]. Their principal axes come from
``ica.span``. The named directions are made with labels or words: the pixel world's four shipped supervised
directions (mean differences of h between two labelled face sets, per step) and, on the SD world, the prompt
pairs smile, glasses and hat and the smiling / non-smiling latent sets (the pack's own nodes, 16 seeds, spatial
keep), each written as one row over the same steps. For each: the share of its squared norm inside the top
8 / 16 / 32 / 64 principal axes, beside that of a random direction inside the rows' span (m / rank). ICA
whitens 16 for K = 8 (32 for K = 16): an attribute whose direction lies mostly outside can be found by no
rotation of them.

The SD world's second table asks the same of the directions h's changes act through most: the top
eigenvectors of G = sum J^T J over 8 unlabelled VAE-encoded faces forward-noised to 5 timesteps of the
edited interval, J = d x0 / d h the Jacobian of the predicted x0 in h (one column per element of h, by
forward differences of one h-RMS through ``effects`` of the contrastive hosts, the same x0 changes that
method and independent effects compare). A named direction here is its per-step directions (each of unit
norm) averaged, since one shift of h acts at every step. A direction with little share in both is neither
where h varies nor where a change of h does most. (Not on the pixel world: its h has 8192 elements, and the
forward differences would take about an hour on 2 cores; the pixel world's goal is met inside the principal
axes.)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import merge_json  # noqa: E402

TOPS = (8, 16, 32, 64)
GAIN_FACES, GAIN_SEED, GAIN_STEPS = 8, 4321, 5


def gain_timesteps(timesteps: list[int]) -> list[int]:
    """``GAIN_STEPS`` of the edited timesteps, spread evenly."""
    ts = sorted(timesteps)
    return [ts[round(i * (len(ts) - 1) / (GAIN_STEPS - 1))] for i in range(GAIN_STEPS)]


def shares(rows: list[torch.Tensor], named: dict[str, torch.Tensor]) -> dict:
    """For rows given as per-step column blocks ([N, D_i] each) and named directions [D] (the blocks' layout):
    {name: [share of |d|^2 in the top m principal axes for m in TOPS]}, and "random (in the span)"."""
    from hspace_core.discovery.ica import span

    coords, lift = span(rows)
    r = coords.shape[1]
    axes = lift(torch.eye(r, dtype=torch.float64)[:max(TOPS)]).double()
    axes = axes / axes.norm(dim=1, keepdim=True)  # the span's orthonormal basis: the principal axes in order
    out = {}
    for name, d in named.items():
        along = (axes @ d.double()).pow(2)
        out[name] = [round(float(along[:m].sum() / d.double().pow(2).sum()), 3) for m in TOPS]
    out["random (in the span)"] = [round(m / r, 3) for m in TOPS]
    variance = coords.pow(2).sum(0)
    out["variance of the rows"] = [round(float(variance[:m].sum() / variance.sum()), 3) for m in TOPS]
    return out


def gain_eigenvectors(effects, n: int, timesteps: list[int], h_shape: tuple, x_shape: tuple, *,
                      batch: int = 64, seed: int = 5) -> torch.Tensor:
    """The eigenvectors [D, D] (columns, largest eigenvalue first) of G = sum over the n rows and ``timesteps``
    of J^T J, J [P, D] the change of x0 per unit change of each of h's D elements: ``effects(rows, t, noise,
    dh [k, *h_shape]) -> [k, n, P]`` (``contrastive.HostEffects.effects``) at steps of one RMS of h."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(h_shape)
    rows = torch.arange(n)
    gram = torch.zeros(d, d, dtype=torch.float64)
    for t in timesteps:
        noise = torch.randn((n, *x_shape), generator=g)
        step = float(effects.h(rows, t, noise).float().pow(2).mean().sqrt())
        columns = []
        for start in range(0, d, batch):
            idx = torch.arange(start, min(d, start + batch))
            dh = torch.zeros(len(idx), d)
            dh[torch.arange(len(idx)), idx] = step
            columns.append(effects.effects(rows, t, noise, dh.reshape(len(idx), *h_shape)).double().cpu() / step)
        jac = torch.cat(columns).permute(1, 2, 0).reshape(-1, d)          # [n P, D]
        gram += jac.T @ jac
    return torch.linalg.eigh(gram)[1].flip(1)


def gain_shares(axes: torch.Tensor, named: dict[str, torch.Tensor]) -> dict:
    """{name: [share of |d|^2 in the top m gain eigenvectors for m in TOPS]} and a random direction's."""
    out = {}
    for name, d in named.items():
        along = (axes.T @ d.double()).pow(2)
        out[name] = [round(float(along[:m].sum() / d.double().pow(2).sum()), 3) for m in TOPS]
    out["random"] = [round(m / axes.shape[0], 3) for m in TOPS]
    return out


def averaged(values) -> torch.Tensor:
    """A per-step direction as one shift: its steps, each of unit norm, averaged ([D])."""
    return torch.stack([v.flatten() / v.norm() for v in values]).mean(0)


def pixel_world(samples: int) -> dict:
    from hspace_core.demo.demo import DEMO_T_EDIT, demo_model_path
    from hspace_core.directions.io import load_direction
    from hspace_core.loading import load_model
    from hspace_core.discovery.record import edit_steps, record_h, seeded_noise
    from hspace_core.schedule import asyrp_timesteps

    model = load_model(demo_model_path())
    grid = asyrp_timesteps(40, model.schedule.num_timesteps - 1)
    k_edit = edit_steps(grid, DEMO_T_EDIT)
    with torch.inference_mode():
        edited = record_h(model, seeded_noise(model, samples, 0), grid[len(grid) - k_edit:])  # descending t
    walked = [int(t) for t in grid[len(grid) - k_edit:].flip(0)]
    named = {}
    for name in ("demo_smile", "demo_eyes", "demo_glasses", "demo_width"):
        d = load_direction(ROOT / "hspace_core" / "data" / "directions" / f"{name}.safetensors")
        per_t = {int(t): v for t, v in zip(d.timesteps, d.values)}
        named[name] = torch.cat([per_t[t].flatten() for t in walked])
    return {"principal axes": shares([h.flatten(1) for h in edited], named)}


def sd_world(samples: int) -> dict:
    from hspace_sdworld.comfy_import import import_comfy

    import_comfy(cpu=True)
    import bench.sd_claims as sc
    from bench.calibration import SD_DIRECTIONS
    from hspace_core.discovery.host import Recording, by_timestep
    from hspace_core.demo.faces import render, sample_faces
    from hspace_sdworld.configs import RECOMMENDED as R
    from nodes.sd.discovery import SDHost
    from nodes.sd.trainable import run_in_guider, trainable

    world = sc.World(R["steps"], R["cfg"], R["branch"], R["t_end"])
    sd = sc.sd_nodes()
    with torch.inference_mode():
        _, rec, _ = sd.record_trajectories(world.model, world.cond(sc.SOURCE),
                                           sd.sigmas_down_to(world.model, world.sigmas, R["t_edit"]), samples,
                                           sc.DIRECTION_SEED, 64, 64, recording=Recording("keep", R["t_edit"], R["t_end"]))
        recorded = by_timestep(rec.records[0])
        ts = sorted(recorded, reverse=True)
        named, averages = {}, {}
        for name, (_, target, _) in SD_DIRECTIONS.items():
            if target == "latent sets":
                d = sc.latent_set_direction(world, 16, "keep")
            else:
                d = sd.DirectionFromPrompts().make(world.model, world.cond(sc.SOURCE), world.cond(target), world.sigmas,
                                                   16, sc.DIRECTION_SEED, 64, 64, "keep", name)[0]
            per_t = {int(t): v for t, v in zip(d.timesteps, d.values)}
            named[name] = torch.cat([per_t[t].flatten() for t in ts])
            averages[name] = averaged(d.values)
        faces = world.sw.encode_images(world.vae, render(sample_faces(GAIN_FACES, GAIN_SEED), 64))
    h_shape = tuple(recorded[ts[0]].shape[1:])
    _, _, trainable_model = trainable(world.model)

    def measure(denoise, x0, model_sampling):
        with torch.no_grad():
            return gain_eigenvectors(SDHost(denoise, x0, model_sampling), GAIN_FACES, gain_timesteps(ts), h_shape,
                                     tuple(x0.shape[1:]))

    axes = run_in_guider(trainable_model, world.cond(sc.SOURCE), faces, measure)
    return {"principal axes": shares([recorded[t].flatten(1) for t in ts], named), "gain": gain_shares(axes, averages)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", default="pixel,sd")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for world in args.worlds.split(","):
        tic = time.time()
        results[world] = (pixel_world if world == "pixel" else sd_world)(args.samples)
        print(f"\n### {world} world ({args.samples} rows; {time.time() - tic:.0f} s)")
        for table, title in (("principal axes", "principal axes of h"), ("gain", "eigenvectors of G = sum J^T J")):
            if table not in results[world]:
                continue
            print("\n| direction | " + " | ".join(f"in the top {m} {title}" for m in TOPS) + " |")
            print("|---|" + "---|" * len(TOPS))
            for name, row in results[world][table].items():
                print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    if args.json:
        merge_json(args.json, {"samples": args.samples, "tops": list(TOPS), "worlds": results})


if __name__ == "__main__":
    main()
