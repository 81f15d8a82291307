"""``python -m hspace_core demo``: the whole pipeline on the embedded model, in under a minute.

1. load the embedded demo DDPM (32 px cartoon faces, DDIM/SDEdit family) and the attribute probe;
2. sample a face from a seed, and render a held-out procedural face (a "real" image of this world);
3. invert both with DDIM;
4. edit both with the Asyrp sampler at several strengths, one batch per direction, with the
   directions shipped in ``data/directions``: supervised mean differences (``demo_*``) and
   directions trained from text with the embedded tiny CLIP by the official recipe (``text_*``);
   with ``find=True`` they are found on the fly instead (the supervised ones from controlled pairs,
   the text ones by CLIP training), which takes a few minutes;
5. write a strip (input, reconstruction, one image per strength) and print what the attribute probe
   reads on every image.
Progress goes to ``progress`` (stderr on the command line), results to ``log`` (stdout).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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

# The editing interval of the demo world: t_edit as ``measure_interval`` measures it on this model
# (fallback metric, 4 samples, 40 steps: t_edit 435, t_boost 666); the supervised directions edit
# there (face width +0.23 at strength 2 on 8 held-out faces; README, miniature world).
DEMO_T_EDIT = 435
# The smile's own t_edit: the official rule scales the edit threshold by cos(source text, target text)
# (asyrp.md 1.5); with the tiny CLIP's cos("face", "smiling face") = 0.836 ``measure_interval`` gives 333.
# The mouth's curve is a detail the model settles later than the face's shape: at 435 the smile
# direction leaves the two darkest-skinned of 16 faces unmoved, at 333 it moves all 16 (bench/claims.py).
SMILE_T_EDIT = 333
# Fresh samples of the demo model are drawn with DDIM from pure noise, unclamped and deterministic
# (eta 0), as the claims table measures them.
SAMPLE_CLIP_X0 = False


# the CLIP training of the text directions, scaled to the demo: the official recipe (asyrp.md 5: SGD,
# 40 training steps, clip 1.0 / L1 3.0, one iteration) on procedural faces instead of 100 CelebA
# images, with lr 0.05 instead of 0.5: the tiny CLIP's gradients are larger than ViT-B/16's, and at
# 0.5 one iteration turned every face into a non-face (probe face probability 0.03)
TEXT_TRAIN_FACES = 16
TEXT_TRAIN_SEED = 40_000
TEXT_LR = 0.05
# the smile's DeltaBlock barely moved in 40 steps at 0.05 (probe change -0.02 at strength 1, 16 faces);
# at 0.1 it smiles (+0.38 at strength 0.5, all 16 faces; bench/claims.py)
SMILE_TEXT_LR = 0.1


@dataclass(frozen=True)
class DemoRow:
    """One direction of the demo: its shipped file name, the attribute the probe reads for it, and
    how it is made (``source`` "pairs": supervised from controlled pairs; "text": CLIP training from
    ``texts`` = (source, target) at learning rate ``lr``), for the editing interval t >= ``t_edit``."""

    name: str
    attribute: str
    source: str
    strengths: tuple[float, ...]
    texts: tuple[str, str] = ("", "")
    lr: float = TEXT_LR
    t_edit: int = DEMO_T_EDIT


DEMO_ROWS = (
    DemoRow("demo_smile", "smile", "pairs", (-8.0, -4.0, 4.0, 8.0), t_edit=SMILE_T_EDIT),
    DemoRow("demo_width", "face_width", "pairs", (-4.0, -2.0, 2.0, 4.0)),
    DemoRow("demo_eyes", "eye_size", "pairs", (-4.0, -2.0, 2.0, 4.0)),
    DemoRow("demo_glasses", "glasses", "pairs", (-4.0, -2.0, 2.0, 4.0)),
    DemoRow("text_smile", "smile", "text", (-0.5, -0.25, 0.25, 0.5), ("face", "smiling face"), SMILE_TEXT_LR),
    DemoRow("text_glasses", "glasses", "text", (-1.0, -0.5, 0.5, 1.0), ("face", "face with glasses")),
    DemoRow("text_hat", "hat", "text", (-0.8, -0.4, 0.4, 0.8), ("face", "face with a hat")),
    DemoRow("text_wide", "face_width", "text", (-1.0, -0.5, 0.5, 1.0), ("face", "wide face")),
)
# the rows of the strip by default: the directions that visibly edit on this model (each moves its
# attribute by >= 0.3 between the extreme strengths, tests/engine/test_demo.py); the supervised glasses
# and the text "wide face" do not, and bench/claims.py measures every one of them
DEFAULT_ROWS = ("demo_smile", "text_smile", "demo_width", "demo_eyes", "text_glasses", "text_hat")


def sample_from_model(model, n: int, seed: int, steps: int = 40) -> torch.Tensor:
    """n fresh samples [n, 3, S, S] in [-1, 1]: plain DDIM (eta 0) from seeded noise."""
    return edit(model, seeded_noise(model, n, seed), None, 0.0, steps=steps, t_edit=0, seed=seed,
                clip_x0=SAMPLE_CLIP_X0).images[:, 0].clamp(-1, 1)


def demo_model_path() -> Path:
    """The embedded demo checkpoint shipped inside the package."""
    return Path(str(resources.files("hspace_core").joinpath("data/demo_faces32.safetensors")))


def demo_directions_dir() -> Path:
    """The directions shipped for the embedded model (``python -m hspace_core demo-directions``)."""
    return demo_model_path().parent / "directions"


def demo_row(name: str) -> DemoRow:
    for row in DEMO_ROWS:
        if row.name == name:
            return row
    from ..errors import HSpaceError
    raise HSpaceError(f"unknown demo direction {name!r}; choose from {', '.join(r.name for r in DEMO_ROWS)}")


def make_direction(model, row: DemoRow, *, steps: int = 40, seed: int = 0, n_pairs: int = 64, clip=None,
                   callback=None):
    """The direction of ``row`` made on ``model`` for its t_edit: a supervised mean
    difference from ``n_pairs`` controlled pairs, or a DeltaBlock trained from its texts with ``clip``
    (the embedded tiny CLIP when None) on ``TEXT_TRAIN_FACES`` held-out procedural faces."""
    if row.source == "pairs":
        return supervised_direction(model, row.attribute, t_edit=row.t_edit, n_pairs=n_pairs,
                                    seed=30_000 + seed, steps=steps, name=row.name)
    from ..discovery.clip import ClipTrainSettings, train_clip_direction
    from .clip_world import load_tiny_clip

    clip = clip or load_tiny_clip()
    faces = render(sample_faces(TEXT_TRAIN_FACES, TEXT_TRAIN_SEED + seed))
    settings = ClipTrainSettings(kind="deltablock", n_train_step=steps, t_edit=row.t_edit, lr=row.lr, seed=seed)
    return train_clip_direction(model, clip, *row.texts, images=faces, inversion_steps=steps, settings=settings,
                                name=row.name, callback=callback)


def run_demo(out: Path, *, seed: int = 0, rows=DEFAULT_ROWS, find: bool = False, steps: int = 40, scale: int = 4,
             log=print, progress=print) -> dict:
    """Sample and invert a face, edit it with each direction of ``rows``, write a strip.

    Strip rows: (model sample, procedural face) x directions; columns: input, reconstruction, the
    row's strengths. Returns the probe readings (and the change of the edited attribute between the
    extreme strengths per row) and timings."""
    from ..directions.io import load_direction
    from .probe import load_probe

    rows = [demo_row(r) if isinstance(r, str) else r for r in rows]
    timings = {}
    tic = time.perf_counter()
    progress(f"[demo] loading the embedded model and probe; sampling a face (seed {seed}) and inverting it "
             f"with a held-out procedural face ({steps} DDIM steps)")
    model = load_model(demo_model_path())
    probe = load_probe()
    sample = sample_from_model(model, 1, seed, steps)
    real = render(sample_faces(1, 10_000 + seed))
    inv = invert(model, torch.cat([sample, real]), steps=steps)
    timings["sample_and_invert_s"] = time.perf_counter() - tic

    strip_rows, readings = [], []
    for k, row in enumerate(rows, 1):
        tic = time.perf_counter()
        if find:
            progress(f"[demo] {k}/{len(rows)} {row.name}: finding the direction "
                     f"({'controlled pairs' if row.source == 'pairs' else 'CLIP training'}) ...")
            d = make_direction(model, row, steps=steps, seed=seed)
        else:
            d = load_direction(demo_directions_dir() / f"{row.name}.safetensors")
        timings[f"{row.name}_direction_s"] = time.perf_counter() - tic
        progress(f"[demo] {k}/{len(rows)} {row.name}: editing at strengths {list(row.strengths)} "
                 f"(t_edit {row.t_edit})")
        tic = time.perf_counter()
        result = edit(model, inv, d, [0.0, *row.strengths], t_edit=row.t_edit, seed=seed)
        timings[f"{row.name}_edit_s"] = time.perf_counter() - tic
        for b, label in enumerate(("model sample", "procedural face")):
            images = [inv.x_0[b], *result.images[b]]
            strip_rows.append(images)
            read = probe.read(torch.stack(images).clamp(-1, 1))[row.attribute]
            readings.append({"image": label, "direction": row.name, "attribute": row.attribute, "t_edit": row.t_edit,
                             "strengths": [0.0, *row.strengths], "probe": [round(float(v), 3) for v in read[1:]],
                             "change": round(float(read[-1] - read[2]), 3)})
    picture = strip(strip_rows)
    picture = picture.resize((picture.width * scale, picture.height * scale), 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    total = sum(timings.values())
    log(f"wrote {out}: per row input, reconstruction (strength 0), then the strengths")
    for r in readings:
        log(f"  {r['image']:15s} {r['direction']:13s} probe {r['attribute']} at {r['strengths']}: {r['probe']} "
            f"(change {r['change']:+.3f})")
    log(f"time: {total:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in timings.items())})")
    return {"t_edit": DEMO_T_EDIT, "readings": readings, "timings_s": timings, "total_s": total}


def make_demo_directions(out_dir: Path, *, rows=None, steps: int = 40, seed: int = 0, log=print) -> list[Path]:
    """The directions of ``rows`` (names; every one of ``DEMO_ROWS`` by default) made on the embedded
    model and written to ``out_dir``."""
    from ..directions.io import save_direction

    model = load_model(demo_model_path())
    paths = []
    for row in [demo_row(r) for r in rows] if rows else DEMO_ROWS:
        tic = time.perf_counter()
        d = make_direction(model, row, steps=steps, seed=seed)
        paths.append(save_direction(d, out_dir / f"{row.name}.safetensors", overwrite=True))
        log(f"wrote {paths[-1]} ({row.source}, t_edit {row.t_edit}, {time.perf_counter() - tic:.0f} s)")
    return paths
