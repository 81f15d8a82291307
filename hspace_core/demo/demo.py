"""``python -m hspace_core demo``: the whole pipeline on the embedded model, in about a minute.

1. load the embedded demo DDPM (32 px cartoon faces, DDIM/SDEdit family);
2. sample a face from a seed, and render a held-out procedural face (a "real" image of this world);
3. invert both with DDIM;
4. measure the editing interval on the model's own samples;
5. find an h-space smile direction: the supervised mean difference of h between procedural faces
   with a big smile and the same faces frowning;
6. edit both faces with the Asyrp sampler at several strengths, in one batch;
7. write a strip (input, reconstruction, one image per strength) and print what the attribute probe
   reads on every image.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import torch

from ..directions.supervised import mean_difference
from ..editing import edit, invert
from ..images import strip
from ..interval import measure_interval
from ..loading import load_model
from .faces import render, sample_faces

SMILE_HIGH, SMILE_LOW = 0.8, -0.8
# The demo model is small and briefly trained: its eps is least accurate at the highest noise levels,
# where P_t amplifies errors by sqrt((1 - alpha_bar) / alpha_bar) (~160 at t = 999), so its unclamped
# samples from pure noise leave the image range. Its fresh samples are drawn with the x0 clamp;
# inversions of images do not need it (they reconstruct, see the model card).
SAMPLE_CLIP_X0 = True


def demo_model_path() -> Path:
    """The embedded demo checkpoint shipped inside the package."""
    return Path(str(resources.files("hspace_core").joinpath("data/demo_faces32.safetensors")))


def attribute_sets(attribute: str, n: int, seed: int, high: float, low: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural faces identical but for ``attribute`` (``high`` vs ``low``): ([n, 3, 32, 32] x 2)."""
    faces = sample_faces(n, seed)
    return (render([f.replace(**{attribute: high}) for f in faces]),
            render([f.replace(**{attribute: low}) for f in faces]))


def run_demo(out: Path, *, seed: int = 0, strengths=(-1.0, -0.5, 0.5, 1.0), n_pairs: int = 32,
             steps: int = 40, scale: int = 4, log=print) -> dict:
    from .probe import load_probe

    timings = {}
    tic = time.perf_counter()
    model = load_model(demo_model_path())
    g = torch.Generator().manual_seed(seed)
    x_T = torch.randn(1, 3, model.image_size, model.image_size, generator=g)
    sample = edit(model, x_T, None, 0.0, steps=steps, clip_x0=SAMPLE_CLIP_X0).images[:, 0].clamp(-1, 1)
    real = render(sample_faces(1, 10_000 + seed))
    inputs = torch.cat([sample, real])
    inv = invert(model, inputs, steps=steps)
    timings["sample_and_invert_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    interval = measure_interval(model, n_samples=4, steps=steps, seed=seed, clip_x0=SAMPLE_CLIP_X0).interval
    timings["interval_s"] = time.perf_counter() - tic
    log(f"editing interval: t_edit {interval.t_edit}, t_boost {interval.t_boost} ({interval.source})")

    tic = time.perf_counter()
    pos, neg = attribute_sets("smile", n_pairs, 20_000 + seed, SMILE_HIGH, SMILE_LOW)
    smile = mean_difference(model, pos, neg, steps=steps, t_edit=interval.t_edit, name="smile",
                            data=f"{n_pairs} procedural faces, smile {SMILE_HIGH} vs {SMILE_LOW}")
    timings["direction_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    strengths = list(strengths)
    result = edit(model, inv, smile, [0.0] + strengths, t_edit=interval, seed=seed)
    timings["edit_s"] = time.perf_counter() - tic

    probe = load_probe()
    rows, readings = [], []
    for b, label in enumerate(("model sample", "procedural face")):
        images = [inv.x_0[b], *result.images[b]]
        rows.append(images)
        read = probe.read(torch.stack(images).clamp(-1, 1))
        readings.append({"image": label, "smile": [round(float(v), 3) for v in read["smile"]],
                         "face_probability": [round(float(v), 3) for v in read["face"]]})
    picture = strip(rows)
    picture = picture.resize((picture.width * scale, picture.height * scale), 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    log(f"wrote {out}: per row input, reconstruction, smile strengths {strengths}")
    for r in readings:
        log(f"  {r['image']}: probe smile {r['smile']} (input, reconstruction, strengths)")
    total = sum(timings.values())
    log(f"time: {total:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in timings.items())})")
    return {"interval": [interval.t_edit, interval.t_boost], "strengths": strengths, "readings": readings,
            "timings_s": timings, "total_s": total}


DEMO_DIRECTIONS = {"demo_smile": ("smile", 0.8, -0.8), "demo_eyes": ("eye_size", 0.9, 0.1)}


def make_demo_directions(out_dir: Path, *, n_pairs: int = 64, steps: int = 40, seed: int = 0, log=print) -> list[Path]:
    """The directions shipped for the embedded model (``data/directions``): supervised mean differences
    from controlled pairs of procedural faces, made for the interval measured on the model."""
    from ..directions.io import save_direction

    model = load_model(demo_model_path())
    interval = measure_interval(model, n_samples=8, steps=steps, seed=seed, clip_x0=SAMPLE_CLIP_X0).interval
    paths = []
    for name, (attribute, high, low) in DEMO_DIRECTIONS.items():
        pos, neg = attribute_sets(attribute, n_pairs, 30_000 + seed, high, low)
        d = mean_difference(model, pos, neg, steps=steps, t_edit=interval.t_edit, name=name,
                            data=f"{n_pairs} procedural faces, {attribute} {high} vs {low} "
                                 f"(hspace_core.demo.faces, seed {30_000 + seed})")
        paths.append(save_direction(d, out_dir / f"{name}.safetensors", overwrite=True))
        log(f"wrote {paths[-1]} (t_edit {interval.t_edit})")
    return paths
