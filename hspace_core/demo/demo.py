"""``python -m hspace_core demo``: the whole pipeline on the embedded model, in about a minute.

1. load the embedded demo DDPM (32 px cartoon faces, DDIM/SDEdit family);
2. sample a face from a seed, and render a held-out procedural face (a "real" image of this world);
3. invert both with DDIM;
4. find h-space directions for smile and face width: the supervised mean difference of h between
   procedural faces with the attribute high and the same faces with it low, per timestep;
5. edit both faces with the Asyrp sampler at several strengths, in one batch per direction;
6. write a strip (input, reconstruction, one image per strength) and print what the attribute probe
   reads on every image.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import torch

from ..discovery.record import seeded_noise
from ..editing import edit
from ..inversion import invert
from ..images import strip
from ..loading import load_model
from .faces import render, sample_faces
from .pairs import supervised_direction

# The editing interval of the demo world. The interval measured on the model's samples
# (``measure_interval``, fallback metric) is t >= 870, where this small model's h carries almost
# nothing of the attributes; edits first respond (face width, eye size, glasses) when the interval
# reaches t ~ 400, so the demo world uses t_edit = 400 (see the README's miniature-world section).
DEMO_T_EDIT = 400
# One full per-step mean difference (strength 1) moves the probe's reading by ~1/40 of the pair
# difference on this model, so the demo sweeps larger strengths.
DEMO_STRENGTHS = (-10.0, -5.0, 5.0, 10.0)
# The demo model is small and briefly trained: its eps is least accurate at the highest noise levels,
# where P_t amplifies errors by sqrt((1 - alpha_bar) / alpha_bar) (~160 at t = 999), so its unclamped
# samples from pure noise leave the image range. Its fresh samples are drawn with the x0 clamp, and
# (``sample_from_model``) with stochastic steps throughout, which lets later steps correct earlier
# errors; inversions of images need neither (they reconstruct, see the model card).
SAMPLE_CLIP_X0 = True


def sample_from_model(model, n: int, seed: int, steps: int = 40) -> torch.Tensor:
    """n fresh samples [n, 3, S, S] in [-1, 1]: eta = 1 at every step, x0 clamped (see above)."""
    t_0 = model.schedule.num_timesteps - 1
    return edit(model, seeded_noise(model, n, seed), None, 0.0, steps=steps, t_edit=0, t_boost=t_0, eta=1.0, seed=seed,
                clip_x0=SAMPLE_CLIP_X0).images[:, 0].clamp(-1, 1)


def demo_model_path() -> Path:
    """The embedded demo checkpoint shipped inside the package."""
    return Path(str(resources.files("hspace_core").joinpath("data/demo_faces32.safetensors")))


def demo_directions_dir() -> Path:
    """The directions shipped for the embedded model (``python -m hspace_core demo-directions``)."""
    return demo_model_path().parent / "directions"


def run_demo(out: Path, *, seed: int = 0, strengths=DEMO_STRENGTHS, attributes=("smile", "face_width"),
             n_pairs: int = 32, steps: int = 40, scale: int = 4, log=print) -> dict:
    """Sample and invert a face, find one supervised direction per attribute, edit, write a strip.

    Rows: (model sample, procedural face) x attributes; columns: input, reconstruction, strengths."""
    from .probe import load_probe

    timings = {}
    tic = time.perf_counter()
    model = load_model(demo_model_path())
    sample = sample_from_model(model, 1, seed, steps)
    real = render(sample_faces(1, 10_000 + seed))
    inv = invert(model, torch.cat([sample, real]), steps=steps)
    timings["sample_and_invert_s"] = time.perf_counter() - tic

    strengths = [float(v) for v in strengths]
    probe = load_probe()
    rows, readings = [], []
    for attribute in attributes:
        tic = time.perf_counter()
        d = supervised_direction(model, attribute, t_edit=DEMO_T_EDIT, n_pairs=n_pairs, seed=20_000 + seed,
                                 steps=steps)
        timings[f"{attribute}_direction_s"] = time.perf_counter() - tic
        tic = time.perf_counter()
        result = edit(model, inv, d, [0.0] + strengths, t_edit=DEMO_T_EDIT, seed=seed)
        timings[f"{attribute}_edit_s"] = time.perf_counter() - tic
        for b, label in enumerate(("model sample", "procedural face")):
            images = [inv.x_0[b], *result.images[b]]
            rows.append(images)
            read = probe.read(torch.stack(images).clamp(-1, 1))
            readings.append({"image": label, "direction": attribute,
                             attribute: [round(float(v), 3) for v in read[attribute]],
                             "face_probability": [round(float(v), 3) for v in read["face"]]})
    picture = strip(rows)
    picture = picture.resize((picture.width * scale, picture.height * scale), 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    log(f"t_edit {DEMO_T_EDIT}; wrote {out}: per row input, reconstruction, strengths {strengths}")
    for r in readings:
        a = r["direction"]
        log(f"  {r['image']}, {a} direction: probe {a} {r[a]}")
    total = sum(timings.values())
    log(f"time: {total:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in timings.items())})")
    return {"t_edit": DEMO_T_EDIT, "strengths": strengths, "readings": readings, "timings_s": timings,
            "total_s": total}


DEMO_DIRECTIONS = {"demo_smile": "smile", "demo_eyes": "eye_size", "demo_width": "face_width"}


def make_demo_directions(out_dir: Path, *, n_pairs: int = 64, steps: int = 40, seed: int = 0, log=print) -> list[Path]:
    """The directions shipped for the embedded model (``data/directions``): supervised mean differences
    from controlled pairs of procedural faces, made for t_edit = ``DEMO_T_EDIT``."""
    from ..directions.io import save_direction

    model = load_model(demo_model_path())
    paths = []
    for name, attribute in DEMO_DIRECTIONS.items():
        d = supervised_direction(model, attribute, t_edit=DEMO_T_EDIT, n_pairs=n_pairs, seed=30_000 + seed,
                                 steps=steps, name=name)
        paths.append(save_direction(d, out_dir / f"{name}.safetensors", overwrite=True))
        log(f"wrote {paths[-1]} (t_edit {DEMO_T_EDIT})")
    return paths
