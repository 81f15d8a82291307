"""The demo world's tiny CLIP: captions from attributes, seeded construction, the contrastive loss,
and the embedded model's zero-shot accuracy through the real open_clip loading path."""

import numpy as np
import pytest
import torch

from hspace_core.demo.clip_world import EMBEDDED, TINY_CLIP, ZERO_SHOT, caption, evaluate, load_tiny_clip
from hspace_core.demo.faces import Face, sample_faces
from hspace_core.discovery.clip_contrastive import build_clip, contrastive_loss

pytest.importorskip("open_clip")


def test_captions_say_what_the_face_has():
    rng = np.random.default_rng(0)
    for face in sample_faces(300, 5):
        text = caption(face, rng)
        assert ("with glasses" in text) == face.glasses and ("without glasses" in text) <= (not face.glasses)
        assert ("hat" in text and "without a hat" not in text) == face.hat
        if "smiling" in text:
            assert face.smile > 1 / 3
        if "frowning" in text:
            assert face.smile < -1 / 3
        if "wide" in text:
            assert face.face_width > 2 / 3
    smiling = Face(smile=0.9, glasses=True, hat=False)
    texts = {caption(smiling, np.random.default_rng(s)) for s in range(20)}
    assert any(t.startswith("a smiling") for t in texts) and len(texts) > 3  # varied wording


def test_build_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, _ = build_clip(TINY_CLIP, torch.Generator().manual_seed(3))
    b, tok = build_clip(TINY_CLIP, torch.Generator().manual_seed(3))
    c, _ = build_clip(TINY_CLIP, torch.Generator().manual_seed(4))
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["token_embedding.weight"], sc["token_embedding.weight"])
    assert tok(["a face"]).shape == (1, TINY_CLIP["text_cfg"]["context_length"])


def test_contrastive_loss_rewards_matching_pairs():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(16, 8, generator=g)
    scale = torch.tensor(np.log(50.0))
    matched = contrastive_loss(img, img + 0.01 * torch.randn(16, 8, generator=g), scale)
    shuffled = contrastive_loss(img, img[torch.randperm(16, generator=g)], scale)
    assert matched < 0.1 < np.log(16) * 0.5 < shuffled


@pytest.mark.skipif(not (EMBEDDED / "open_clip_model.safetensors").exists(), reason="the tiny CLIP is not trained")
def test_the_embedded_tiny_clip_reads_the_attributes_zero_shot():
    """Loaded through load_clip (the open_clip folder layout of real weights); >= 90 % on held-out faces
    for smile, glasses and hat."""
    assert (EMBEDDED / "open_clip_model.safetensors").stat().st_size <= 10 * 2 ** 20
    clip = load_tiny_clip()
    assert clip.image_size == 32
    result = evaluate(clip, n=300, seed=424_242)
    print({k: v["accuracy"] for k, v in result.items()})
    assert set(result) == set(ZERO_SHOT)
    for name in ("smile", "glasses", "hat"):
        assert result[name]["accuracy"] >= 0.9, (name, result[name])


def test_text_directions_of_the_tiny_clip_use_its_caption_template(tmp_path):
    import json
    import shutil

    import torch.nn.functional as F

    from hspace_core.discovery.clip_model import load_clip, text_direction
    from hspace_core.errors import HSpaceError

    clip = load_tiny_clip()
    assert clip.templates == ("a {}",)
    f = clip.text_features(["a smiling face", "a face"])
    assert torch.allclose(text_direction(clip, "face", "smiling face"), F.normalize(f[0] - f[1], dim=-1), atol=1e-6)
    # the templates come from the folder's config; a malformed entry is refused, not guessed
    bad = tmp_path / "clip"
    shutil.copytree(EMBEDDED, bad)
    cfg = json.loads((bad / "open_clip_config.json").read_text())
    cfg["hspace_text_templates"] = ["no placeholder"]
    (bad / "open_clip_config.json").write_text(json.dumps(cfg))
    with pytest.raises(HSpaceError, match="hspace_text_templates"):
        load_clip(bad)
