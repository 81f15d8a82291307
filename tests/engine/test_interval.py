"""Editing interval: the official tables, and measurement on a model's own samples."""

import pytest
import torch

from hspace_core import HSpaceError, measure_interval, table_interval
from hspace_core.interval import load_table, multiscale_rmse, relative_thresholds
from tests.engine.references import tiny_model


@pytest.mark.parametrize("dataset,expected", [
    # asyrp.md 1.5, recomputed from the same tables: t_edit at cos 0.7 / 0.8 / 0.9 / 1.0, t_boost at 1.2 on _x
    ("celeba", (459, 489, 514, 538, 167)), ("afhq", (310, 383, 439, 482, 167)),
    ("church", (300, 335, 367, 396, 293)), ("bedroom", (321, 344, 367, 384, 221)),
    ("metface", (141, 216, 313, 396, 180)),
])
def test_official_tables(dataset, expected):
    got = tuple(table_interval(dataset, text_cosine=c).t_edit for c in (0.7, 0.8, 0.9, 1.0))
    assert got == expected[:4]
    assert table_interval(dataset).t_boost == expected[4]


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
