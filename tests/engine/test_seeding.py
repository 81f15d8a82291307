"""Seeded initialisation without the global random state (no torch.manual_seed in library code)."""

import pytest
import torch

from hspace_core.demo.probe import AttributeProbe
from hspace_core.directions.deltablock import ADMDeltaBlock, DDPMDeltaBlock
from hspace_core.seeding import reset_parameters_, seeded_module


@pytest.mark.parametrize("build", [lambda: DDPMDeltaBlock(64, 128), lambda: ADMDeltaBlock(64, 128), AttributeProbe],
                         ids=["ddpm-block", "adm-block", "probe"])
def test_same_values_as_pytorch_init_after_a_global_seed(build):
    torch.manual_seed(7)  # the way these modules used to be seeded (tests may touch the global state)
    expected = build().state_dict()
    rng = torch.random.get_rng_state()
    got = seeded_module(build, torch.Generator().manual_seed(7)).state_dict()
    assert torch.equal(torch.random.get_rng_state(), rng)  # the caller's stream is untouched
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    other = reset_parameters_(build(), torch.Generator().manual_seed(8)).state_dict()
    assert any(not torch.equal(expected[k], other[k]) for k in expected if expected[k].is_floating_point())
