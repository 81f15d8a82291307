"""Costs of the Asyrp sampler on ComfyUI's own SD1.5 model class, side by side in one run.

  1. one step through ComfyUI's CFGGuider (cfg 7, cond + uncond in one batch): stock euler vs the Asyrp
     sampler outside its edit interval (target 1.0x: one call) and inside it, with two full calls (the
     reference path: without and with the h shift) and with the shared pass (input and middle blocks
     once, output blocks for both; target <= 1.6x), and one step of a k = 4 sweep (shared pass); with
     --memory, the peak resident memory of each, every one in a fresh process;
  2. a k = 4 strength sweep in one batch vs the same 4 strengths run one after another (whole 10-step
     samples, tiny configuration).

Models: the real SD1.5 UNet configuration (859.5 M parameters, random weights, 512 px = latent 64x64,
batch 1) and the tiny test configuration (5.8 M, 256 px = latent 32x32: at 64x64 its full-resolution
self-attention over 4096 tokens makes a CPU call 3 s, the real configuration's regime). Timings are medians of --repeats
interleaved runs. Needs a ComfyUI (found as the tests find it).

    python bench/sd_steps.py [--repeats 5] [--real-repeats 2] [--threads 2] [--skip-real]
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

SD15_REAL = dict(image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], use_spatial_transformer=True,
                 legacy=False, context_dim=768, num_heads=8, use_linear_in_transformer=False, adm_in_channels=None,
                 use_temporal_attention=False, use_temporal_resblock=False)


def build(config: dict):
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    from tests.comfyui.tiny_models_pack.tiny_models import init_weights

    model = sm.SD15(dict(config)).get_model({}, device="cpu")
    init_weights(model.diffusion_model, 0)
    model.diffusion_model.out[-1].weight.mul_(0.1)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                           offload_device=mm.unet_offload_device())


def conds(context: int):
    g = torch.Generator().manual_seed(0)
    return ([[torch.randn(1, 77, context, generator=g), {}]], [[torch.randn(1, 77, context, generator=g), {}]])


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


PLAIN, OUTSIDE = "plain (stock euler)", "Asyrp, outside the interval"
VARIANTS = {PLAIN: None, OUTSIDE: {}, "Asyrp inside, two calls": {"shared": False},
            "Asyrp inside, shared pass": {"shared": True},
            "Asyrp inside, shared, k = 4 sweep": {"shared": True, "strengths": (-1.0, 0.0, 1.0, 2.0)}}


def sampler_of(name: str):
    import comfy.samplers

    import nodes.sd as sd

    if VARIANTS[name] is None:
        return comfy.samplers.sampler_object("euler")
    return comfy.samplers.KSAMPLER(sd.sample_asyrp, extra_options=dict(VARIANTS[name]))


def step_costs(patcher, context: int, repeats: int, size: int, only: str | None = None) -> dict:
    import comfy.samplers

    import nodes.sd as sd

    channels = patcher.model.model_config.unet_config["model_channels"] * 4
    d = TensorDirection(torch.randn(channels, 1, 1), None, DirectionInfo((channels, 1, 1), family="sd1", name="b"))
    inside = sd.ApplyHSpaceDirection().apply(patcher, d, 1.0, 0, 999, "both", "asymmetric")[0]
    outside = sd.ApplyHSpaceDirection().apply(patcher, d, 1.0, 999, 999, "both", "asymmetric")[0]
    sigmas = comfy.samplers.KSampler(patcher, steps=20, device="cpu", sampler="euler", scheduler="normal").sigmas[5:7]
    pos, neg = conds(context)
    noise = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(1))
    latent = torch.zeros_like(noise)

    def one(model, sampler):
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(pos, neg)
        guider.set_cfg(7.0)
        return lambda: guider.sample(noise, latent, sampler, sigmas, seed=0)

    runs = {name: one(outside if name == OUTSIDE else inside if name != PLAIN else patcher, sampler_of(name))
            for name in VARIANTS}
    if only is not None:  # --peak: one variant, one step, in this (fresh) process
        runs[only]()  # first call: ComfyUI loads the model, builds its caches
        loaded = _status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux)
        runs[only]()
        return {"loaded": loaded, "peak": _status_mib("VmHWM")}
    for fn in runs.values():
        fn()  # warm up
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k] += timed(fn, 1)
    return {k: statistics.median(v) for k, v in times.items()}


def sweep_costs(patcher, repeats: int) -> tuple[float, float]:
    import comfy.samplers

    import nodes.sd as sd

    d = TensorDirection(torch.randn(128, 1, 1), None, DirectionInfo((128, 1, 1), family="sd1", name="b"))
    m = sd.ApplyHSpaceDirection().apply(patcher, d, 1.0, 500, 999, "both", "asymmetric")[0]
    sigmas = comfy.samplers.KSampler(m, steps=10, device="cpu", sampler="euler", scheduler="normal").sigmas
    pos, neg = conds(64)
    noise = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    strengths = (-1.0, 0.0, 1.0, 2.0)

    def run(values):
        guider = comfy.samplers.CFGGuider(m)
        guider.set_conds(pos, neg)
        guider.set_cfg(7.0)
        sampler = comfy.samplers.KSAMPLER(sd.sample_asyrp, extra_options={"strengths": values})
        return guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, seed=0)

    batch, separate = [], []
    run(strengths)
    for _ in range(repeats):
        batch += timed(lambda: run(strengths), 1)
        separate += timed(lambda: [run((s,)) for s in strengths], 1)
    return statistics.median(batch), statistics.median(separate)


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def report(name: str, costs: dict, peaks: dict | None = None) -> None:
    plain = costs[PLAIN]
    print(f"\n{name}: one CFG step (median)" + (", resident memory with the model loaded and its peak during a "
                                                "second step (fresh process each)" if peaks else ""))
    for k, v in costs.items():
        peak = f"   {peaks[k][0]:6.0f} MiB loaded, step peak {peaks[k][1]:6.0f} MiB (+{peaks[k][1] - peaks[k][0]:.0f})" \
            if peaks else ""
        print(f"  {k:36s} {v * 1000:9.1f} ms   {v / plain:5.2f}x{peak}", flush=True)


def peak_rss(config: str, variant: str, threads: int) -> tuple[float, float]:
    """(resident memory with the model loaded, peak resident memory during one more step of ``variant``) in
    MiB, in a fresh process (the peak is reset before that step, so building the model does not count)."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--peak", variant, "--config", config, "--threads", str(threads)],
                         capture_output=True, text=True, check=True).stdout
    loaded, peak = out.strip().splitlines()[-1].split()
    return float(loaded), float(peak)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--real-repeats", type=int, default=2)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--memory", action="store_true", help="also the peak memory of each variant (fresh processes)")
    ap.add_argument("--peak", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--config", default="tiny", help=argparse.SUPPRESS)
    args = ap.parse_args()
    why = comfy_available()
    if why:
        sys.exit(f"needs ComfyUI: {why}")
    torch.set_num_threads(args.threads)
    comfy_modules()
    from tests.comfyui.tiny_models_pack.tiny_models import SD15_TINY

    shapes = {"tiny": (SD15_TINY, 64, 32), "real": (SD15_REAL, 768, 64)}
    if args.peak:
        config, context, size = shapes[args.config]
        with torch.inference_mode():
            m = step_costs(build(config), context, 1, size, only=args.peak)
        print(m["loaded"], m["peak"])
        return
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats")

    def peaks(config):
        return {k: peak_rss(config, k, args.threads) for k in VARIANTS} if args.memory else None
    with torch.inference_mode():
        tiny = build(SD15_TINY)
        report("tiny SD1.5 configuration (5.8 M), latent 32x32", step_costs(tiny, 64, args.repeats, 32),
               peaks("tiny"))
        batch, separate = sweep_costs(tiny, args.repeats)
        print(f"\ntiny configuration, latent 32x32, 10-step samples: k = 4 sweep in one batch {batch:.2f} s, "
              f"4 runs {separate:.2f} s: {batch / separate:.2f}x")
        if not args.skip_real:
            real = build(SD15_REAL)
            params = sum(p.numel() for p in real.model.diffusion_model.parameters()) / 1e6
            report(f"real SD1.5 configuration ({params:.1f} M, random weights), latent 64x64",
                   step_costs(real, 768, args.real_repeats, 64), peaks("real"))


if __name__ == "__main__":
    main()
