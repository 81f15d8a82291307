"""The pack inside a real ComfyUI: its loader, node-info code, executor, progress hook, interruption
and memory manager (see harness.py for how the server is started)."""

import re
import time
from pathlib import Path

import pytest
import torch

from nodes.registry import NODE_CLASS_MAPPINGS
from tests.comfyui.harness import PACK_NAME, ROOT, PromptRejected

def demo_model():
    return {"class_type": "HSpaceLoadUnconditionalDDPM",
            "inputs": {"ckpt_name": "demo_faces32 (embedded)", "image_size": 0, "num_heads": 0, "schedule": "auto",
                       "num_timesteps": 0}}


def faces(count, seed):
    values = {k: -2.0 for k in ("smile", "eye_size", "face_width", "hair_hue", "skin_tone", "background_hue",
                                "head_tilt")}
    return {"class_type": "HSpaceProceduralFaces",
            "inputs": {"count": count, "seed": seed, **values, "glasses": "random", "hat": "random"}}


def sampler(strengths, seed, steps=0, **links):
    return {"class_type": "HSpaceAsyrpSampler",
            "inputs": {"strength": 1.0, "strengths": strengths, "interval": "explicit", "t_edit": 400, "t_boost": 0,
                       "text_cosine": 1.0, "steps": steps, "eta": 1.0, "variant": "asymmetric", "seed": seed,
                       "batch_size": 1, "clip_x0": False, **{k: list(v) for k, v in links.items()}}}


def edit_prompt(seed, prefix, strengths="0, 10", count=2, steps=0, size_policy="resize_crop", image=None):
    """Load the demo model, invert procedural faces (or ``image``), edit with the face-width direction, save."""
    source = image or faces(count, seed)
    return {"1": demo_model(), "2": source,
            "3": {"class_type": "HSpaceDDIMInvert", "inputs": {"model": ["1", 0], "image": ["2", 0], "steps": 10,
                                                              "size_policy": size_policy}},
            "4": {"class_type": "HSpaceLoadDirection", "inputs": {"direction_name": "demo_width (embedded)"}},
            "5": sampler(strengths, seed, steps, model=("1", 0), direction=("4", 0), inversion=("3", 0)),
            "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": prefix}}}


def saved_files(comfy, run, node="6") -> list[Path]:
    return run.saved(comfy.base, node)


# ------------------------------------------------------------------ loading and node info

def test_the_pack_loads_through_comfyuis_loader(comfy):
    log = comfy.log_text()
    assert re.search(rf"seconds: .*custom_nodes/{PACK_NAME}\s*$", log, re.M), log[-2000:]
    assert "IMPORT FAILED" not in log and "Cannot import" not in log
    info = comfy.get("/object_info")
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert node_id in info, f"{node_id} missing from /object_info"
        entry = info[node_id]
        ours = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            assert list(entry["input"].get(section, {})) == list(ours.get(section, {})), (node_id, section)
        assert entry["output"] == list(cls.RETURN_TYPES) and entry["category"] == cls.CATEGORY
        assert entry["python_module"] == f"custom_nodes.{PACK_NAME}"


# ------------------------------------------------------------------ the example workflows

def test_the_pack_placed_the_example_inputs_in_the_empty_input_folder(comfy):
    """The session's ComfyUI started with an empty input folder: the workflows' LoadImage faces are there
    because the pack put them there when it loaded (the twins below then run as shipped)."""
    for name in ("hspace_face.png", "hspace_sdworld_face.png"):
        assert (comfy.base / "input" / name).read_bytes() == (ROOT / "example_workflows" / "input" / name).read_bytes()
    assert "placed the example workflows' input images" in comfy.log_text()


# ------------------------------------------------------------------ progress, interruption, memory

def test_progress_reaches_comfyuis_hook_every_step_with_previews(comfy):
    prompt = edit_prompt(seed=101, prefix="hspace/progress")
    prompt["7"] = {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}}  # the reconstruction
    run = comfy.run(prompt)
    assert run.status == "success", run.error()
    shown = run.outputs()["7"]["images"]
    assert shown and all(im["type"] == "temp" and (comfy.base / "temp" / im["subfolder"] / im["filename"]).exists()
                         for im in shown)
    for node, total in (("3", 9 + 10), ("5", 10)):  # invert: 9 inversion + 10 reconstruction steps; edit: 10
        values = [m["value"] for m in run.events("progress") if m.get("node") == node]
        assert values == list(range(1, total + 1)), (node, values)
        assert {m["max"] for m in run.events("progress") if m.get("node") == node} == {total}
    assert run.previews >= 19 + 10  # one x0 preview per step (binary frames)


def test_interrupting_the_sampler_stops_within_a_step_and_writes_nothing(comfy):
    seen = {}

    def interrupt_early(server, event, data):
        if event == "progress" and data.get("node") == "5" and data["value"] >= 3 and "at" not in seen:
            seen["at"] = data["value"]
            server.post("/interrupt", {})
            seen["after"] = max(seen.get("after", 0), data["value"])

    # 8 faces x 10 strengths x 200 steps: slow enough to be caught mid-run
    prompt = edit_prompt(seed=202, prefix="hspace/interrupted", strengths=", ".join(str(s) for s in range(10)),
                         count=8, steps=200)
    run = comfy.run(prompt, on_message=interrupt_early)
    assert run.events("execution_interrupted"), run.messages[-5:]
    assert run.status != "success"
    values = [m["value"] for m in run.events("progress") if m.get("node") == "5"]
    # the progress hook raises at the first update after the flag is set: at most one more step ran
    # after the websocket carried the step we interrupted at (plus the steps in flight meanwhile)
    assert "at" in seen and max(values) <= seen["at"] + 3 and max(values) < 200, (seen, values)
    assert not list((comfy.base / "output" / "hspace").glob("interrupted*"))
    after = comfy.run(edit_prompt(seed=203, prefix="hspace/after_interrupt"))
    assert after.status == "success" and saved_files(comfy, after)


def test_the_model_goes_through_comfyuis_memory_manager_without_leaking(comfy):
    def loads():
        return comfy.log_text().count("Requested to load DDPMUNet")

    rss = []
    for k in range(3):
        run = comfy.run(edit_prompt(seed=300 + k, prefix=f"hspace/memory{k}", count=2))
        assert run.status == "success", run.error()
        rss.append(comfy.rss_mib())
    before = loads()
    again = comfy.run(edit_prompt(seed=310, prefix="hspace/memory_again", count=2))
    assert again.status == "success" and loads() == before  # still loaded: load_models_gpu found it
    status, _ = comfy.post("/free", {"unload_models": True})
    assert status == 200
    # ComfyUI's prompt worker reads the flag after each prompt it takes from the queue (its idle wake may be
    # 1000 s away): a one-node prompt applies it before the edit below is queued
    nudge = comfy.run({"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                                     "color": 0}},
                       "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}})
    assert nudge.status == "success", nudge.error()
    after_free = comfy.run(edit_prompt(seed=311, prefix="hspace/memory_free", count=2))
    assert after_free.status == "success" and loads() == before + 1  # unloaded, so loaded again
    assert rss[2] - rss[0] < 64, rss  # three runs of the same work do not grow the server
    assert "Potential memory leak detected with model DDPMUNet" not in comfy.log_text()


# ------------------------------------------------------------------ bad input, in the real executor

def _other_network_direction(comfy) -> str:
    """A direction file made for another network (the tiny ADM test model) in models/hspace_directions."""
    from hspace_core import DirectionInfo, TensorDirection, save_direction
    from tests.engine.references import tiny_model

    other = tiny_model("adm")
    d = TensorDirection(torch.ones(other.h_shape), None, DirectionInfo(
        h_shape=other.h_shape, network_fingerprint=other.fingerprint, family="adm", name="adm_direction"))
    path = comfy.base / "models" / "hspace_directions" / "for_another_model.safetensors"
    if not path.exists():
        save_direction(d, path)
    return path.name


def _errors(comfy):
    wide = {"class_type": "LoadImage", "inputs": {"image": "wide_48x32.png"}}
    if not (comfy.base / "input" / "wide_48x32.png").exists():
        from PIL import Image
        Image.new("RGB", (48, 32), (180, 120, 90)).save(comfy.base / "input" / "wide_48x32.png")
    corrupt = comfy.base / "models" / "hspace" / "corrupt.safetensors"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    other = edit_prompt(seed=401, prefix="hspace/bad")
    other["4"] = {"class_type": "HSpaceLoadDirection", "inputs": {"direction_name": _other_network_direction(comfy)}}
    corrupt_model = edit_prompt(seed=402, prefix="hspace/bad")
    corrupt_model["1"]["inputs"]["ckpt_name"] = "corrupt.safetensors"
    return {
        "another model's direction": (other, "5", "HSpaceAsyrpSampler", "'adm_direction' was made for h with 64"),
        "corrupt checkpoint": (corrupt_model, "1", "HSpaceLoadUnconditionalDDPM", "not a readable safetensors file"),
        "size policy refuses": (edit_prompt(seed=403, prefix="hspace/bad", size_policy="error", image=wide), "3",
                                "HSpaceDDIMInvert", "images are 48x32 but the model takes 32x32"),
        "strengths not numbers": (edit_prompt(seed=404, prefix="hspace/bad", strengths="1, two"), "5",
                                  "HSpaceAsyrpSampler", "strengths must be numbers"),
    }


@pytest.mark.parametrize("case", ["another model's direction", "corrupt checkpoint", "size policy refuses",
                                  "strengths not numbers"])
def test_bad_input_is_an_execution_error_naming_the_node(comfy, case):
    prompt, node, node_type, message = _errors(comfy)[case]
    run = comfy.run(prompt)
    err = run.error()
    assert err is not None, run.status
    assert err["node_id"] == node and err["node_type"] == node_type and message in err["exception_message"], err
    assert not list((comfy.base / "output" / "hspace").glob("bad*"))
    good = comfy.run(edit_prompt(seed=405 + len(case), prefix="hspace/after_error"))
    assert good.status == "success"  # the server goes on


def test_a_missing_checkpoint_is_refused_at_queue_time_naming_the_node(comfy):
    prompt = edit_prompt(seed=420, prefix="hspace/bad")
    prompt["1"]["inputs"]["ckpt_name"] = "missing.ckpt"
    with pytest.raises(PromptRejected) as e:
        comfy.run(prompt)
    errors = e.value.args[0]["node_errors"]["1"]
    assert errors["class_type"] == "HSpaceLoadUnconditionalDDPM"
    assert any(err["type"] == "value_not_in_list" and "missing.ckpt" in err["details"] for err in errors["errors"])


def test_an_empty_clip_folder_still_offers_the_embedded_tiny_clip(comfy):
    """With no CLIP weights in models/text_encoders the text node offers the demo world's embedded tiny
    CLIP (and trains with it); a file that is not there is refused at queue time, naming the node."""
    from nodes.discovery import EMBEDDED_CLIP

    folder = comfy.base / "models" / "text_encoders"
    hidden = comfy.base / "hidden_clip"
    hidden.mkdir(exist_ok=True)
    for f in list(folder.glob("*.safetensors")):
        f.rename(hidden / f.name)
    try:
        time.sleep(1.1)  # the folder listing is cached by the directory's mtime
        info = comfy.get("/object_info/HSpaceDirectionFromText")
        choices = info["HSpaceDirectionFromText"]["input"]["required"]["clip_name"][0]
        assert choices == [EMBEDDED_CLIP]

        def prompt(clip_name):
            return {"1": demo_model(),
                    "2": {"class_type": "HSpaceDirectionFromText", "inputs": {
                        "model": ["1", 0], "source_text": "face", "target_text": "smiling face",
                        "clip_name": clip_name, "clip_arch": "ViT-B-16-quickgelu", "kind": "global", "samples": 1,
                        "steps": 10, "t_edit": 400, "lr": 0.5, "iterations": 1, "clip_weight": 1.0,
                        "l1_weight": 3.0, "seed": 0}},
                    "3": {"class_type": "HSpaceSaveDirection", "inputs": {"direction": ["2", 0],
                                                                          "filename_prefix": "hspace/tiny_clip"}}}

        run = comfy.run(prompt(EMBEDDED_CLIP))
        assert run.status == "success", run.error()
        assert list((comfy.base / "models" / "hspace_directions").glob("hspace/tiny_clip_*.safetensors"))
        with pytest.raises(PromptRejected) as e:
            comfy.run(prompt("open_clip_model.safetensors"))
        errors = e.value.args[0]["node_errors"]["2"]
        assert errors["class_type"] == "HSpaceDirectionFromText"
        assert any(err["type"] == "value_not_in_list" and "open_clip_model.safetensors" in err["details"]
                   for err in errors["errors"])
    finally:
        for f in hidden.glob("*"):
            f.rename(folder / f.name)


def test_the_sd_sampler_runs_in_sampler_custom_advanced(comfy):
    """The Asyrp SAMPLER in SamplerCustomAdvanced (RandomNoise, CFGGuider), on the tiny SD1.5 checkpoint:
    a sweep of three strengths gives three different images, the middle one (strength 0) the plain one."""
    prompt = {
        "1": {"class_type": "HSpaceTestTinySDCheckpoint", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a face", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a smiling face", "clip": ["1", 1]}},
        "4": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 4,
                                                          "denoise": 1.0}},
        "5": {"class_type": "HSpaceDirectionFromPrompts",
              "inputs": {"model": ["1", 0], "source": ["2", 0], "target": ["3", 0], "sigmas": ["4", 0], "seeds": 2,
                         "seed": 0, "width": 64, "height": 64, "spatial": "average", "name": "smile"}},
        "6": {"class_type": "HSpaceApplyDirection",
              "inputs": {"model": ["1", 0], "direction": ["5", 0], "strength": 50.0, "t_edit": 0, "t_end": 999,
                         "branch": "both", "mode": "asymmetric"}},
        "7": {"class_type": "CFGGuider", "inputs": {"model": ["6", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                    "cfg": 3.0}},
        "8": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "9": {"class_type": "HSpaceAsyrpSamplerSD", "inputs": {"strengths": "-1, 0, 1", "eta": 0.0, "t_boost": 0}},
        "10": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "11": {"class_type": "SamplerCustomAdvanced",
               "inputs": {"noise": ["8", 0], "guider": ["7", 0], "sampler": ["9", 0], "sigmas": ["4", 0],
                          "latent_image": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["1", 2]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "hspace/advanced"}},
        "14": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 5, "steps": 4, "cfg": 3.0,
                                                    "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                                                    "positive": ["2", 0], "negative": ["3", 0],
                                                    "latent_image": ["10", 0]}},
        "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["1", 2]}},
        "16": {"class_type": "SaveImage", "inputs": {"images": ["15", 0], "filename_prefix": "hspace/advanced_plain"}},
    }
    run = comfy.run(prompt)
    assert run.status == "success", run.error()
    import numpy as np
    from PIL import Image

    swept = [np.asarray(Image.open(f), dtype=np.int16) for f in saved_files(comfy, run, "13")]
    plain = [np.asarray(Image.open(f), dtype=np.int16) for f in saved_files(comfy, run, "16")]
    assert len(swept) == 3 and len(plain) == 1
    assert np.abs(swept[1] - plain[0]).max() <= 1  # strength 0: ComfyUI's own euler, up to 8-bit rounding
    assert np.abs(swept[0] - swept[1]).max() > 2 and np.abs(swept[2] - swept[1]).max() > 2
