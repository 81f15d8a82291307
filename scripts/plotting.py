"""Line plots drawn with pillow (no plotting library among the project's dependencies): the model cards'
loss curves and the benches' strength plots."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207),
           (140, 86, 75), (127, 127, 127)]


def line_plot(series: dict[str, tuple[list[float], list[float]]], out: Path, *, title: str, x_label: str,
              y_label: str, width: int = 760, height: int = 420, log_y: bool = False,
              y_range: tuple[float, float] | None = None) -> None:
    """One line with point markers per named series ``{name: (xs, ys)}``, a legend, axis ticks; PNG."""
    import math

    def ty(v):
        return math.log10(v) if log_y else v

    xs = [x for s in series.values() for x in s[0]]
    ys = [ty(y) for s in series.values() for y in s[1]]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    # the legend's column as wide as its longest name; the title on its own line above the y axis' label
    left, top, bottom = 60, 40, 45
    right = max(200, 45 + int(max(d.textlength(name) for name in series)))
    d.rectangle([left, top, width - right, height - bottom], outline="black")

    def xy(x, y):
        return (left + (x - x0) / max(1e-12, x1 - x0) * (width - right - left),
                height - bottom - (ty(y) - y0) / (y1 - y0) * (height - bottom - top))

    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = y0 + frac * (y1 - y0)
        _, py = xy(x0, 10 ** v if log_y else v)
        d.line([(left - 4, py), (left, py)], fill="black")
        d.text((4, py - 6), f"{10 ** v:.3g}" if log_y else f"{v:.2f}", fill="black")
        x = x0 + frac * (x1 - x0)
        px, _ = xy(x, 10 ** y0 if log_y else y0)
        d.line([(px, height - bottom), (px, height - bottom + 4)], fill="black")
        d.text((px - 12, height - bottom + 8), f"{x:.3g}", fill="black")
    if not log_y and y0 < 0 < y1:
        d.line([xy(x0, 0), xy(x1, 0)], fill=(200, 200, 200))
    for i, (name, (sx, sy)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [xy(x, y) for x, y in zip(sx, sy)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for px, py in pts:
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
        ly = top + 8 + 18 * i
        d.line([(width - right + 10, ly + 6), (width - right + 30, ly + 6)], fill=color, width=3)
        d.text((width - right + 35, ly), name, fill="black")
    d.text((left, 4), title, fill="black")
    d.text((left + (width - right - left) // 2 - 40, height - 18), x_label, fill="black")
    d.text((4, top - 16), y_label, fill="black")
    img.save(out)
