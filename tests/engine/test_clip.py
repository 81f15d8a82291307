"""CLIP-guided direction training on a tiny open_clip model (random init, built offline)."""

import copy
import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from hspace_core import HSpaceError, edit, invert, load_direction, save_direction
from hspace_core.discovery.clip import ClipTrainSettings, TrainStep, directional_clip_loss, train_clip_direction
from hspace_core.discovery.clip_model import load_clip, text_cosine, text_direction
from tests.engine.references import tiny_model

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    tmp = tmp_path_factory.mktemp("clip")
    cfg = tmp / "tiny-clip.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    net = open_clip.create_model("tiny-clip", pretrained=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "tiny_clip.safetensors"))
    return load_clip(tmp / "tiny_clip.safetensors", arch=str(cfg))


def test_directional_loss_is_its_definition():
    g = torch.Generator().manual_seed(0)
    e, s = F.normalize(torch.randn(4, 8, generator=g), dim=-1), F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(8, generator=g), dim=0)
    expected = (1 - F.cosine_similarity(F.normalize(e - s, dim=-1), text[None], dim=-1)).mean()
    assert float(directional_clip_loss(e, s, text)) == pytest.approx(float(expected), abs=1e-6)
    # image change parallel to the text change: loss 0; opposite: 2
    src = torch.tensor([[1.0, 0.0, 0.0]])
    t = torch.tensor([0.0, 1.0, 0.0])
    assert float(directional_clip_loss(src + t, src, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(directional_clip_loss(src - t, src, t)) == pytest.approx(2.0, abs=1e-6)


def test_text_direction_and_cosine(clip):
    import open_clip
    templates = open_clip.OPENAI_IMAGENET_TEMPLATES
    trg = F.normalize(clip.text_features([t("smiling face") for t in templates]), dim=-1)
    src = F.normalize(clip.text_features([t("face") for t in templates]), dim=-1)
    expected = F.normalize((trg - src).mean(0), dim=0)
    assert torch.allclose(text_direction(clip, "face", "smiling face"), expected, atol=1e-6)
    assert text_cosine(clip, "face", "face") == pytest.approx(1.0, abs=1e-5)


def test_clip_features_are_differentiable(clip):
    x = torch.zeros(1, 3, 48, 64, requires_grad=True)
    clip.image_features(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["deltablock", "global"])
def test_training_end_to_end(clip, tmp_path, kind):
    model = tiny_model()
    log = []
    settings = ClipTrainSettings(kind=kind, n_train_step=8, t_edit=300, n_iter=4, lr=0.05, seed=1)
    rng = torch.random.get_rng_state()
    d = train_clip_direction(model, clip, "face", "smiling face", n_samples=2, settings=settings,
                             callback=log.append)
    assert torch.equal(torch.random.get_rng_state(), rng)  # seeded by its own generator only
    # one job: the 8 sampling steps, then 4 iterations x 2 images x 5 training steps (t >= 300)
    assert [s.i for s in log] == list(range(8 + 40)) and {s.total for s in log} == {48}
    updates = [s for s in log if isinstance(s, TrainStep)]
    assert len(updates) == 40 and all(s.x0_pred.shape == (1, 3, 32, 32) for s in updates)
    per_iter = [sum(s.loss for s in updates if s.iteration == i) / sum(1 for s in updates if s.iteration == i)
                for i in range(4)]
    assert per_iter[-1] < per_iter[0], per_iter
    assert d.info.provenance["method"] == "clip" and d.info.provenance["target_text"] == "smiling face"
    assert d.info.made_steps == 8 and d.info.strength_unit == "asyrp" and d.info.t_edit == 300
    path = save_direction(d, tmp_path / f"smile_{kind}.safetensors")
    back = load_direction(path)
    back.check_fits(model)
    inv = invert(model, torch.rand(1, 3, 32, 32) * 2 - 1, steps=8)
    out = edit(model, inv, back, [0.0, 1.0], t_edit=300).images
    assert (out[:, 1] - out[:, 0]).abs().max() > 1e-4
    again = train_clip_direction(model, clip, "face", "smiling face", n_samples=2, settings=settings)
    x = torch.randn(1, *model.h_shape)
    t = torch.tensor([999])
    emb = torch.randn(1, model.emb_channels)
    assert torch.equal(again.delta(x, t, emb, 8), d.delta(x, t, emb, 8))  # deterministic for a seed


def test_missing_weights_and_bad_input(clip, tmp_path):
    with pytest.raises(HSpaceError, match="CLIP weights not found.*download"):
        load_clip(tmp_path / "ViT-B-16.safetensors")
    with pytest.raises(HSpaceError, match="source and a target"):
        train_clip_direction(tiny_model(), clip, "", "smile", n_samples=1)
    with pytest.raises(HSpaceError, match="training images or a number"):
        train_clip_direction(tiny_model(), clip, "a", "b")


def test_loading_a_config_leaves_nothing_in_the_temp_folder(clip, tmp_path, monkeypatch):
    # every load used to leave a folder with the config behind: hundreds after a day of ComfyUI runs
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with torch.no_grad():
        again = load_clip(clip.weights, arch=clip.arch)
        twice = load_clip(clip.weights, arch=clip.arch)
    assert list(tmp_path.iterdir()) == []
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.image_features(x), clip.image_features(x))
    assert torch.equal(twice.image_features(x), clip.image_features(x))


def test_training_inside_inference_mode_as_comfyui_runs_nodes(clip):
    # ComfyUI executes every node under torch.inference_mode(), and its loaders create the weights there
    settings = ClipTrainSettings(kind="deltablock", n_train_step=6, t_edit=300, n_iter=1, lr=0.05, seed=1)
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        model = tiny_model()
        net = copy.deepcopy(clip.model)
        assert next(net.parameters()).is_inference() and next(model.unet.parameters()).is_inference()
        d = train_clip_direction(model, replace(clip, model=net), "face", "smiling face", images=images,
                                 settings=settings)
    plain = train_clip_direction(tiny_model(), clip, "face", "smiling face", images=images, settings=settings)
    x, t, emb = torch.randn(1, *model.h_shape), torch.tensor([999]), torch.randn(1, model.emb_channels)
    assert torch.allclose(d.delta(x, t, emb, 6), plain.delta(x, t, emb, 6), atol=1e-6)
    assert plain.delta(x, t, emb, 6).abs().sum() > 0


def test_reference_trajectory_cache_changes_nothing_but_the_work(clip):
    # with n_iter > 1 the unedited trajectory is computed once per image and reused; a cache too small
    # for every image (or none) must train exactly the same direction
    settings = ClipTrainSettings(kind="global", n_train_step=8, t_edit=300, n_iter=3, lr=0.05, seed=1)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    results = {}
    for mib in (2048, 0.1, 0):  # all images, only the first (one image's trajectory is ~74 KB), none
        model = tiny_model()
        conv_in = next(m for m in model.unet.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3)
        passes = []
        conv_in.register_forward_hook(lambda *_: passes.append(1))
        log = []
        d = train_clip_direction(model, clip, "face", "smiling face", images=images, settings=settings,
                                 inversion_steps=8, callback=log.append, reference_cache_mib=mib)
        results[mib] = (d.values, [s.loss for s in log if isinstance(s, TrainStep)], len(passes))
    values, losses, passes_all = results[2048]
    for mib in (0.1, 0):
        assert torch.equal(results[mib][0], values) and results[mib][1] == losses
    updates = len(losses)  # n_iter * images * training steps; each needs an encoder pass on the edited path
    per_iter = updates // 3
    # none cached: every iteration also re-runs the reference path; all cached: only the first does
    assert results[0][2] - passes_all == 2 * per_iter  # iterations 2 and 3, both images
    assert results[0][2] - results[0.1][2] == per_iter  # iterations 2 and 3, the first image only
