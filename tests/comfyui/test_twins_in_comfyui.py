"""Every example workflow's API twin (tests/pack/workflows) queued in a real ComfyUI's executor, on the
test-only tiny stand-ins of the stock loaders (apart from test_in_comfyui.py so that the two files share
the CI's two workers; see harness.py for how the server is started)."""

import json

import pytest

from tests.comfyui.harness import ROOT
from tests.comfyui.test_in_comfyui import saved_files

TWINS = sorted((ROOT / "tests" / "pack" / "workflows").glob("*.json"))


def on_tiny_sd(prompt: dict) -> dict:
    """An SD or flow workflow's twin on the test-only tiny model nodes (ComfyUI's SD1.5 / SDXL / SD3 / Flux
    classes, random weights, the outputs CheckpointLoaderSimple, UNETLoader, DualCLIPLoader and VAELoader give)
    at 64 px and few steps; the pixel direction finders with fewer steps, samples and iterations, at most four
    procedural faces, and every sampler's sweep cut to its two ends."""
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        inputs = node["inputs"]
        stand_in = {"CheckpointLoaderSimple": "HSpaceTestTinySDCheckpoint", "UNETLoader": "HSpaceTestTinyFlowUNet",
                    "DualCLIPLoader": "HSpaceTestTinyTextEncoders", "VAELoader": "HSpaceTestTinyVAE16"}
        node["class_type"] = stand_in.get(node["class_type"], node["class_type"])
        for key in ("width", "height"):
            if key in inputs and node["class_type"] in ("EmptyLatentImage", "EmptySD3LatentImage",
                                                        "HSpaceDirectionFromPrompts", "ImageScale"):
                inputs[key] = 64
        if node["class_type"] in ("BasicScheduler", "KSampler"):
            inputs["steps"] = 4
        if node["class_type"] == "HSpaceDirectionFromPrompts":
            inputs["seeds"] = 2
        if node["class_type"] == "HSpaceAsyrpSamplerSD" and inputs.get("t_skip"):
            inputs["t_skip"] = 1  # of the 4 steps
        # the pixel direction finders at a tenth of their work: the graph runs as shipped, the sizes are the
        # thumbnail builder's business
        if node["class_type"] in ("HSpaceDirectionPCA", "HSpaceDirectionFromImages", "HSpaceDirectionFromText",
                                  "HSpaceDirectionJacobian", "HSpaceDDIMInvert") and inputs.get("steps", 0) > 10:
            inputs["steps"] = 10
        if node["class_type"] == "HSpaceDirectionPCA":
            inputs["samples"] = min(inputs["samples"], 8)
        if node["class_type"] == "HSpaceDirectionJacobian":
            inputs["iterations"] = min(inputs["iterations"], 3)
        if node["class_type"] == "HSpaceProceduralFaces":
            inputs["count"] = min(inputs["count"], 4)
        if node["class_type"] == "HSpaceAsyrpSampler" and "inversion" not in inputs and not inputs.get("steps"):
            inputs["steps"] = 10  # fresh samples: 10 steps (an inversion's grid is already 10)
        if node["class_type"] in ("HSpaceAsyrpSampler", "HSpaceAsyrpSamplerSD"):
            sweep = [v.strip() for v in str(inputs.get("strengths", "")).split(",") if v.strip()]
            if len(sweep) > 2:
                inputs["strengths"] = f"{sweep[0]}, {sweep[-1]}"  # the sweep's ends
    return prompt


# The twins whose graphs run a direction finder or an inversion on a miniature world take 5-15 s each alone (four
# times that beside the other worker): the default run queues the others, one or more per model family and sampler
# (a flow-world edit among them), and these run with -m slow. Their nodes' work is proved in the default run by
# tests/pack/test_nodes.py (PCA, Jacobian, text, image sets, mixer), test_sd_world.py, test_flow_models.py and
# test_sd_models.py (inversions, region, mixing on SD and flow models); test_twin_matches_ui_file checks every graph.
HEAVY = {"pca_directions", "jacobian_direction", "direction_from_text", "direction_from_image_sets",
         "sd15_edit_friendly_inversion", "sd_world_edit_real_image", "sd_world_region_edit", "sd_world_symmetric_edit",
         "sd_world_mix_two_directions", "flow_world_edit_real_image", "flow_world_region_edit",
         "flow_world_mix_two_directions"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in HEAVY else p for p in TWINS],
                         ids=[p.stem for p in TWINS])
def test_example_workflow_twin_runs_in_comfyuis_executor(comfy, path):
    from PIL import Image

    prompt = on_tiny_sd(json.loads(path.read_text()))
    run = comfy.run(prompt)
    assert run.status == "success", run.error()
    saves = [k for k, v in prompt.items() if v["class_type"] == "SaveImage"]
    assert saves
    for node in saves:
        files = saved_files(comfy, run, node)
        assert files, f"SaveImage {node} wrote nothing"
        for f in files:
            with Image.open(f) as im:
                assert im.format == "PNG" and im.width >= 32 and im.height >= 32 and "prompt" in im.info
    for node, spec in prompt.items():
        if spec["class_type"] == "HSpaceSaveDirection":
            prefix = spec["inputs"]["filename_prefix"]
            found = list((comfy.base / "models" / "hspace_directions").glob(f"{prefix}_*.safetensors"))
            assert found, f"no direction file {prefix}_*.safetensors"
    # the SD sampler and inversion report every step as one job on ComfyUI's progress bar, as stock samplers
    for node, spec in prompt.items():
        if spec["class_type"] == "HSpaceInvertLatent" or (
                spec["class_type"] == "SamplerCustom" and prompt[spec["inputs"]["sampler"][0]]["class_type"]
                == "HSpaceAsyrpSamplerSD"):
            events = [m for m in run.events("progress") if m.get("node") == node]
            values = [m["value"] for m in events]
            # every step once, in order, ending at the bar's end (t_skip's skipped steps count as done)
            assert values and values == list(range(values[0], values[-1] + 1)), (node, spec["class_type"], values)
            assert {m["max"] for m in events} == {values[-1]} and values[0] <= 2, (node, events)
