"""ComfyUI's Flux blocks in a form autograd can train, through ComfyUI's own per-block hook.

ComfyUI's ``DoubleStreamBlock`` and ``SingleStreamBlock`` add their residuals in place (``img += ...``
after ``img_norm1`` has saved ``img`` for the backward pass) and rotate q and k with comfy_kitchen's
rope kernel, which registers no autograd formula: a backward pass through the stock forward fails
("modified by an inplace operation", "no autograd formula"). Training therefore replaces each block's
*forward* through ``transformer_options["patches_replace"]["dit"][("double_block", i)]`` /
``("single_block", i)`` (the hook ComfyUI offers for exactly this, and the one the pack's edits use)
with the same maths written out of place, reading the block's own submodules. The network that trains
is ComfyUI's ``comfy.ldm.flux.model.Flux`` and its state dict is ComfyUI's; nothing of ComfyUI is
patched or subclassed. ``tests/comfyui/test_flow_world_models.py`` checks that the model with these
replacements equals the stock forward to float tolerance.

The maths is Flux's (Black Forest Labs, FLUX.1): adaLN modulation ``(1 + scale) * LN(x) + shift``,
joint attention over [text; image] tokens with RMS-normed q, k and 2-D RoPE, gated residuals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rope(x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, D] rotated pairwise by pe [B or 1, 1, L, D/2, 2, 2] (Flux's EmbedND output: one 2x2
    rotation per pair of features (x[2j], x[2j+1])), computed in pe's precision."""
    pairs = x.to(pe.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = pe[..., 0] * pairs[..., 0] + pe[..., 1] * pairs[..., 1]
    return out.reshape(x.shape).type_as(x)


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """Attention over q, k, v [B, H, L, D] with RoPE on q and k: [B, L, H * D]."""
    out = F.scaled_dot_product_attention(rope(q, pe), rope(k, pe), v)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def _heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, L, 3 * H * D] -> q, k, v [B, H, L, D]."""
    return qkv.view(qkv.shape[0], qkv.shape[1], 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def _modulate(x: torch.Tensor, norm, mod) -> torch.Tensor:
    return (1 + mod.scale) * norm(x) + mod.shift


def double_block(block, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor, on_img_attn=None):
    """One ``DoubleStreamBlock`` (``block``'s weights): img [B, L_img, C], txt [B, L_txt, C], vec [B, C]
    -> (img, txt). Text tokens come first in the joint sequence, as in the stock block. ``on_img_attn``: a
    function of the image tokens' attention output [B, L_img, C] (before its projection) that returns the one
    to continue with (the pack's h at a block's attention output)."""
    img_mod1, img_mod2 = block.img_mod(vec)
    txt_mod1, txt_mod2 = block.txt_mod(vec)
    img_q, img_k, img_v = _heads(block.img_attn.qkv(_modulate(img, block.img_norm1, img_mod1)), block.num_heads)
    img_q, img_k = block.img_attn.norm(img_q, img_k, img_v)
    txt_q, txt_k, txt_v = _heads(block.txt_attn.qkv(_modulate(txt, block.txt_norm1, txt_mod1)), block.num_heads)
    txt_q, txt_k = block.txt_attn.norm(txt_q, txt_k, txt_v)
    attn = joint_attention(torch.cat((txt_q, img_q), 2), torch.cat((txt_k, img_k), 2),
                           torch.cat((txt_v, img_v), 2), pe)
    txt_attn, img_attn = attn[:, :txt.shape[1]], attn[:, txt.shape[1]:]
    if on_img_attn is not None:
        img_attn = on_img_attn(img_attn)
    img = img + img_mod1.gate * block.img_attn.proj(img_attn)
    img = img + img_mod2.gate * block.img_mlp(_modulate(img, block.img_norm2, img_mod2))
    txt = txt + txt_mod1.gate * block.txt_attn.proj(txt_attn)
    txt = txt + txt_mod2.gate * block.txt_mlp(_modulate(txt, block.txt_norm2, txt_mod2))
    return img, txt


def single_block(block, x: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """One ``SingleStreamBlock`` (GELU MLP, as the world's model): x [B, L, C] -> x [B, L, C]."""
    mod, _ = block.modulation(vec)
    qkv, mlp = torch.split(block.linear1(_modulate(x, block.pre_norm, mod)),
                           [3 * block.hidden_size, block.mlp_hidden_dim_first], dim=-1)
    q, k, v = _heads(qkv, block.num_heads)
    q, k = block.norm(q, k, v)
    out = block.linear2(torch.cat((joint_attention(q, k, v, pe), block.mlp_act(mlp)), 2))
    return x + mod.gate * out


class _DoubleReplace:
    def __init__(self, block):
        self.block = block

    def __call__(self, args, extra):
        img, txt = double_block(self.block, args["img"], args["txt"], args["vec"], args["pe"])
        return {"img": img, "txt": txt}


class _SingleReplace:
    def __init__(self, block):
        self.block = block

    def __call__(self, args, extra):
        return {"img": single_block(self.block, args["img"], args["vec"], args["pe"])}


def training_options(flux) -> dict:
    """``transformer_options`` under which ComfyUI's ``Flux`` ``flux`` runs every block through the
    differentiable forward above (for ``flux(x, timesteps, context, y=..., transformer_options=...)``)."""
    replace = {("double_block", i): _DoubleReplace(b) for i, b in enumerate(flux.double_blocks)}
    replace.update({("single_block", i): _SingleReplace(b) for i, b in enumerate(flux.single_blocks)})
    return {"patches_replace": {"dit": replace}}
