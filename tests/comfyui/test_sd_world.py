"""The miniature SD world in a real ComfyUI: the example workflows' twins on the shipped model, read by the
world's probe. The smile sweep (strengths from 0 up: negative ones do not take the smile away in this world)
must move the smile up on every seed: on random weights (the test-only tiny checkpoint) the same graph gives
readings with no order."""

import json

import pytest
import torch

from tests.comfyui.harness import ROOT

TWINS = ROOT / "tests" / "pack" / "workflows"


def read_saved(run, base, node):
    """Probe readings of the images a SaveImage node wrote, in batch order."""
    import numpy as np
    from PIL import Image

    from hspace_core.demo.probe import load_probe
    from hspace_sdworld.sampling import read

    files = run.saved(base, node)
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"), dtype=np.float32))
                          for f in files]).permute(0, 3, 1, 2) / 127.5 - 1
    return read(load_probe(), images)


def weights_built():
    from hspace_sdworld.models import FILES, WEIGHTS

    return all((WEIGHTS / f).exists() for f in FILES.values())


@pytest.mark.skipif(not weights_built(), reason="the miniature SD world's weights are not built")
def test_the_shipped_smile_sweep_moves_the_smile_up_on_8_seeds(comfy):
    from hspace_sdworld.configs import RECOMMENDED

    prompt = json.loads((TWINS / "sd_world_prompt_pair_sweep.json").read_text())
    sampler = next(k for k, v in prompt.items() if v["class_type"] == "SamplerCustom")
    save = next(k for k, v in prompt.items() if v["class_type"] == "SaveImage"
                and v["inputs"]["filename_prefix"].endswith("sdworld_sweep"))
    strengths = [float(s) for s in next(v for v in prompt.values()
                                        if v["class_type"] == "HSpaceAsyrpSamplerSD")["inputs"]["strengths"].split(",")]
    assert strengths == sorted(strengths) and max(strengths) == RECOMMENDED["strength"]
    rows = []
    for seed in range(8):
        prompt[sampler]["inputs"]["noise_seed"] = 1000 + seed
        run = comfy.run(prompt)
        assert run.status == "success", run.error()
        smile = read_saved(run, comfy.base, save)["smile"]
        assert len(smile) == len(strengths)
        rows.append(smile)
    smile = torch.stack(rows)  # [seeds, strengths]
    assert strengths[0] == 0.0
    # every seed smiles more at the largest strength than unedited; on average more at half of it than at
    # 0 and more at the largest than at half (quarter steps are within the probe's noise on 8 seeds)
    assert bool((smile[:, -1] > smile[:, 0]).all()), smile
    mean = smile.mean(0)
    print("smile (mean of 8 seeds) at strengths", strengths, ":", [round(float(v), 3) for v in mean],
          "; lowest rise of a seed:", round(float((smile[:, -1] - smile[:, 0]).min()), 3))
    half = strengths.index(strengths[-1] / 2)
    assert float(mean[0]) < float(mean[half]) < float(mean[-1]), mean
    assert float(mean[-1] - mean[0]) >= 0.15, smile
