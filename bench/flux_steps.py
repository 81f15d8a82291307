"""Costs of the Asyrp sampler on ComfyUI's own flow transformers (Flux.1, SD3.5-medium), side by side in one run.

One step through ComfyUI's CFGGuider: stock euler; the Asyrp sampler inside its edit interval with two full
calls (without and with the h shift) and with the shared pass (the joint blocks before h once, the rest for
both predictions in one batch). Goal: shared <= 1 + (share of the step's compute from block i on) + 0.1.

Models (random weights; real widths and heads): Flux.1's configuration (hidden 3072, 24 heads, context 4096,
vector 768, distilled guidance) with the depth reduced to --flux-double joint + --flux-single single blocks
(the full 19 + 38 holds 11.9 B parameters, 48 GB in float32: more than this machine's memory), and SD3.5
medium's (hidden 1536, 24 joint blocks, the image self-attention in blocks 0-12; 2.2 B parameters). Tokens:
a 256 px image (16 x 16 latent tokens after Flux's 2 x 2 patches) and 64 text tokens, so a CPU step takes
seconds. The full Flux.1 depth is reported from the measured block times: a stock step costs
19 D + 38 S, the shared pass i D + 2 ((19 - i) D + 38 S) (the embeddings and final layer are under 1 %).

    python bench/flux_steps.py [--repeats 3] [--threads 2] [--only flux,sd3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_core import DirectionInfo, TensorDirection  # noqa: E402
from tests.comfyui.tiny_sd import comfy_available, comfy_modules  # noqa: E402

FLUX1 = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=4096,
             hidden_size=3072, mlp_ratio=4.0, num_heads=24, depth=19, depth_single_blocks=38, axes_dim=[16, 56, 56],
             theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[])
SD35_MEDIUM = dict(in_channels=16, out_channels=16, patch_size=2, depth=24, input_size=None, adm_in_channels=2048,
                   context_embedder_config={"target": "torch.nn.Linear",
                                            "params": {"in_features": 4096, "out_features": 1536}},
                   num_patches=147456, pos_embed_max_size=384, pos_embed_scaling_factor=None, qk_norm="rms",
                   x_block_self_attn_layers=list(range(13)))
LATENT, TOKENS = 32, 64  # 256 px; text tokens


def build(kind: str, config: dict):
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    from tests.comfyui.tiny_models_pack.tiny_models import init_weights

    cls = sm.Flux if kind == "flux" else sm.SD3
    model = cls(dict(config)).get_model({}, device="cpu")
    init_weights(model.diffusion_model, 0)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                           offload_device=mm.unet_offload_device())


def conds(kind: str):
    g = torch.Generator().manual_seed(0)
    pooled = 768 if kind == "flux" else 2048
    out = []
    for _ in range(2):
        extra = {"pooled_output": torch.randn(1, pooled, generator=g)}
        if kind == "flux":
            extra["guidance"] = 3.5
        out.append([[torch.randn(1, TOKENS, 4096, generator=g), extra]])
    return out


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure(kind: str, config: dict, block: int, repeats: int) -> dict:
    import comfy.samplers

    import nodes.sd as sd
    from nodes.flow.family import flow_host

    model = build(kind, config)
    host = flow_host(model)
    g = (LATENT // host.patch, LATENT // host.patch)
    info = DirectionInfo((host.width, *g), family=host.family, name="bench", which_h=f"double_block_{block}.stream")
    d = TensorDirection(torch.randn(host.width, *g, generator=torch.Generator().manual_seed(1)) * 0.1, None, info)
    patched = sd.ApplyHSpaceDirection().apply(model, d, 1.0, 0, 1000, "both", "asymmetric", units="raw")[0]
    pos, neg = conds(kind)
    cfg = 1.0 if kind == "flux" else 4.5  # Flux dev: distilled guidance, one call; SD3.5: CFG, both in one batch
    sig = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 28)[:2]
    noise = torch.randn(1, 16, LATENT, LATENT, generator=torch.Generator().manual_seed(2))

    def step(m, sampler):
        guider = comfy.samplers.CFGGuider(m)
        guider.set_conds(pos, neg)
        guider.set_cfg(cfg)
        with torch.inference_mode():
            guider.sample(noise, torch.zeros_like(noise), sampler, sig, disable_pbar=True)

    variants = {"stock euler": (model, comfy.samplers.sampler_object("euler")),
                "Asyrp inside, two calls": (patched, comfy.samplers.KSAMPLER(sd.sample_asyrp, extra_options={
                    "strengths": (1.0,), "shared": False})),
                "Asyrp inside, shared pass": (patched, comfy.samplers.KSAMPLER(sd.sample_asyrp, extra_options={
                    "strengths": (1.0,), "shared": True}))}
    for m, s in variants.values():  # warm-up
        step(m, s)
    times = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved
        for k, (m, s) in variants.items():
            times[k] += timed(lambda: step(m, s), 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"params_m": sum(p.numel() for p in model.model.diffusion_model.parameters()) / 1e6, "median_s": med,
            "ratio": {k: v / med["stock euler"] for k, v in med.items()}}


def block_times(model, kind: str, repeats: int) -> dict:
    """Seconds spent in each joint ("double") and single block during one stock step, and the whole step,
    through timing wrappers on ComfyUI's per-block hook (medians of ``repeats`` steps)."""
    import comfy.samplers

    from nodes.flow.family import flow_host

    host = flow_host(model)
    m = model.clone()
    spent: dict = {}

    def timer(name):
        def wrap(args, extra):
            t0 = time.perf_counter()
            out = extra["original_block"](args)
            spent.setdefault(name, []).append(time.perf_counter() - t0)
            return out
        return wrap
    for i in range(host.blocks):
        m.set_model_patch_replace(timer(("double", i)), "dit", "double_block", i)
    singles = len(getattr(model.model.diffusion_model, "single_blocks", []))
    for i in range(singles):
        m.set_model_patch_replace(timer(("single", i)), "dit", "single_block", i)
    pos, neg = conds(kind)
    cfg = 1.0 if kind == "flux" else 4.5
    sig = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 28)[:2]
    noise = torch.randn(1, 16, LATENT, LATENT, generator=torch.Generator().manual_seed(2))
    steps = []
    for _ in range(repeats):
        guider = comfy.samplers.CFGGuider(m)
        guider.set_conds(pos, neg)
        guider.set_cfg(cfg)
        t0 = time.perf_counter()
        with torch.inference_mode():
            guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sig,
                          disable_pbar=True)
        steps.append(time.perf_counter() - t0)
    return {"blocks": {k: statistics.median(v) for k, v in spent.items()}, "step": statistics.median(steps)}


def share_from(times: dict, block: int) -> float:
    """The share of a step spent in the joint blocks from ``block`` on and every single block."""
    later = sum(v for (kind, i), v in times["blocks"].items() if kind == "single" or i >= block)
    return later / times["step"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="flux,sd3")
    ap.add_argument("--flux-double", type=int, default=2)
    ap.add_argument("--flux-single", type=int, default=4)
    args = ap.parse_args()
    why = comfy_available()
    if why is not None:
        sys.exit(f"needs a ComfyUI: {why}")
    torch.set_num_threads(args.threads)
    comfy_modules()
    parts = set(args.only.split(","))
    print(f"one step, {LATENT * 8} px ({(LATENT // 2) ** 2} image tokens), {TOKENS} text tokens, batch 1, CPU, "
          f"{args.threads} threads; medians of {args.repeats} interleaved runs\n")
    runs = []
    if "flux" in parts:
        runs.append(("flux", "Flux.1", dict(FLUX1, depth=args.flux_double, depth_single_blocks=args.flux_single),
                     args.flux_double // 2, f" at depth {args.flux_double} + {args.flux_single}"))
    if "sd3" in parts:
        runs.append(("sd3", "SD3.5-medium", SD35_MEDIUM, 12, ""))
    for kind, title, config, block, depth in runs:
        r = measure(kind, config, block, args.repeats)
        times = block_times(build(kind, config), kind, args.repeats)
        share = share_from(times, block)
        print(f"{title} configuration{depth} ({r['params_m']:.0f} M parameters), h after joint block {block}; share "
              f"of the stock step from block {block} on (measured): {share:.2f}, goal <= {1 + share + 0.1:.2f}x")
        for k, v in r["median_s"].items():
            print(f"  {k}: {v:.2f} s ({r['ratio'][k]:.2f}x)")
        if kind == "flux":
            doubles = [v for (k, _), v in times["blocks"].items() if k == "double"]
            singles = [v for (k, _), v in times["blocks"].items() if k == "single"]
            td, ts = statistics.mean(doubles), statistics.mean(singles)
            rest = times["step"] - sum(doubles) - sum(singles)
            for i in (9, 4):
                full = 19 * td + 38 * ts + rest
                later = (19 - i) * td + 38 * ts
                print(f"  full depth 19 + 38 from these block times (double {td:.2f} s, single {ts:.2f} s, the rest "
                      f"{rest:.2f} s), h after joint block {i}: stock {full:.1f} s, two calls 2.00x, shared "
                      f"{(full + later) / full:.2f}x (goal <= {1 + later / full + 0.1:.2f}x)")
        print()


if __name__ == "__main__":
    main()
