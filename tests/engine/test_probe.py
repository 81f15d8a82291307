"""The shipped attribute probe reads held-out faces correctly and tells faces from noise."""

from __future__ import annotations

import pytest
import torch

from hspace_core.demo.faces import Face, attribute_table, render, sample_faces
from hspace_core.demo.probe import DEFAULT_WEIGHTS, load_probe, r2

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(),
                                reason=f"no shipped probe weights at {DEFAULT_WEIGHTS} "
                                       "(train them with hspace_core.demo.probe.train_probe)")

HELD_OUT_SEED = 4242  # below the training seeds (>= 1_000_000)


@pytest.fixture(scope="module")
def probe():
    torch.set_num_threads(1)
    return load_probe()


@pytest.fixture(scope="module")
def held_out():
    faces = sample_faces(200, HELD_OUT_SEED)
    return render(faces), attribute_table(faces)


def test_reads_continuous_attributes(probe, held_out):
    images, table = held_out
    read = probe.read(images)
    for name in ("smile", "eye_size", "head_tilt"):
        assert read[name].shape == (200,)
        assert r2(read[name], table[name]) > 0.9, name


def test_reads_binary_attributes(probe, held_out):
    images, table = held_out
    read = probe.read(images)
    for name in ("glasses", "hat"):
        assert ((read[name] > 0.5).float() == table[name]).float().mean() > 0.95, name


def test_face_probability(probe, held_out):
    images, _ = held_out
    assert probe.read(images)["face"].min() > 0.9
    noise = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert probe.read(noise)["face"].max() < 0.1


def test_smile_edit_moves_only_smile(probe):
    face = Face()
    read = probe.read(render([face.replace(smile=-0.8), face.replace(smile=0.8)]))
    assert read["smile"][1] - read["smile"][0] > 1.0
    assert (read["eye_size"][1] - read["eye_size"][0]).abs() < 0.1


def test_read_shapes_and_ranges(probe, held_out):
    images, _ = held_out
    read = probe.read(images[:3])
    for name in ("hair_hue", "background_hue"):
        assert ((read[name] >= 0) & (read[name] < 1)).all()
    for name in ("glasses", "hat", "face"):
        assert ((read[name] >= 0) & (read[name] <= 1)).all()
    assert all(v.shape == (0,) for v in probe.read(images[:0]).values())
