"""Editing interval: the official tables, and measurement on a model's own samples."""

import pytest
import torch

from hspace_core import (DirectionInfo, EditInterval, HSpaceError, TensorDirection, choose_interval, measure_interval,
                         table_interval)
from hspace_core.interval import load_table, multiscale_rmse, relative_thresholds
from tests.engine.references import tiny_model


@pytest.mark.parametrize("dataset,at_03,at_02", [
    # the official code's own precomputed values (utils/t_edit_dic.py: t_edit at LPIPS 0.3 and 0.2)
    ("celeba", 516, 424), ("church", 370, 265), ("bedroom", 369, 295), ("afhq", 444, 242),
])
def test_official_t_edit_values(dataset, at_03, at_02):
    assert table_interval(dataset, edit_threshold=0.3).t_edit == at_03
    assert table_interval(dataset, edit_threshold=0.2).t_edit == at_02


def test_table_threshold_scales_with_the_text_cosine():
    """t_edit is the first t reaching 0.33 * cos: a farther text pair (smaller cos) edits from earlier."""
    ts = [table_interval("celeba", text_cosine=c).t_edit for c in (0.6, 0.8, 1.0)]
    assert ts[0] < ts[1] < ts[2]
    assert table_interval("celeba", text_cosine=0.8).t_edit == table_interval("celeba", edit_threshold=0.33 * 0.8).t_edit


def test_tables_match_the_shared_originals(shared_dir):
    for d in ("celeba", "metface"):
        for kind in ("x", "x0_t"):
            ours = load_table(d, kind)
            text = (shared_dir / "asyrp_official" / "lpips_tables" / f"{d}_LPIPS_distance_{kind}.tsv").read_text()
            assert len(ours) == 998 and ours == {int(a): float(b) for a, b in (l.split("\t") for l in text.split("\n") if l)}


def test_unknown_dataset_and_bad_cosine():
    with pytest.raises(HSpaceError, match="measure the interval"):
        table_interval("ffhq")
    with pytest.raises(HSpaceError, match="text_cosine"):
        table_interval("celeba", text_cosine=0)


def test_fallback_metric_and_relative_thresholds():
    a = torch.zeros(2, 3, 16, 16)
    assert torch.allclose(multiscale_rmse(a, a + 0.5), torch.tensor([0.5, 0.5]))
    r_edit, r_boost = relative_thresholds()
    assert 0.2 < r_edit < 0.4 and 0.75 < r_boost < 0.95


def test_measured_interval_on_a_model():
    m = measure_interval(tiny_model(), n_samples=2, steps=10, metric="multiscale_rmse")
    assert m.metric == "multiscale_rmse" and len(m.timesteps) == 9
    assert m.gamma[-1] > m.gamma[0]  # x_t moves away from x0 as t grows
    iv = m.interval
    assert 0 <= iv.t_boost <= 999 and 0 <= iv.t_edit <= 999 and "measured" in iv.source
    # a text pair further apart (lower cosine) lowers the threshold: t_edit comes at the first t where
    # the scaled threshold is reached on the same measured curve
    near = measure_interval(tiny_model(), n_samples=2, steps=10, metric="multiscale_rmse", text_cosine=0.5)
    xi = (m.xi / m.xi[-1]).tolist()
    from hspace_core.interval import relative_thresholds

    threshold = 0.5 * relative_thresholds()[0]
    want = next(int(t) for t, v in zip(m.timesteps.tolist(), xi) if v >= threshold)
    assert near.interval.t_edit == want <= iv.t_edit and "text cosine 0.5" in near.interval.source
    with pytest.raises(HSpaceError, match="text_cosine"):
        measure_interval(tiny_model(), n_samples=1, steps=4, text_cosine=0.0)


def test_choose_interval_sources():
    direction = TensorDirection(torch.zeros(4, 1, 1), None, DirectionInfo(h_shape=(4, 1, 1), t_edit=420))
    assert choose_interval("explicit", t_edit=300) == EditInterval(300, 0)
    assert choose_interval("explicit", t_edit=300, t_boost=150) == EditInterval(300, 150)
    assert choose_interval("direction", direction=direction).t_edit == 420
    table = choose_interval("table", dataset="celeba", text_cosine=0.9)
    assert (table.t_edit, table.t_boost) == (table_interval("celeba", text_cosine=0.9).t_edit, 167)
    assert choose_interval("table", dataset="celeba", t_boost=50).t_boost == 50
    no_record = TensorDirection(torch.zeros(4, 1, 1), None, DirectionInfo(h_shape=(4, 1, 1)))
    with pytest.raises(HSpaceError, match="records no editing interval"):
        choose_interval("direction", direction=no_record)
    with pytest.raises(HSpaceError, match="name the official table"):
        choose_interval("table")
    with pytest.raises(HSpaceError, match="unknown interval source"):
        choose_interval("guess")


def test_measured_interval_reports_one_job():
    seen = []
    choose_interval("measure", tiny_model(), steps=6, callback=seen.append)
    assert [s.i for s in seen] == list(range(11)) and {s.total for s in seen} == {11}


@pytest.mark.parametrize("dataset", ["celeba", "afhq", "church", "bedroom", "metface"])
def test_the_fallback_relative_rule_on_the_official_curves_lands_near_the_official_t_edit(dataset):
    """The fallback thresholds a curve at a fraction of its final value; applied to the official
    LPIPS curves themselves, that rule must land near the absolute rule (0.33) on each of them."""
    from hspace_core.interval import EDIT_THRESHOLD, first_reaching

    x0 = load_table(dataset, "x0_t")
    final = x0[max(x0)]
    relative = first_reaching({t: v / final for t, v in x0.items()}, relative_thresholds()[0])
    absolute = first_reaching(x0, EDIT_THRESHOLD)
    assert abs(relative - absolute) <= 80  # measured: 0, 77, 43, 4, 54 timesteps
