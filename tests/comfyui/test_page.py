"""The example workflows in ComfyUI's own page, in a real browser (headless Chromium driven by Playwright).

Each workflow is loaded the way the template browser loads it (the JSON from
``/api/workflow_templates/<pack>/<name>.json`` into ``app.loadGraphData(..., {openSource: "template"})``),
then: no alert, toast or schema warning; every node type registered; every node inside the canvas.
One workflow is queued from the page, so the frontend builds the prompt itself, and it must run.
Screenshots go to ``$HSPACE_SCREENSHOTS`` (a folder) when set.
"""

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.comfyui.harness import PACK_NAME, ROOT

WORKFLOWS = sorted(p.stem for p in (ROOT / "example_workflows").glob("*.json"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# workflows whose nodes name weights to download (properties.models): the page lists them as missing
NAMED_MODELS = {"sd15_prompt_pair_sweep": "v1-5-pruned-emaonly.safetensors",
                "sd15_edit_real_image": "v1-5-pruned-emaonly.safetensors",
                "sd15_edit_friendly_inversion": "v1-5-pruned-emaonly.safetensors",
                "sdxl_symmetric_edit": "sd_xl_base_1.0.safetensors",
                "flux1_dev_prompt_pair_sweep": "flux1-dev.safetensors",
                "flux1_schnell_edit_real_image": "flux1-schnell.safetensors",
                "sd35_prompt_pair_sweep": "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors"}

LOAD_AS_TEMPLATE = """async ([pack, name]) => {
    const data = await (await fetch(`/api/workflow_templates/${pack}/${name}.json`)).json();
    await window.app.loadGraphData(data, true, true, name, {openSource: "template"});
    await new Promise(r => setTimeout(r, 800));
    return data.nodes.length;
}"""

MEASURE = """() => {
    const canvas = window.app.canvas, ds = canvas.ds, el = canvas.canvas, rect = el.getBoundingClientRect();
    const title = window.LiteGraph.NODE_TITLE_HEIGHT;
    // a node is on screen when the canvas itself (no sidebar, bar or dialog over it) is what shows at
    // its four corners, inside the window
    const visible = (x, y) => x >= 0 && y >= 0 && x < window.innerWidth && y < window.innerHeight &&
        document.elementFromPoint(x, y) === el;
    const nodes = window.app.graph._nodes.map(n => {
        const box = [rect.left + (n.pos[0] + ds.offset[0]) * ds.scale + 2,
                     rect.top + (n.pos[1] - title + ds.offset[1]) * ds.scale + 2,
                     rect.left + (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale - 2,
                     rect.top + (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale - 2];
        const corners = [[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]];
        return {id: n.id, type: n.type, registered: !!window.LiteGraph.registered_node_types[n.type],
                box, on_screen: corners.every(([x, y]) => visible(x, y))};
    });
    return {nodes, width: window.innerWidth, height: window.innerHeight};
}"""


@pytest.fixture(scope="module")
def browser_page(comfy):
    if CHROMIUM is None:
        pytest.skip("page tests: no Chromium (Debian's `chromium` package; .ci/run installs it with apt)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("page tests: the playwright package is not installed (README test command)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        # a new user's first visit opens the template browser; loading a template closes it, as here
        comfy.post("/settings/Comfy.TutorialCompleted", True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        seen = {"dialogs": [], "console": []}
        page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
        page.on("console", lambda m: seen["console"].append(m.text))
        page.goto(comfy.url)
        page.wait_for_function("window.app && window.app.graph && window.LiteGraph && window.app.canvas",
                               timeout=180_000)
        page.wait_for_timeout(2000)
        yield page, seen
        browser.close()


def _toasts(page) -> list[str]:
    return [t for t in page.locator(".p-toast-message").all_inner_texts() if t.strip()]


def _close_toasts(page) -> None:
    for button in page.locator(".p-toast-message .p-toast-close-button").all():
        try:
            button.click(timeout=1000)
        except Exception:  # a toast that vanished meanwhile
            pass


@pytest.mark.parametrize("name", WORKFLOWS)
def test_example_workflow_opens_like_a_template_with_no_warning(browser_page, name):
    page, seen = browser_page
    _close_toasts(page)
    page.keyboard.press("Escape")
    dialogs, console = len(seen["dialogs"]), len(seen["console"])
    in_file = page.evaluate(LOAD_AS_TEMPLATE, [PACK_NAME, name])
    if os.environ.get("HSPACE_SCREENSHOTS"):
        Path(os.environ["HSPACE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(os.environ["HSPACE_SCREENSHOTS"]) / f"{name}.png"))
    assert seen["dialogs"][dialogs:] == []
    warnings = [m for m in seen["console"][console:] if "zod" in m.lower() or "invalid workflow" in m.lower()]
    assert warnings == []
    assert _toasts(page) == []
    dialog = " ".join(page.locator(".p-dialog").all_inner_texts())
    assert "missing node" not in dialog.lower(), dialog
    if name in NAMED_MODELS:  # it names the weights it needs (with their download), which are not here
        assert "Missing Models" in dialog and NAMED_MODELS[name] in dialog, dialog
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
    else:
        assert dialog.strip() == "", dialog
    result = page.evaluate(MEASURE)
    assert len(result["nodes"]) == in_file
    assert all(n["registered"] for n in result["nodes"]), [n["type"] for n in result["nodes"] if not n["registered"]]
    off = [(n["type"], [round(v) for v in n["box"]]) for n in result["nodes"] if not n["on_screen"]]
    assert off == [], f"nodes not on screen in a {result['width']}x{result['height']} window: {off}"
    boxes = [(n["type"], n["box"]) for n in result["nodes"]]
    overlapping = [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:]
                   if p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]]
    assert overlapping == [], overlapping


def test_a_workflow_queued_from_the_page_runs(browser_page, comfy):
    page, _ = browser_page
    page.evaluate(LOAD_AS_TEMPLATE, [PACK_NAME, "edit_image_with_direction"])
    before = set(comfy.get("/history"))
    # as a user would: change the seed widget (so the run is not served from cache) and the inversion's steps
    # (10: the sampler follows the inversion's grid, a quarter of the shipped work), press Queue
    page.evaluate("""async () => {
        const node = window.app.graph._nodes.find(n => n.type === "HSpaceAsyrpSampler");
        node.widgets.find(w => w.name === "seed").value = 4242;
        window.app.graph._nodes.find(n => n.type === "HSpaceDDIMInvert").widgets.find(w => w.name === "steps").value = 10;
        await window.app.queuePrompt(0, 1);
    }""")
    deadline, entry = time.time() + 600, None
    while time.time() < deadline and entry is None:
        time.sleep(2)
        history = comfy.get("/history")
        fresh = [k for k in history if k not in before and history[k].get("status", {}).get("completed") is not None]
        if fresh and history[fresh[0]]["status"].get("status_str") in ("success", "error"):
            entry = history[fresh[0]]
    assert entry is not None, "the prompt queued from the page did not finish"
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]
    prompt = entry["prompt"][2]
    assert prompt["5"]["inputs"]["seed"] == 4242 and prompt["3"]["inputs"]["steps"] == 10  # built from the graph
    images = [im for out in entry["outputs"].values() for im in out.get("images", [])]
    assert images and all((comfy.base / "output" / im["subfolder"] / im["filename"]).exists() for im in images)


# ------------------------------------------------------------------ help pages in the node library

HELP_NODES = {"HSpaceAsyrpSampler": "Asyrp Sampler (h-space)",  # a pixel node
              "HSpaceApplyDirection": "Apply H-Space Direction (SD MODEL)",  # an SD node
              "HSpaceDirectionMixer": "H-Space Direction Mixer"}  # the mixer

# the node library's list with its search box: open the tab, or leave a help page shown in it (its back arrow)
OPEN_NODE_LIBRARY = """async () => {
    for (let i = 0; i < 4 && !document.querySelector(".node-lib-search-box input"); i++) {
        const back = document.querySelector(".node-help-content") &&
            [...document.querySelectorAll("button")].find(b => b.querySelector('[class*="arrow-left"]'));
        if (back) back.click();
        else await window.app.extensionManager.command.execute("Workspace.ToggleSidebarTab.node-library");
        await new Promise(r => setTimeout(r, 700));
    }
    return !!document.querySelector(".node-lib-search-box input");
}"""

HELP_SHOWN = """([title]) => {
    const box = document.querySelector(".node-help-content");
    if (!box) return null;
    const h1 = box.querySelector("h1");
    const imgs = [...box.querySelectorAll("img")];
    if (!h1 || h1.textContent.trim() !== title || !imgs.length || !imgs.every(i => i.complete)) return null;
    return {heading: h1.textContent.trim(), text: box.innerText,
            images: imgs.map(i => ({src: i.getAttribute("src"), width: i.naturalWidth, height: i.naturalHeight}))};
}"""


@pytest.mark.parametrize("node_id", list(HELP_NODES))
def test_the_node_librarys_help_shows_the_packs_page_with_its_picture(browser_page, comfy, tmp_path, node_id):
    """As a user: open the node library, search the node, press its help button. The panel shows the pack's
    own page (web/docs/<node id>.md, fetched from /extensions/<pack>/docs/), its heading and its picture
    (loaded: the frontend resolves the relative path against the docs folder), not the generic description."""
    page, _ = browser_page
    title = HELP_NODES[node_id]
    _close_toasts(page)
    page.keyboard.press("Escape")
    fetched = []
    page.on("response", lambda r: fetched.append((r.url, r.status)) if "/docs/" in r.url else None)
    assert page.evaluate(OPEN_NODE_LIBRARY), "the node library did not open"
    search = page.locator(".node-lib-search-box input").first
    search.fill("")
    search.fill(title)
    row = page.locator(".p-tree-node-content", has_text=title).first
    row.wait_for(timeout=30_000)
    row.hover()
    row.locator(".help-button").click(force=True)
    shown = page.wait_for_function(HELP_SHOWN, arg=[title], timeout=30_000).json_value()
    shots = [tmp_path / f"help_{node_id}.png"]
    if os.environ.get("HSPACE_SCREENSHOTS"):
        Path(os.environ["HSPACE_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        shots.append(Path(os.environ["HSPACE_SCREENSHOTS"]) / f"help_{node_id}.png")
    for shot in shots:
        page.screenshot(path=str(shot))
    assert shots[0].stat().st_size > 10_000
    page_text = (ROOT / "web" / "docs" / f"{node_id}.md").read_text()
    assert "## Ranges that work" in page_text and "Ranges that work" in shown["text"]  # the page, not the tooltip
    assert all(im["width"] > 0 for im in shown["images"]), shown["images"]
    assert all(im["src"].startswith(f"/extensions/{PACK_NAME}/docs/images/") for im in shown["images"]), shown
    assert (f"{comfy.url}/extensions/{PACK_NAME}/docs/{node_id}.md", 200) in fetched or any(
        url.endswith(f"/docs/{node_id}.md") and status == 200 for url, status in fetched), fetched
    page.keyboard.press("Escape")
