"""The command line checks its cheap arguments (steps, strengths, sizes, output paths) before it reads a
checkpoint, inverts or samples: a bad value fails at once with one ``error:`` line and exit status 2."""

from pathlib import Path

import pytest

from hspace_core import cli

ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "example_workflows" / "input" / "hspace_face.png"
DEMO = ROOT / "hspace_core" / "data" / "demo_faces32.safetensors"
WIDTH = ROOT / "hspace_core" / "data" / "directions" / "demo_width.safetensors"


@pytest.fixture
def no_work(monkeypatch):
    """Loading a model, inverting, editing or finding a direction fails the test."""
    import hspace_core.discovery.pca
    import hspace_core.editing
    import hspace_core.inversion
    import hspace_core.loading

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module, name in ((hspace_core.loading, "load_model"), (hspace_core.inversion, "invert"),
                         (hspace_core.inversion, "invert_ddpm"), (hspace_core.editing, "edit"),
                         (hspace_core.discovery.pca, "pca_direction")):
        monkeypatch.setattr(module, name, forbidden)


def _edit(tmp_path, *extra):
    return ["edit", "--model", str(DEMO), "--image", str(FACE), "--direction", str(WIDTH), "--strength", "1",
            "--out", str(tmp_path / "strip.png"), *extra]


def _fails(argv, capsys, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be at least 2"),
    (["--steps", "1"], "--steps must be at least 2"),
    (["--inversion-steps", "1"], "--inversion-steps must be at least 2"),
    (["--strength", "nan"], "--strength must be finite"),
    (["--strength", "inf"], "--strength must be finite"),
    (["--eta", "1.5"], "--eta must lie in [0, 1]"),
    (["--t-edit", "-1"], "--t-edit must be at least 0"),
    (["--t-skip", "-2"], "--t-skip must be at least 0"),
    (["--t-skip", "3"], "--t-skip needs an edit-friendly inversion"),
    (["--text-cosine", "0"], "--text-cosine must lie in (0, 1]"),
    (["--coef", "1", "--coef", "2"], "give one --coef per --direction"),
    (["--image-size", "0"], "--image-size must be at least 1"),
    (["--threads", "0"], "--threads must be at least 1"),
])
def test_edit_refuses_a_bad_cheap_argument_before_any_work(tmp_path, capsys, no_work, extra, message):
    _fails(_edit(tmp_path, *extra), capsys, message)
    assert not (tmp_path / "strip.png").exists()


def test_edit_refuses_a_bad_output_path_before_any_work(tmp_path, capsys, no_work):
    argv = _edit(tmp_path)
    argv[argv.index("--out") + 1] = str(tmp_path / "strip.jpg")
    _fails(argv, capsys, "must be a .png file")
    argv[argv.index("--out") + 1] = str(tmp_path / "missing" / "strip.png")
    _fails(argv, capsys, "no such folder")


def test_edit_reads_the_direction_and_images_before_the_checkpoint(tmp_path, capsys, no_work):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    argv = _edit(tmp_path)
    argv[argv.index("--direction") + 1] = str(broken)
    _fails(argv, capsys, "not a readable safetensors file")
    argv = _edit(tmp_path)
    argv[argv.index("--image") + 1] = str(tmp_path / "missing.png")
    _fails(argv, capsys, "no such file")


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps must be at least 2"),
    (["--seed", "-1"], "--seed must be at least 0"),
])
def test_invert_refuses_a_bad_cheap_argument_before_any_work(tmp_path, capsys, no_work, extra, message):
    argv = ["invert", "--model", str(DEMO), "--image", str(FACE), "--out", str(tmp_path / "inv.safetensors"), *extra]
    _fails(argv, capsys, message)


def test_invert_refuses_an_output_it_could_not_write_before_any_work(tmp_path, capsys, no_work):
    _fails(["invert", "--model", str(DEMO), "--image", str(FACE), "--out", str(tmp_path / "inv.pt")], capsys,
           "must be a .safetensors file")
    (tmp_path / "inv.safetensors").write_bytes(b"")
    _fails(["invert", "--model", str(DEMO), "--image", str(FACE), "--out", str(tmp_path / "inv.safetensors")],
           capsys, "already exists")


@pytest.mark.parametrize("extra, message", [
    (["--steps", "1"], "--steps must be at least 2"),
    (["--samples", "1"], "--samples must be at least 2"),
    (["--component", "-1"], "--component must be at least 0"),
    (["--t-edit", "-5"], "--t-edit must be at least 0"),
])
def test_direction_refuses_a_bad_cheap_argument_before_any_work(tmp_path, capsys, no_work, extra, message):
    argv = ["direction", "pca", "--model", str(DEMO), "--out", str(tmp_path / "d.safetensors"), *extra]
    _fails(argv, capsys, message)


def test_clip_direction_refuses_missing_weights_before_loading_the_model(tmp_path, capsys, no_work):
    _fails(["direction", "clip", "--model", str(DEMO), "--source", "face", "--target", "smiling face",
            "--clip-weights", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "d.safetensors")],
           capsys, "no such CLIP weights")
