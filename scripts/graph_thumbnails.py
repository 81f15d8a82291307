"""Thumbnails of the SD, Flux and SD3 example workflows: their graph as ComfyUI's page draws it (no weights can be had
here, so there is no honest output image to show). Starts a real ComfyUI (tests/comfyui/harness.py),
loads each workflow the way the template browser does, closes the missing-models dialog, and saves the
canvas as example_workflows/<name>.jpg. Needs Chromium and playwright (the README's test set-up).

    python scripts/graph_thumbnails.py [--only NAME ...]
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.comfyui.harness import PACK_NAME, ComfyServer, find_comfyui  # noqa: E402
from tests.comfyui.test_page import CHROMIUM, LOAD_AS_TEMPLATE  # noqa: E402

WIDTH = 800
VIEWPORT = {"width": 2200, "height": 1200}
# fit the graph in the canvas at a scale where LiteGraph still draws titles and widgets (not low quality)
FIT = """() => {
    const c = window.app.canvas, nodes = window.app.graph._nodes, title = window.LiteGraph.NODE_TITLE_HEIGHT;
    const x0 = Math.min(...nodes.map(n => n.pos[0])) - 20, y0 = Math.min(...nodes.map(n => n.pos[1] - title)) - 20;
    const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0])) + 20;
    const y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1])) + 20;
    const w = c.canvas.clientWidth, h = c.canvas.clientHeight;
    const scale = Math.max(0.65, Math.min(1.0, (w - 100) / (x1 - x0), (h - 60) / (y1 - y0)));
    c.ds.scale = scale;
    c.ds.offset = [-x0 + 90 / scale, -y0 + 50 / scale];
    c.setDirty(true, true);
    return scale;
}"""


def sd_workflows() -> list[str]:
    out = []
    for path in sorted((ROOT / "example_workflows").glob("*.json")):
        if any(n["type"] in ("CheckpointLoaderSimple", "UNETLoader") for n in json.loads(path.read_text())["nodes"]):
            out.append(path.stem)
    return out


def main() -> None:
    import argparse

    from PIL import Image
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", action="append", default=None, help="this workflow only (repeat)")
    args = ap.parse_args()
    root, how = find_comfyui()
    if root is None or CHROMIUM is None:
        sys.exit(f"needs a ComfyUI ({how}) and Chromium")
    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(root, Path(tmp))
        server.start()
        try:
            server.post("/settings/Comfy.TutorialCompleted", True)
            server.post("/settings/Comfy.Minimap.Visible", False)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(server.url)
                page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=180_000)
                page.wait_for_timeout(2000)
                for name in [n for n in sd_workflows() if not args.only or n in args.only]:
                    page.evaluate(LOAD_AS_TEMPLATE, [PACK_NAME, name])
                    page.keyboard.press("Escape")  # the missing-models dialog: no checkpoints here
                    page.wait_for_timeout(500)
                    page.evaluate(FIT)
                    page.wait_for_timeout(800)
                    shot = page.locator("canvas#graph-canvas").screenshot()
                    with Image.open(io.BytesIO(shot)) as im:
                        im = im.convert("RGB")
                        im = im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)
                        im.save(ROOT / "example_workflows" / f"{name}.jpg", quality=85)
                    print(f"wrote {name}.jpg")
                browser.close()
        finally:
            server.stop()
            shutil.rmtree(Path(tmp) / "custom_nodes", ignore_errors=True)


if __name__ == "__main__":
    main()
