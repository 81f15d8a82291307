"""Every example workflow: its API twin runs through the node classes, and it is the UI file's twin."""

import json
from pathlib import Path

import pytest
import torch

from nodes.registry import NODE_CLASS_MAPPINGS
from tests.pack.executor import PromptError, core_nodes, execute

ROOT = Path(__file__).resolve().parents[2]
UI = sorted((ROOT / "example_workflows").glob("*.json"))
TWINS = ROOT / "tests" / "pack" / "workflows"
CORE_WIDGETS = {"LoadImage": ["image", "upload"], "SaveImage": ["filename_prefix"], "CheckpointLoaderSimple": ["ckpt_name"],
                "CLIPTextEncode": ["text"], "EmptyLatentImage": ["width", "height", "batch_size"],
                "BasicScheduler": ["scheduler", "steps", "denoise"], "SamplerCustom": ["add_noise", "noise_seed", "cfg"],
                "KSampler": ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"], "VAEDecode": [],
                "VAEEncode": [], "ImageScale": ["upscale_method", "width", "height", "crop"], "ImageBatch": [],
                "SolidMask": ["value", "width", "height"], "MaskComposite": ["x", "y", "operation"],
                "UNETLoader": ["unet_name", "weight_dtype"], "DualCLIPLoader": ["clip_name1", "clip_name2", "type"],
                "VAELoader": ["vae_name"], "FluxGuidance": ["guidance"],
                "EmptySD3LatentImage": ["width", "height", "batch_size"]}
CORE_SEEDS = {"seed", "noise_seed"}  # ComfyUI's core seed widgets are followed by their control value


def uses_sd(prompt: dict) -> bool:
    """SD workflows need ComfyUI's own loaders and samplers: tests/comfyui runs their twins."""
    return any(n["class_type"] in ("CheckpointLoaderSimple", "UNETLoader", "HSpaceLoadDemoSDModel")
               for n in prompt.values())


def ui_to_api(ui: dict) -> dict:
    """Our reading of a UI-format file: widgets_values onto widget inputs in INPUT_TYPES order
    (skipping the control value after seeds), links onto socket inputs."""
    links = {l[0]: l for l in ui["links"]}
    prompt = {}
    for node in ui["nodes"]:
        inputs = {}
        for inp in node["inputs"]:
            if inp["link"] is not None:
                l = links[inp["link"]]
                inputs[inp["name"]] = [str(l[1]), l[2]]
        values = list(node["widgets_values"])
        if node["type"] in CORE_WIDGETS:
            names = CORE_WIDGETS[node["type"]]
            kinds = [("INT", {"control_after_generate": True}) if n in CORE_SEEDS else None for n in names]
        else:
            spec = NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES()
            pairs = [(n, e) for sec in ("required", "optional") for n, e in spec.get(sec, {}).items()
                     if isinstance(e[0], list) or e[0] in ("INT", "FLOAT", "STRING", "BOOLEAN")]
            names = [n for n, _ in pairs]
            kinds = [e for _, e in pairs]
        for name, entry in zip(names, kinds):
            inputs[name] = values.pop(0)
            if entry and entry[0] == "INT" and (entry[1].get("control_after_generate") or name == "seed"):
                assert values.pop(0) in ("fixed", "increment", "decrement", "randomize")
        inputs.pop("upload", None)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def test_every_workflow_has_a_thumbnail_and_a_twin():
    names = {p.stem for p in UI}
    assert names == {"edit_image_with_direction", "strength_sweep_strip", "mix_two_directions",
                     "direction_from_image_sets", "direction_from_text", "pca_directions",
                     "sd15_prompt_pair_sweep", "sdxl_symmetric_edit", "sd15_edit_real_image", "edit_friendly_inversion",
                     "jacobian_direction", "sd15_edit_friendly_inversion", "sd_world_prompt_pair_sweep",
                     "sd_world_edit_real_image", "sd_world_symmetric_edit", "sd_world_mix_two_directions",
                     "sd_world_region_edit", "flux1_dev_prompt_pair_sweep", "flux1_schnell_edit_real_image",
                     "sd35_prompt_pair_sweep", "flow_world_prompt_pair_sweep", "flow_world_edit_real_image",
                     "flow_world_region_edit", "flow_world_mix_two_directions"}
    for p in UI:
        assert p.with_suffix(".jpg").exists(), f"{p.name} has no thumbnail"
        assert (TWINS / p.name).exists(), f"{p.name} has no API twin"
        ui = json.loads(p.read_text())
        assert ui["version"] == 0.4 and ui["nodes"] and "links" in ui


@pytest.mark.parametrize("path", UI, ids=[p.stem for p in UI])
def test_twin_matches_ui_file(path):
    twin = json.loads((TWINS / path.name).read_text())
    converted = ui_to_api(json.loads(path.read_text()))
    assert set(converted) == set(twin)
    for node_id, node in converted.items():
        want = {k: v for k, v in twin[node_id]["inputs"].items()}
        if node["class_type"] == "HSpaceDirectionFromText":  # the twin runs a tiny CLIP
            for k in ("clip_name", "clip_arch"):
                want.pop(k), node["inputs"].pop(k)
        assert node["class_type"] == twin[node_id]["class_type"]
        assert node["inputs"] == want, node_id


PIXEL_TWINS = [p for p in sorted(TWINS.glob("*.json")) if not uses_sd(json.loads(p.read_text()))]


def _real_comfyui() -> bool:
    from tests.comfyui.tiny_sd import comfy_available

    return comfy_available() is None


@pytest.mark.skipif(_real_comfyui(), reason="a real ComfyUI is here: tests/comfyui runs every twin in its executor "
                                            "(each behaviour proved once)")
@pytest.mark.parametrize("path", PIXEL_TWINS, ids=lambda p: p.stem)
def test_workflow_twin_executes(path, models_dir, tmp_path):
    prompt = json.loads(path.read_text())
    classes = {**NODE_CLASS_MAPPINGS, **core_nodes(ROOT / "example_workflows" / "input", tmp_path / "output")}
    results, ui = execute(prompt, classes)
    saved = [f for v in ui.values() for f in v.get("images", [])]
    assert saved, "the workflow saved no image"
    for name in saved:
        assert (tmp_path / "output" / name).stat().st_size > 0
    for node_id, out in results.items():
        for value in out:
            if isinstance(value, torch.Tensor) and value.ndim == 4 and value.shape[-1] == 3:
                assert 0 <= float(value.min()) and float(value.max()) <= 1 and torch.isfinite(value).all()
    if any(n["class_type"] == "HSpaceSaveDirection" for n in prompt.values()):
        assert list((models_dir / "hspace_directions").rglob("*.safetensors"))


def test_executor_rejects_what_comfyui_rejects(models_dir, tmp_path):
    prompt = json.loads((TWINS / "strength_sweep_strip.json").read_text())
    classes = {**NODE_CLASS_MAPPINGS, **core_nodes(ROOT / "example_workflows" / "input", tmp_path)}
    bad = json.loads(json.dumps(prompt))
    bad["3"]["inputs"]["steps"] = 1
    with pytest.raises(PromptError, match="smaller than min"):
        execute(bad, classes)
    bad = json.loads(json.dumps(prompt))
    bad["5"]["inputs"]["direction"] = ["2", 0]
    with pytest.raises(PromptError, match="expects HSPACE_DIRECTION"):
        execute(bad, classes)
