"""One progress contract: every engine job reports each step once, as (i, total) numbered over the whole
job, with the step's real predicted x0 (what a host shows as a preview)."""

import torch

from hspace_core import invert
from hspace_core.discovery.pca import pca_directions
from hspace_core.discovery.record import record_h
from hspace_core.discovery.supervised import mean_difference
from hspace_core.schedule import asyrp_timesteps
from tests.engine.references import tiny_model


def _is_one_job(log, total):
    assert [s.i for s in log] == list(range(total)), [s.i for s in log]
    assert {s.total for s in log} == {total}


def test_invert_with_reconstruction_is_one_job():
    model = tiny_model()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    log = []
    inv = invert(model, x, steps=6, reconstruct=True, callback=log.append)
    _is_one_job(log, 5 + 6)
    # the last generative step lands on the clean image: its x_t is its predicted x0, the reconstruction
    assert log[-1].t == -1 and torch.equal(log[-1].x_t, log[-1].x0_pred)
    assert torch.equal(log[-1].x_t, inv.reconstruction)


def test_recording_h_in_batches_numbers_all_batches_as_one_job():
    model = tiny_model()
    x_T = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grid = asyrp_timesteps(4)
    log = []
    hs = record_h(model, x_T, grid, batch=2, callback=log.append)
    _is_one_job(log, 3 * 4)
    assert [s.x0_pred.shape[0] for s in log] == [2] * 4 + [2] * 4 + [1] * 4
    for k, start in enumerate((0, 2, 4)):  # each batch's walk, its predictions and the h it recorded
        last = log[4 * k + 3]
        assert torch.equal(last.x_t, last.x0_pred) and not torch.equal(last.x0_pred, x_T[start:start + 2])
        assert torch.equal(hs[0, start:start + last.x0_pred.shape[0]], log[4 * k].h)


def test_supervised_and_pca_directions_report_one_job():
    model = tiny_model()
    g = torch.Generator().manual_seed(2)
    pos, neg = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    log = []
    mean_difference(model, pos, neg, steps=5, t_edit=300, callback=log.append)
    _is_one_job(log, 2 * (4 + 5))  # per set: inversion (4 calls), then recording (5 steps)
    log = []
    pca_directions(model, 4, 1, steps=5, t_edit=300, batch=3, callback=log.append)
    _is_one_job(log, 2 * 5)
