"""Measuring the paper's claims in the miniature world, with the attribute probe as instrument.

Every measurement edits real images of this world (held-out procedural faces, DDIM-inverted) with
supervised directions found on the model, and reads the attributes back with the probe:

* linearity: the target attribute's mean change vs strength over a sweep, R^2 of a line fit;
* homogeneity: the change on every face with one direction (sign agreement, spread);
* disentanglement: drift of the other attributes per unit of target change;
* compositionality: two directions together vs each alone;
* robustness: the probe's face probability on edited vs unedited images;
* the asymmetric process vs the symmetric one vs shifting eps or x_t by an equivalent amount;
* inversion reconstruction PSNR;
* plain samples: the model's unclamped DDIM samples from noise, read by the probe's face head;
* text-driven directions: the same effects, plus the directional CLIP similarity of the edit
  (cos between E_I(edited) - E_I(unedited) and the text direction dT, with the tiny CLIP).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..directions.base import Direction, mix
from ..editing import edit
from ..inversion import Inversion, invert
from ..interval import EditInterval
from ..model import HSpaceModel
from .faces import CIRCULAR, CONTINUOUS, render, sample_faces
from .pairs import supervised_direction
BINARY = ("glasses", "hat")
READ_ATTRIBUTES = tuple(CONTINUOUS) + BINARY


@dataclass(frozen=True, eq=False)
class World:
    """The model, the probe, inverted test faces and the editing interval, shared by every measurement."""

    model: HSpaceModel
    probe: torch.nn.Module
    inversion: Inversion
    interval: EditInterval
    steps: int


def demo_world(*, n_faces: int = 32, steps: int = 40, interval: EditInterval | None = None) -> World:
    """The world of the embedded demo model and probe, at t_edit = ``DEMO_T_EDIT`` unless given."""
    from ..loading import load_model
    from .demo import DEMO_T_EDIT, demo_model_path
    from .probe import load_probe

    model = load_model(demo_model_path())
    interval = interval or EditInterval(DEMO_T_EDIT, 0, "the demo world's t_edit")
    return make_world(model, load_probe(), n_faces=n_faces, steps=steps, interval=interval)


def make_world(model: HSpaceModel, probe, *, n_faces: int = 32, steps: int = 40, seed: int = 50_000,
               interval: EditInterval) -> World:
    faces = render(sample_faces(n_faces, seed))
    return World(model, probe, invert(model, faces, steps=steps), interval, steps)


def find_direction(world: World, attribute: str, *, n_pairs: int = 32, seed: int = 20_000) -> Direction:
    """Supervised direction for ``attribute`` from controlled pairs of procedural faces."""
    return supervised_direction(world.model, attribute, t_edit=world.interval.t_edit, n_pairs=n_pairs, seed=seed,
                                steps=world.steps)


def read(world: World, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Probe readings of [..., 3, S, S] images (clamped to [-1, 1]), each [...]."""
    lead = images.shape[:-3]
    r = world.probe.read(images.reshape(-1, *images.shape[-3:]).clamp(-1, 1).float())
    return {k: v.reshape(lead) for k, v in r.items()}


def change(after: dict, before: dict, attribute: str) -> torch.Tensor:
    """Signed change of an attribute reading (circular attributes: shortest signed hue difference)."""
    d = after[attribute] - before[attribute]
    if attribute in CIRCULAR:
        d = torch.remainder(d + 0.5, 1.0) - 0.5
    return d


def edits(world: World, direction, strengths, **kw) -> torch.Tensor:
    return edit(world.model, world.inversion, direction, list(strengths), t_edit=world.interval, **kw).images


def reconstruction_psnr(world: World) -> dict:
    rec = edits(world, None, [0.0])[:, 0].clamp(-1, 1)
    mse = ((rec - world.inversion.x_0) / 2).pow(2).mean(dim=(1, 2, 3))
    psnr = -10 * torch.log10(mse)
    return {"mean_db": float(psnr.mean()), "min_db": float(psnr.min()), "steps": world.steps}


def linearity(world: World, direction, attribute: str, strengths=(-1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1)):
    out = edits(world, direction, strengths)  # [N, K, 3, S, S]
    r = read(world, out)
    base = r[attribute][:, list(strengths).index(0)] if 0 in strengths else read(world, world.inversion.x_0)[attribute]
    delta = r[attribute] - base[:, None]
    mean = delta.mean(0)
    slope, r2 = line_fit(strengths, mean)
    return {"strengths": list(strengths), "mean_change": [round(float(v), 4) for v in mean], "slope": slope, "r2": r2}


def line_fit(strengths, mean_change: torch.Tensor) -> tuple[float, float]:
    """(slope, R^2) of the least-squares line through (strength, mean change) [K]."""
    s = torch.tensor([float(v) for v in strengths], dtype=torch.float32)
    mean = mean_change.float()
    slope = float(((s - s.mean()) * (mean - mean.mean())).sum() / (s - s.mean()).pow(2).sum())
    fit = mean.mean() + slope * (s - s.mean())
    r2 = float(1 - (mean - fit).pow(2).sum() / (mean - mean.mean()).pow(2).sum().clamp_min(1e-12))
    return slope, r2


def directional_clip_similarity(clip, before: torch.Tensor, after: torch.Tensor, src: str, trg: str) -> torch.Tensor:
    """cos(normalize(E_I(after) - E_I(before)), dT(src -> trg)) per image [N]; images [N, 3, S, S]."""
    from ..discovery.clip_model import text_direction

    with torch.no_grad():
        d = clip.image_features(after.clamp(-1, 1).float()) - clip.image_features(before.clamp(-1, 1).float())
        return torch.nn.functional.cosine_similarity(d, text_direction(clip, src, trg).unsqueeze(0), dim=-1)


def plain_samples(world: World, n: int, *, seed: int = 60_000) -> dict:
    """The model's own samples: plain DDIM (eta 0, no x0 clamp) from n seeded noises over the world's
    grid, read by the probe: mean face probability, the fraction read as faces (> 0.5), and the
    fraction of pixels outside [-1, 1] before the final clamp."""
    from ..discovery.record import seeded_noise

    x = edit(world.model, seeded_noise(world.model, n, seed), None, 0.0, steps=world.steps, t_edit=0,
             clip_x0=False).images[:, 0]
    face = read(world, x)["face"]
    return {"n": n, "face_prob_mean": float(face.mean()), "faces": float((face > 0.5).float().mean()),
            "out_of_range": float((x.abs() > 1).float().mean())}


def effects(world: World, direction, attribute: str, strength: float = 1.0, *, clip=None,
            texts: tuple[str, str] | None = None, **kw) -> dict:
    """``edit_effects`` of one strength on the world's faces, with the RMS pixel change; with ``clip``
    and ``texts`` (source, target) also the directional CLIP similarity of the edit."""
    sign = 1 if strength >= 0 else -1
    out = edits(world, direction, [0.0, strength], **kw)
    res = {"strength": strength, **edit_effects(read(world, out[:, 0]), read(world, out[:, 1]), attribute, sign),
           "rms_pixel_change": float((out[:, 1] - out[:, 0]).pow(2).mean().sqrt() / 2)}
    if clip is not None and texts is not None:
        sim = directional_clip_similarity(clip, out[:, 0], out[:, 1], *texts) * sign
        res["clip_similarity"] = float(sim.mean())
    return res


def edit_effects(before: dict, after: dict, attribute: str, sign: int = 1) -> dict:
    """What an edit did, from the probe's readings of the same images unedited and edited ([N] each):
    the target's change (mean, spread, range), the share of images it moved the intended way (``sign``),
    every other attribute's mean absolute change per unit of mean absolute target change (drift), and
    the face probability before and after.

    For glasses and hat (probabilities) the target's statistics and the drift count only the images
    the edit can change: those without the attribute for a positive sign, with it for a negative one
    (``faces`` says how many)."""
    keep = torch.ones(before[attribute].shape[0], dtype=torch.bool)
    if attribute in BINARY:
        keep = before[attribute] < 0.5 if sign > 0 else before[attribute] > 0.5
        if not bool(keep.any()):
            keep = torch.ones_like(keep)
    target = change(after, before, attribute)[keep]
    drift = {}
    for other in READ_ATTRIBUTES:
        if other == attribute:
            continue
        d = change(after, before, other)[keep].abs().mean()
        drift[other] = float(d / target.abs().mean().clamp_min(1e-6))
    return {
        "faces": int(keep.sum()),
        "target_mean": float(target.mean()), "target_std": float(target.std()) if len(target) > 1 else 0.0,
        "target_min": float(target.min()), "target_max": float(target.max()),
        "same_sign": float((target * sign > 0).float().mean()),
        "drift_per_unit": drift,
        "face_prob_edited": float(after["face"].mean()), "face_prob_unedited": float(before["face"].mean()),
        "face_prob_edited_min": float(after["face"].min()),
    }


def compositionality(world: World, a, b, attr_a: str, attr_b: str, strength: float = 1.0) -> dict:
    both = mix([(a, 1.0), (b, 1.0)])
    res = {}
    base = read(world, edits(world, None, [0.0])[:, 0])
    for label, d in (("a", a), ("b", b), ("both", both)):
        r = read(world, edits(world, d, [strength])[:, 0])
        res[label] = {attr_a: float(change(r, base, attr_a).mean()), attr_b: float(change(r, base, attr_b).mean())}
    return {"attributes": [attr_a, attr_b], "changes": res,
            "ratio_a": res["both"][attr_a] / res["a"][attr_a] if res["a"][attr_a] else float("nan"),
            "ratio_b": res["both"][attr_b] / res["b"][attr_b] if res["b"][attr_b] else float("nan")}


def variants(world: World, direction, attribute: str, strength: float = 1.0) -> dict:
    return {v: effects(world, direction, attribute, strength, variant=v)
            for v in ("asymmetric", "symmetric", "eps_shift", "xt_shift")}



def h_share(world: World, attribute: str, t: int, *, n: int = 16, seed: int = 123) -> dict:
    """How much of an attribute h carries at timestep t: for n controlled pairs (the same face with the
    attribute high and low, noised with the same eps), the share of the pair's difference in the
    probe's reading of P_t that appears when the low face's decoder gets the high face's h
    (its skips unchanged): 1 = h alone decides the attribute, 0 = the skips do."""
    from ..sampling import predict_x0
    from .pairs import PAIRS, attribute_sets

    hi, lo = attribute_sets(attribute, n, seed, *PAIRS[attribute])
    model = world.model
    a = model.schedule.alpha_bar_at(t, like=hi)
    eps = torch.randn(hi.shape, generator=torch.Generator().manual_seed(seed))
    x_hi, x_lo = a.sqrt() * hi + (1 - a).sqrt() * eps, a.sqrt() * lo + (1 - a).sqrt() * eps
    tt = torch.full((n,), int(t), dtype=torch.long)
    with torch.inference_mode():
        e_hi, e_lo = model.encode(x_hi, tt), model.encode(x_lo, tt)

        def reading(enc, h, x):
            return read(world, predict_x0(x, model.decode(enc, h).eps, a))[attribute].mean()

        low, swapped, high = reading(e_lo, e_lo.h, x_lo), reading(e_lo, e_hi.h, x_lo), reading(e_hi, e_hi.h, x_hi)
    return {"t": int(t), "low": float(low), "low_with_high_h": float(swapped), "high": float(high),
            "share": float((swapped - low) / (high - low)) if float(high - low) else float("nan")}
