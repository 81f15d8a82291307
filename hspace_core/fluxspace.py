"""FluxSpace's fine edit (Dalva, Venkatesh, Yanardag, "FluxSpace: Disentangled Semantic Editing in Rectified
Flow Transformers", CVPR 2025, Sec. 4.2), the comparison the flow world's bench runs beside Asyrp.

In each joint block the image tokens' attention output is computed three times, with the base prompt c, an
edit prompt c_e and a prior (empty) prompt: l(c), l(c_e), l(phi). The edit prompt's output less its
projection onto the prior's (what every prompt says about the image, removed) is added to the base output:

    l_hat = l(c) + lambda * (l(c_e) - proj_{l(phi)} l(c_e)),   proj_u v = (<v, u> / <u, u>) u

The projection is per image token, over its channels. The edit acts in every call inside its interval (it is
symmetric: the sampler's trajectory follows it). The host supplies the three attention outputs
(``nodes/flow/fluxspace.py``); this is the arithmetic.
"""

from __future__ import annotations

import torch


def orthogonal_to(v: torch.Tensor, u: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """v less its projection onto u, per token: v, u [..., C] -> [..., C], orthogonal to u on the last axis
    (v itself where u is zero)."""
    uu = (u * u).sum(-1, keepdim=True)
    coef = (v * u).sum(-1, keepdim=True) / uu.clamp_min(eps)
    return v - torch.where(uu > eps, coef, torch.zeros_like(coef)) * u


def fine_edit(base: torch.Tensor, edit: torch.Tensor, prior: torch.Tensor, scale: float) -> torch.Tensor:
    """FluxSpace's fine edit of attention outputs: base, edit, prior [B, N, C] (image tokens x channels, one row
    per image, computed with the base, edit and prior prompts) -> [B, N, C]. The arithmetic runs in at least
    float32 (half-precision models' outputs are widened) and the result has ``base``'s dtype; scale 0 returns
    ``base`` unchanged."""
    if scale == 0:
        return base
    work = torch.promote_types(base.dtype, torch.float32)
    delta = orthogonal_to(edit.to(work), prior.to(work))
    return (base.to(work) + float(scale) * delta).to(base.dtype)
