"""Build the pictures of the node help pages (web/docs/images/) and the registry icon (docs/icon.png) from
the miniature world's real outputs.

Sources, all real outputs of the engine or the pack: the demo strip (``python -m hspace_core demo``,
docs/demo_strip.png: per row the input, its reconstruction and a direction at four strengths), the pixel
example workflows' thumbnails (example_workflows/*.jpg, written by their executed API twins), the demo
model's samples (docs/demo_model/samples.png), procedural faces rendered by the demo world's renderer, and
the miniature SD world's face (example_workflows/input/hspace_sdworld_face.png). Nearest-neighbour scaling keeps
the 32 px pixels crisp; every image is a small PNG (JPEG for the workflow thumbnails, which are JPEGs).

    .venv/bin/python scripts/help_images.py        # writes web/docs/images/*.png, *.jpg and docs/icon.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "web" / "docs" / "images"
STRIP = ROOT / "docs" / "demo_strip.png"
CELL, PAD = 128, 8  # the demo strip's layout: 128 px cells, 8 px white gaps
SMALL = 64  # cell size on the help pages


def strip_cell(strip: Image.Image, row: int, col: int) -> Image.Image:
    x, y = PAD + col * (CELL + PAD), PAD + row * (CELL + PAD)
    return strip.crop((x, y, x + CELL, y + CELL)).resize((SMALL, SMALL), Image.NEAREST)


def tile(cells: list[list[Image.Image]], pad: int = 4) -> Image.Image:
    """Rows of equal-sized images on white, ``pad`` px apart."""
    w, h = cells[0][0].size
    cols = max(len(r) for r in cells)
    canvas = Image.new("RGB", (cols * w + (cols + 1) * pad, len(cells) * h + (len(cells) + 1) * pad), "white")
    for i, row in enumerate(cells):
        for j, im in enumerate(row):
            canvas.paste(im, (pad + j * (w + pad), pad + i * (h + pad)))
    return canvas


def scaled(path: Path, width: int) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
        return im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)


def faces_grid() -> Image.Image:
    from hspace_core.demo.faces import render_face, sample_faces

    faces = sample_faces(6, seed=11)
    row1 = [render_face(f) for f in faces]
    base = faces[0]
    row2 = [render_face(base.replace(smile=s)) for s in (-0.9, -0.3, 0.3, 0.9)] + \
        [render_face(base.replace(glasses=True)), render_face(base.replace(hat=True))]
    return tile([[im.resize((SMALL, SMALL), Image.NEAREST) for im in row] for row in (row1, row2)])


def sd_world_face() -> Image.Image:
    with Image.open(ROOT / "example_workflows" / "input" / "hspace_sdworld_face.png") as im:
        return im.convert("RGB").resize((128, 128), Image.NEAREST)


def arrow_pair(left: Image.Image, right: Image.Image) -> Image.Image:
    """Two images with an arrow between them (before -> after)."""
    w, h = left.size
    canvas = Image.new("RGB", (2 * w + 40 + 8, h + 8), "white")
    canvas.paste(left, (4, 4))
    canvas.paste(right, (w + 44, 4))
    draw = ImageDraw.Draw(canvas)
    y = 4 + h // 2
    draw.line((w + 10, y, w + 36, y), fill=(60, 60, 60), width=3)
    draw.polygon([(w + 38, y), (w + 30, y - 6), (w + 30, y + 6)], fill=(60, 60, 60))
    return canvas


def build() -> dict[str, Image.Image]:
    with Image.open(STRIP) as im:
        strip = im.convert("RGB")

    def row(r: int, cols=range(6)) -> list[Image.Image]:
        return [strip_cell(strip, r, c) for c in cols]

    with Image.open(ROOT / "docs" / "demo_model" / "samples.png") as im:  # 8 x 8 cells of 96 px, 6 px apart
        samples = im.convert("RGB")
    sample_cells = [samples.crop((6 + c * 102, 6, 102 + c * 102, 102)).resize((SMALL, SMALL), Image.NEAREST)
                    for c in range(8)]
    ex = ROOT / "example_workflows"
    return {
        # demo strip rows: 0-1 supervised smile, 2-3 text smile, 4-5 width, 6-7 eyes, 8-9 glasses, 10-11 hat
        "sweep_smile.png": tile([row(1), row(0)]),
        "invert_reconstruction.png": tile([row(1, (0, 1)), row(0, (0, 1))]),
        "text_directions.png": tile([row(3), row(9)]),
        "shipped_directions.png": tile([[strip_cell(strip, r, 5) for r in (1, 3, 5, 7, 9, 11)]]),
        "model_samples.png": tile([sample_cells]),
        "procedural_faces.png": faces_grid(),
        "image_sets_direction.jpg": scaled(ex / "direction_from_image_sets.jpg", 384),
        "pca_directions.jpg": scaled(ex / "pca_directions.jpg", 480),
        "jacobian_directions.jpg": scaled(ex / "jacobian_direction.jpg", 480),
        "mix_two_directions.jpg": scaled(ex / "mix_two_directions.jpg", 384),
        "region_edit.jpg": scaled(ex / "sd_world_region_edit.jpg", 384),
        "edit_friendly_inversion.jpg": scaled(ex / "edit_friendly_inversion.jpg", 384),
        "image_strip.jpg": scaled(ex / "strength_sweep_strip.jpg", 480),
        "save_direction.png": arrow_pair(strip_cell(strip, 5, 1), strip_cell(strip, 5, 5)),
        "sd_world_face.png": sd_world_face(),
        "sd_prompt_pair_sweep.png": scaled(ex / "sd15_prompt_pair_sweep.jpg", 800),
        "sd_edit_real_image.png": scaled(ex / "sd15_edit_real_image.jpg", 800),
        "sd_edit_friendly_inversion.png": scaled(ex / "sd15_edit_friendly_inversion.jpg", 800),
        "sdxl_symmetric_edit.png": scaled(ex / "sdxl_symmetric_edit.jpg", 800),
        "flow_world_sweep.png": scaled(ex / "flow_world_prompt_pair_sweep.jpg", 640),
        # bench/unsupervised.py --docs: four of the contrastive directions, three strengths each
        "contrastive_directions.png": scaled(ROOT / "docs" / "unsupervised" / "pixel_contrastive.png", 480),
    }


def icon() -> Image.Image:
    """256 x 256: one procedural face of the demo strip, reconstructed, smiling (+8), with glasses, with a hat."""
    with Image.open(STRIP) as im:
        strip = im.convert("RGB")
    cells = [strip.crop((PAD + c * (CELL + PAD), PAD + r * (CELL + PAD), PAD + c * (CELL + PAD) + CELL,
                         PAD + r * (CELL + PAD) + CELL)) for r, c in ((1, 1), (1, 5), (9, 5), (11, 5))]
    canvas = Image.new("RGB", (2 * CELL, 2 * CELL))
    for k, cell in enumerate(cells):
        canvas.paste(cell, ((k % 2) * CELL, (k // 2) * CELL))
    return canvas


def main() -> int:
    sys.path.insert(0, str(ROOT))
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, im in build().items():
        path = OUT / name
        if name.endswith(".jpg"):  # thumbnails of workflow outputs, already JPEG
            im.save(path, quality=85, optimize=True)
        else:
            if name.startswith(("sd", "flow", "contrastive")):  # screenshots and strips: a palette keeps them small
                im = im.quantize(colors=64, method=Image.Quantize.MEDIANCUT)
            im.save(path, optimize=True)
        total += path.stat().st_size
        print(f"{path.relative_to(ROOT)}: {im.width}x{im.height}, {path.stat().st_size / 1024:.1f} KiB")
    print(f"total {total / 1024:.0f} KiB")
    icon().save(ROOT / "docs" / "icon.png", optimize=True)
    print(f"docs/icon.png: 256x256, {(ROOT / 'docs' / 'icon.png').stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
