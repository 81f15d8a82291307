"""Every node class, executed directly (no ComfyUI): registration, behaviour, and its errors."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from hspace_core import DirectionInfo, HSpaceError, TensorDirection, load_direction
from nodes.convert import engine_to_image
from nodes.discovery import DirectionFromImages, DirectionFromText, DirectionJacobian, DirectionPCA
from nodes.editing import AsyrpSampler, DDIMInvert
from nodes.loaders import EMBEDDED_DEMO, LoadDirection, LoadUnconditionalDDPM, SaveDirection
from nodes.demo import ImageStrip, ProceduralFaces
from nodes.mixer import DirectionMixer
from nodes.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from tests.engine.references import tiny_model

ROOT = Path(__file__).resolve().parents[2]


def test_pack_imports_as_comfyui_imports_it():
    """ComfyUI imports the folder by path under a path-derived module name, with relative imports."""
    spec = importlib.util.spec_from_file_location("custom_nodes_x_hspace_pack", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    assert set(module.NODE_CLASS_MAPPINGS) == set(NODE_CLASS_MAPPINGS)


def test_registration_conventions():
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("HSpace") and node_id in NODE_DISPLAY_NAME_MAPPINGS
        assert cls.CATEGORY.startswith("h-space") and cls.DESCRIPTION and callable(getattr(cls, cls.FUNCTION))
        spec = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                assert entry[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        if cls.RETURN_TYPES:
            assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)


def faces(n=2, seed=0, **fixed):
    values = {k: -2.0 for k in ("smile", "eye_size", "face_width", "hair_hue", "skin_tone", "background_hue",
                                "head_tilt")}
    values.update(glasses="random", hat="random")
    values.update(fixed)
    return ProceduralFaces().render(n, seed, **values)[0]


@pytest.fixture(scope="module")
def demo(models_dir):
    return LoadUnconditionalDDPM().load(EMBEDDED_DEMO)[0]


def test_load_model_lists_embedded_first_and_folder_models(models_dir, demo):
    from safetensors.torch import save_file
    tiny = tiny_model()
    save_file({k: v.contiguous() for k, v in tiny.unet.state_dict().items()}, str(models_dir / "hspace" / "tiny.safetensors"),
              metadata={"hspace.image_size": "32"})
    choices = LoadUnconditionalDDPM.INPUT_TYPES()["required"]["ckpt_name"][0]
    assert choices[0] == EMBEDDED_DEMO and "tiny.safetensors" in choices
    loaded = LoadUnconditionalDDPM().load("tiny.safetensors", 0, 0, "auto", 0)[0]
    assert loaded.model.h_shape == tiny.h_shape and loaded.model.fingerprint == tiny.fingerprint
    assert demo.model.image_size == 32 and demo.name == EMBEDDED_DEMO
    (models_dir / "hspace" / "broken.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(HSpaceError, match="broken.ckpt"):
        LoadUnconditionalDDPM().load("broken.ckpt")


def test_invert_and_sweep(demo):
    image = faces(2, 3)
    before = image.clone()
    inv, rec = DDIMInvert().invert(demo, image, 10, "resize_crop")
    assert torch.equal(image, before)  # inputs are never changed
    assert rec.shape == (2, 32, 32, 3) and 0 <= float(rec.min()) and float(rec.max()) <= 1
    width = LoadDirection().load("demo_width (embedded)")[0]
    out = AsyrpSampler().sample(demo, 1.0, "-10, 0, 10", "from direction", 500, 0, 1.0, 0, 1.0, "asymmetric", 0,
                                direction=width, inversion=inv)[0]
    assert out.shape == (6, 32, 32, 3)
    assert torch.allclose(out[1], rec[0], atol=1e-3)  # strength 0 = the reconstruction (< 1/4 grey level)
    assert (out[2] - out[0]).abs().max() > 0.05


def test_edit_friendly_inversion_node_reconstructs_exactly(demo):
    image = faces(2, 4)
    inv, rec = DDIMInvert().invert(demo, image, 10, "resize_crop", method="ddpm (edit-friendly)", seed=1)
    assert inv.noise_maps.shape == (10, 2, 3, 32, 32)
    assert (rec - image).abs().max() < 1 / 255  # the input itself, not an approximation
    width = LoadDirection().load("demo_width (embedded)")[0]
    out = AsyrpSampler().sample(demo, 1.0, "-2, 0, 2", "from direction", 500, 0, 1.0, 0, 1.0, "asymmetric", 0,
                                direction=width, inversion=inv, t_skip=2)[0]
    assert out.shape == (6, 32, 32, 3)
    assert (out[1] - image[0]).abs().max() < 1 / 255 and (out[2] - out[0]).abs().max() > 0.05
    with pytest.raises(HSpaceError, match="replays its own 10-step grid"):
        AsyrpSampler().sample(demo, 1.0, "", "from direction", 500, 0, 1.0, 20, 1.0, "asymmetric", 0,
                              direction=width, inversion=inv)


def test_jacobian_direction_node(demo):
    d = DirectionJacobian().find(demo, faces(2, 5), 1, 500, 0, 10, 3, 0, batch_index=1)[0]
    assert d.info.provenance["method"] == "jacobian" and d.info.provenance["component"] == 1
    assert d.info.strength_unit == "h_norm" and d.values.shape == demo.model.h_shape
    with pytest.raises(HSpaceError, match="batch_index 2 is outside the batch of 2"):
        DirectionJacobian().find(demo, faces(2, 5), 0, 500, 0, 10, 3, 0, batch_index=2)


def test_sampler_fresh_samples_and_errors(demo):
    out = AsyrpSampler().sample(demo, 0.0, "", "explicit", 500, 0, 1.0, 8, 1.0, "asymmetric", 5, batch_size=3)[0]
    assert out.shape == (3, 32, 32, 3)
    with pytest.raises(HSpaceError, match="numbers"):
        AsyrpSampler().sample(demo, 0.0, "1, x", "explicit", 500, 0, 1.0, 8, 1.0, "asymmetric", 5)
    wrong = TensorDirection(torch.zeros(64, 1, 1), None, DirectionInfo(h_shape=(64, 1, 1), name="other"))
    with pytest.raises(HSpaceError, match="channels"):
        AsyrpSampler().sample(demo, 1.0, "", "explicit", 500, 0, 1.0, 8, 1.0, "asymmetric", 5, direction=wrong)
    inv, _ = DDIMInvert().invert(demo, faces(1), 6, "resize_crop")
    with pytest.raises(HSpaceError, match="t_edit"):
        AsyrpSampler().sample(demo, 1.0, "", "explicit", 3000, 0, 1.0, 0, 1.0, "asymmetric", 5, inversion=inv,
                              direction=LoadDirection().load("demo_smile (embedded)")[0])
    table = AsyrpSampler().sample(demo, 0.0, "", "official table: celeba", 0, 0, 0.8, 4, 1.0, "asymmetric", 5)[0]
    assert table.shape == (1, 32, 32, 3)


def test_wrong_image_size_policy(demo):
    big = engine_to_image(torch.zeros(1, 3, 48, 40), torch.device("cpu"))
    with pytest.raises(HSpaceError, match="resize"):
        DDIMInvert().invert(demo, big, 4, "error")
    inv, rec = DDIMInvert().invert(demo, big, 4, "resize_crop")
    assert rec.shape == (1, 32, 32, 3) and "centre-cropped" in inv.preprocessing[0]


def test_directions_by_independence_are_a_calibrated_list_with_a_preview(demo):
    from hspace_core.directions.calibration import calibration_of
    from nodes.discovery import DirectionsByIndependence

    ds, preview = DirectionsByIndependence().find(demo, 1, 0, 0, 500, 8, 8, 2)  # one calibration: the slow part
    assert [d.info.name for d in ds] == ["ic0"] and ds[0].info.provenance["dims"] == 2
    assert calibration_of(ds[0]) is not None
    assert preview.shape[0] == 1 and preview.shape[-1] == 3 and preview.shape[2] >= 3 * 32  # -2, 0, +2
    with pytest.raises(HSpaceError, match="more than 3"):
        DirectionsByIndependence().find(demo, 1, 0, 0, 500, 8, 3, 2)
    with pytest.raises(HSpaceError, match="rotate must be one of h, effects"):  # the widget reaches the engine
        DirectionsByIndependence().find(demo, 1, 0, 0, 500, 8, 8, 2, rotate="pixels")


def test_directions_from_images_pca_mixer_and_save(demo, models_dir):
    pos, neg = faces(4, 1, smile=0.8), faces(4, 1, smile=-0.8)
    d = DirectionFromImages().find(demo, pos, neg, "mean difference", 8, 500, "resize_crop")[0]
    assert d.info.provenance["method"] == "supervised_mean_difference"
    pc = DirectionPCA().find(demo, 8, 1, 8, 500, 0)[0]
    assert pc.info.strength_unit == "std"
    # the finder nodes calibrate what they make on the model; the sampler and the mixer count in those units
    from hspace_core.directions.calibration import calibration_of

    cal_d, cal_pc = calibration_of(d), calibration_of(pc)
    assert cal_d.t == 500 and cal_d.usable is not None and cal_pc.scale > 0
    inv, _ = DDIMInvert().invert(demo, faces(1, 2), 8, "resize_crop")
    run = lambda strengths, units, direction=d: AsyrpSampler().sample(  # noqa: E731
        demo, 1.0, strengths, "explicit", 500, 0, 1.0, 0, 1.0, "asymmetric", 0, direction=direction, inversion=inv,
        units=units)[0]
    calibrated_1, raw_scale = run("1", "calibrated"), run(str(cal_d.scale), "raw")
    assert torch.allclose(calibrated_1, raw_scale, atol=1e-5)  # calibrated 1 is the calibration's raw strength
    assert run("auto", "calibrated").shape[0] == 4  # 0 and three steps up to the usable range's top
    with pytest.raises(HSpaceError, match="auto"):
        run("auto", "raw")
    in_units = DirectionMixer().mix(d, 1.0, 2.0, 1.0, 1.0, False, "joint", direction_2=pc)[0]
    assert calibration_of(in_units).how == "composed"
    expected = run(f"{cal_d.scale}", "raw")  # weight 1 of d, 2 of pc, each in its own calibrated unit
    both = run("1", "raw", in_units)
    alone_pc = run(f"{2 * cal_pc.scale}", "raw", pc)
    assert not torch.allclose(both, expected) and not torch.allclose(both, alone_pc)
    mixed = DirectionMixer().mix(d, 1.0, -0.5, 1.0, 1.0, False, "joint", direction_2=pc, units="raw")[0]
    held = DirectionMixer().mix(d, 1.0, 1.0, 1.0, 1.0, False, "joint", hold_fixed_1=pc)[0]
    for t in held.timesteps.tolist():  # orthogonal on the grid (between grid points the lerps are not)
        assert abs(float(torch.dot(held.at(t).flatten(), pc.at(t).flatten()))) < 1e-4 * float(
            held.at(t).norm() * pc.at(t).norm() + 1e-12)
    first = SaveDirection().save(mixed, "tests/mixed")
    second = SaveDirection().save(mixed, "tests/mixed")  # a rerun of the same workflow: the same one file
    assert first["ui"]["text"][0] == second["ui"]["text"][0]
    assert len(list((models_dir / "hspace_directions" / "tests").glob("mixed_*.safetensors"))) == 1
    other = SaveDirection().save(mixed.scaled(2.0), "tests/mixed")
    assert other["ui"]["text"][0] != first["ui"]["text"][0]
    back = load_direction(models_dir / "hspace_directions" / first["ui"]["text"][0])
    assert back.info.provenance["method"] == "mix"
    with pytest.raises(ValueError, match="inside"):
        SaveDirection().save(mixed, "../escape")
    names = LoadDirection.INPUT_TYPES()["required"]["direction_name"][0]
    embedded = ["demo_eyes", "demo_glasses", "demo_smile", "demo_width", "text_glasses", "text_hat", "text_smile",
                "text_wide"]
    assert names[:8] == [f"{n} (embedded)" for n in embedded]
    assert first["ui"]["text"][0] in names
    squatter = models_dir / "hspace_directions" / Path(first["ui"]["text"][0])
    kept = squatter.read_bytes()
    squatter.write_bytes(b"a user's own file under that name")  # never replaced: the new one gets a counter
    third = SaveDirection().save(mixed, "tests/mixed")
    assert third["ui"]["text"][0].endswith("_1.safetensors") and squatter.read_bytes() != kept
    squatter.write_bytes(kept)
    (models_dir / "hspace_directions" / third["ui"]["text"][0]).unlink()


def test_direction_from_text_and_missing_clip(demo, models_dir):
    from tests.pack.fixtures import TINY_CLIP_ARCH, TINY_CLIP_WEIGHTS
    d = DirectionFromText().train("face", "smiling face", TINY_CLIP_WEIGHTS, TINY_CLIP_ARCH, "global", 1, 6,
                                  500, 0.05, 1, 1.0, 3.0, 0, model=demo)[0]
    assert d.info.provenance["target_text"] == "smiling face"
    with pytest.raises(HSpaceError, match=r"clip folder .*models.*clip"):
        DirectionFromText().train("face", "smile", "(no CLIP weights found)", "ViT-B-16-quickgelu",
                                  "deltablock", 1, 6, 500, 0.5, 1, 1.0, 3.0, 0, model=demo)
    with pytest.raises(HSpaceError, match="connect a model"):
        DirectionFromText().train("face", "smile", TINY_CLIP_WEIGHTS, TINY_CLIP_ARCH, "global", 1, 6, 500, 0.05, 1,
                                  1.0, 3.0, 0)


def test_official_pth_in_direction_folder(models_dir, shared_dir, demo):
    import shutil
    src = shared_dir / "asyrp_official" / "directions" / "smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth"
    shutil.copy(src, models_dir / "hspace_directions" / src.name)
    d = LoadDirection().load(src.name)[0]
    assert d.info.name == "smiling"
    inv, _ = DDIMInvert().invert(demo, faces(1), 4, "resize_crop")
    with pytest.raises(HSpaceError, match="512 channels"):  # made for the CelebA-HQ DDPM, not the demo model
        AsyrpSampler().sample(demo, 1.0, "", "explicit", 500, 0, 1.0, 0, 1.0, "asymmetric", 0, direction=d,
                              inversion=inv)


def test_strip_and_faces():
    f = faces(3, 2, glasses="yes")
    strip = ImageStrip().tile(f, 2, 2)[0]
    assert strip.shape == (1, 128, 128, 3)
    assert torch.equal(strip[0, :64:2, :64:2], f[0])


def test_a_strength_sweep_must_be_finite_numbers():
    from hspace_core import HSpaceError
    from nodes.editing import parse_strengths

    assert parse_strengths(1.0, "-1, 0 2.5") == [-1.0, 0.0, 2.5] and parse_strengths(0.5, " ") == [0.5]
    for bad, message in (("0, nan", "finite"), ("inf", "finite"), ("1, two", "numbers")):
        with pytest.raises(HSpaceError, match=message):
            parse_strengths(1.0, bad)


def test_the_example_inputs_are_placed_without_replacing_a_users_file(tmp_path):
    from nodes.comfy_bridge import SAMPLE_INPUTS, place_sample_inputs

    shipped = sorted(p.name for p in SAMPLE_INPUTS.glob("*.png"))
    assert shipped == ["hspace_face.png", "hspace_sdworld_face.png"]
    (tmp_path / "hspace_face.png").write_bytes(b"the user's own picture")
    assert place_sample_inputs(tmp_path) == ["hspace_sdworld_face.png"]
    assert (tmp_path / "hspace_face.png").read_bytes() == b"the user's own picture"
    assert (tmp_path / "hspace_sdworld_face.png").read_bytes() == (SAMPLE_INPUTS / "hspace_sdworld_face.png").read_bytes()
    assert place_sample_inputs(tmp_path) == []
