"""Strength calibration: what strength 1 means, measured on the model; stored in the direction file; the
calibrated direction's strength 1 is the documented change; mixes compose; old files stay raw and say so."""

import math

import pytest
import torch

from hspace_core import (HSpaceError, calibrate, calibrated, in_units, load_direction, mix_calibrated,
                         save_direction)
from hspace_core.directions.calibration import (REFERENCE_CHANGE, Calibration, calibration_of, gain_of, gain_points,
                                                usable_range)
from hspace_core.sampling import asyrp_prediction, plain_predictor
from tests.engine.references import tiny_model
from tests.engine.test_directions import per_step


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def measured_gain(model, direction, strength: float = 1.0) -> float:
    """The relative x0 change per edited step the calibration measures, re-measured here by hand at the same
    seeded points (seed 0, 4 samples, 4 points over [t, t_max])."""
    cal = calibration_of(direction)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    top = plain_predictor(model)(x, 999)
    gains = []
    for p in gain_points(cal.t, 999):
        a = model.schedule.alpha_bar_at(int(round(p)), like=x)
        x_t = a.sqrt() * top.x0 + (1 - a).sqrt() * top.eps
        plain = plain_predictor(model)(x_t, int(round(p)))
        edited = asyrp_prediction(model, x_t, int(round(p)), direction, torch.full((4, 1, 1, 1), strength), steps=40)
        gains.append(gain_of(plain.x0, edited.x0, 1.0))
    return sum(gains) / len(gains)


def test_calibrated_strength_one_is_the_documented_change(model):
    d = calibrated(model, per_step(model, made_steps=40, name="random"), t=300, usable=False)
    cal = calibration_of(d)
    assert cal.t == 300 and cal.t_end == 999 and cal.usable is None
    with torch.inference_mode():
        assert measured_gain(model, in_units(d, "calibrated")) == pytest.approx(REFERENCE_CHANGE, rel=0.05)
        # raw strength 1 is another amount, unless the direction happened to be calibrated already
        assert abs(measured_gain(model, in_units(d, "raw")) / REFERENCE_CHANGE - 1) > 0.1
    # a direction twice as large needs half the raw strength (the response is linear at small strengths)
    twice = calibrate(model, per_step(model, 2 * per_step(model).values, made_steps=40), t=300, usable=False)
    assert twice.scale == pytest.approx(cal.scale / 2, rel=0.05)


def test_the_calibration_travels_in_the_file_and_old_files_say_they_are_raw(model, tmp_path):
    d = calibrated(model, per_step(model, made_steps=40, name="kept"), t=400, usable=False)
    save_direction(d, tmp_path / "d.safetensors")
    back = load_direction(tmp_path / "d.safetensors")
    assert calibration_of(back) == calibration_of(d)
    old = per_step(model, made_steps=40, name="old file")
    said = []
    assert in_units(old, "calibrated", said.append) is old
    assert in_units(old, "calibrated", said.append) is old
    assert len(said) == 1 and "no calibration" in said[0] and "raw units" in said[0]
    with pytest.raises(HSpaceError, match="units"):
        in_units(d, "percent")


def test_mixes_combine_calibrated_units(model):
    a = calibrated(model, per_step(model, made_steps=40, name="a"), t=300, usable=False)
    b_values = 5 * torch.randn(3, *model.h_shape, generator=torch.Generator().manual_seed(9))
    b = calibrated(model, per_step(model, b_values, made_steps=40, name="b"), t=300, usable=False)
    m = mix_calibrated([(a, 1.0), (b, 0.0)])
    assert calibration_of(m).how == "composed" and calibration_of(m).scale == 1.0
    with torch.inference_mode():  # weight 1 of a in calibrated units is a's calibrated unit, whatever b's size
        assert measured_gain(model, m) == pytest.approx(measured_gain(model, in_units(a, "calibrated")), rel=1e-4)
    both = mix_calibrated([(a, 1.0), (b, -2.0)])
    h, t = torch.zeros(1, *model.h_shape), torch.tensor([500])
    expected = a.delta(h, t, None, 40) * calibration_of(a).scale - 2 * b.delta(h, t, None, 40) * calibration_of(b).scale
    assert torch.allclose(both.delta(h, t, None, 40), expected, atol=1e-6)
    said = []
    raw = mix_calibrated([(a, 1.0), (per_step(model, name="uncalibrated"), 1.0)], say=said.append)
    assert calibration_of(raw) is None and said


def test_the_usable_range_ends_at_the_first_probe_below_the_threshold():
    def psnr_at(strengths):  # a side that drops below 20 dB at +4 and at -1, with a recovery that must not count
        table = {0.5: 30, 1: 28, 2: 24, 4: 18, 8: 25, 16: 10, -0.5: 26, -1: 19, -2: 30, -4: 30, -8: 30, -16: 30}
        return torch.tensor([float(table[s]) for s in strengths])
    assert usable_range(psnr_at) == (-0.5, 2.0)
    assert usable_range(lambda s: torch.full((len(s),), 5.0)) == (0.0, 0.0)


def test_a_measured_usable_range_brackets_the_edits_that_keep_the_image():
    """On the demo model with its shipped face-width direction: the edits at the top of the usable range keep
    20 dB to strength 0, the next probe does not."""
    from hspace_core import edit, load_model
    from hspace_core.demo.demo import demo_directions_dir, demo_model_path
    from hspace_core.directions.calibration import PROBE, psnr_off_target

    demo = load_model(demo_model_path())
    d = calibrated(demo, load_direction(demo_directions_dir() / "demo_width.safetensors"), samples=2, steps=6)
    cal = calibration_of(d)
    lo, hi = cal.usable
    assert lo < 0 < hi
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    beyond = PROBE[PROBE.index(hi) + 1]
    images = edit(demo, x_T, d, [0.0, hi * cal.scale, beyond * cal.scale], t_edit=cal.t, steps=6).images
    psnr = [float(psnr_off_target(images[:, j], images[:, 0], torch.ones(32, 32), 2.0).mean()) for j in (1, 2)]
    assert psnr[0] >= 20.0 > psnr[1]
    assert Calibration.from_json(cal.to_json(), "here") == cal
    assert cal.sweep(4)[0] == 0 and cal.sweep(4)[-1] == (hi if hi > 0 else 1.0)


def test_a_direction_that_changes_nothing_is_refused(model):
    with pytest.raises(HSpaceError, match="does not change the predicted x0"):
        calibrate(model, per_step(model, torch.zeros(3, *model.h_shape)), usable=False)


@pytest.mark.parametrize("bad, message", [
    ({"scale": -1, "gain": 0.1, "t": 5, "samples": 2, "reference": 0.02, "psnr_db": 20}, "scale"),
    ({"scale": 1, "gain": 0.1, "t": "x", "samples": 2, "reference": 0.02, "psnr_db": 20}, "'t'"),
    ({"scale": 1, "gain": 0.1, "t": 5, "samples": 2, "reference": 0.02, "psnr_db": 20, "usable": [1, 2]}, "usable"),
    ({"scale": math.inf, "gain": 0.1, "t": 5, "samples": 2, "reference": 0.02, "psnr_db": 20}, "scale"),
    ("not an object", "not an object"),
])
def test_a_damaged_calibration_record_is_refused(bad, message):
    with pytest.raises(HSpaceError, match=message):
        Calibration.from_json(bad, "file.safetensors")
