"""The h-space split: one encoder pass, decoders on h, h + delta_h, or several h's at once.

(That decode(encode(x)) is the network, and h its middle block's output, is shown against the reference
implementations in test_parity_*.py.)"""

import pytest
import torch

from hspace_core import HSpaceError, linear_schedule
from hspace_core.model import Family, HSpaceModel
from hspace_core.unets import ADMConfig, ADMUNet, DDPMConfig, DDPMUNet
from tests.engine.references import randomize_


def _models():
    ddpm = DDPMConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels_down=(1,), attn_levels_up=(1,),
                      image_size=32)
    adm = ADMConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_ds=(2,),
                    num_head_channels=32, image_size=32)
    yield HSpaceModel(randomize_(DDPMUNet(ddpm), 0), Family.DDIM, ddpm, linear_schedule(1000))
    yield HSpaceModel(randomize_(ADMUNet(adm), 1), Family.ADM, adm, linear_schedule(1000))


@pytest.mark.parametrize("model", list(_models()), ids=["ddpm", "adm"])
def test_batch_of_h_shares_one_encoder_pass(model):
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([500, 600])
    with torch.no_grad():
        enc = model.encode(x, t)
        dh = torch.randn(2, *model.h_shape) * 0.5
        batched = model.decode(enc, torch.cat([enc.h, enc.h + dh, enc.h - dh])).eps
        one_by_one = [model.decode(enc, h).eps for h in (enc.h, enc.h + dh, enc.h - dh)]
    assert batched.shape == (6, 3, 32, 32)
    for j in range(3):
        assert torch.allclose(batched[2 * j:2 * j + 2], one_by_one[j], atol=1e-5)
    assert (one_by_one[1] - one_by_one[0]).abs().max() > 1e-3  # delta_h reaches eps


def test_learned_variance_is_split_off():
    ddpm_model, adm_model = _models()
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([3])
    with torch.no_grad():
        p = adm_model.predict(x, t)
        full = adm_model.unet(x, t)
    assert adm_model.learn_sigma and torch.equal(p.eps, full[:, :3]) and torch.equal(p.variance, full[:, 3:])
    with torch.no_grad():
        assert ddpm_model.predict(x, t).variance is None


def test_inputs_it_cannot_take():
    model = next(_models())
    with pytest.raises(HSpaceError, match="divisible by 4"):
        model.check_input(torch.zeros(1, 3, 30, 30))
    with pytest.raises(HSpaceError, match=r"\[N, 3, H, W\]"):
        model.check_input(torch.zeros(1, 4, 32, 32))
