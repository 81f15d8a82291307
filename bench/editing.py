"""Costs of Asyrp editing, side by side in one run.

  1. an edited step (one encoder pass, decoders on h and h + dh) vs a plain DDIM step
     (target: <= 1.6x);
  2. a k = 4 strength sweep in one batch vs the same 4 strengths run separately
     (target: <= 0.6x);
  3. peak memory (resident set, measured in a fresh subprocess) of a whole 40 + 40 step edit:
     invert one image with 40 steps, edit it with 40 steps at one strength.

Models: the embedded demo model (32 px) and the CelebA-HQ 256 configuration (random weights,
113.7 M parameters). Step timings are the median of --repeats interleaved runs; the sweep is timed
as whole edits on the demo model and per step on the 256 configuration (a step's cost is what
batching changes; a whole 40-step 256 px sweep takes most of an hour on 2 CPU cores).

    python bench/editing.py [--repeats 5] [--threads 2] [--skip-256] [--memory-256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_core import DirectionInfo, TensorDirection, edit, invert, load_model  # noqa: E402
from hspace_core.sampling import asyrp_predictor, generate, plain_predictor  # noqa: E402

DEMO = ROOT / "hspace_core" / "data" / "demo_faces32.safetensors"


def _celeba_256(tmp: Path):
    from tests.engine.references import GOOGLE_256, ddim_keys_from_diffusers, diffusers_unet

    path = tmp / "celeba_hq.ckpt"
    torch.save(ddim_keys_from_diffusers(diffusers_unet(GOOGLE_256, seed=0).state_dict(), 6), path)
    return path


def _direction(model, scale: float = 0.3):
    g = torch.Generator().manual_seed(0)
    values = scale * torch.randn(3, *model.h_shape, generator=g)
    info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, made_steps=40, name="bench")
    return TensorDirection(values, torch.tensor([0, 500, 999]), info)


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def step_costs(model, size: int, repeats: int) -> dict:
    d = _direction(model)
    x = torch.randn(1, 3, size, size)
    x4 = x.repeat(4, 1, 1, 1)
    four = torch.tensor([-1.0, 0.5, 1.0, 2.0])
    step = [(500, 487)]  # one step of the engine's walk, inside the editing interval

    def run(predict, x_t):
        generate(predict, x_t, step, model.schedule)

    def plain():
        run(plain_predictor(model), x)

    def edited():
        run(asyrp_predictor(model, d, torch.ones(1), t_edit=0, steps=40), x)

    def sweep_batched():
        run(asyrp_predictor(model, d, four, t_edit=0, steps=40), x4)

    def sweep_separate():
        for j in range(4):
            run(asyrp_predictor(model, d, four[j:j + 1], t_edit=0, steps=40), x)

    with torch.inference_mode():
        for f in (plain, edited, sweep_batched, sweep_separate):
            f()
        med = {name: [] for name in ("plain", "edited", "sweep_batched", "sweep_separate")}
        for _ in range(repeats):
            for name, f in (("plain", plain), ("edited", edited), ("sweep_batched", sweep_batched),
                            ("sweep_separate", sweep_separate)):
                tic = time.perf_counter()
                f()
                med[name].append(time.perf_counter() - tic)
    return {k: statistics.median(v) for k, v in med.items()}


def whole_sweep(model, repeats: int) -> dict:
    d = _direction(model)
    img = torch.rand(1, 3, model.image_size, model.image_size) * 2 - 1
    inv = invert(model, img, steps=40)
    strengths = [-1.0, 0.5, 1.0, 2.0]
    batched = _median(lambda: edit(model, inv, d, strengths, t_edit=400), repeats)
    separate = _median(lambda: [edit(model, inv, d, [s], t_edit=400) for s in strengths], repeats)
    return {"sweep_batched": batched, "sweep_separate": separate}


_MEMORY_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[4]))
from hspace_core import load_model, invert, edit, DirectionInfo, TensorDirection
model = load_model(sys.argv[2])
size = model.image_size
info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, made_steps=40)
d = TensorDirection(0.3 * torch.randn(*model.h_shape), None, info)
img = torch.rand(1, 3, size, size) * 2 - 1
with torch.inference_mode():
    model.predict(img, torch.tensor([10]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = int(sys.argv[3])
inv = invert(model, img, steps=n)
out = edit(model, inv, d, [1.0], t_edit=400, steps=n)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"after_load_kib": base, "peak_kib": peak}))
"""


def peak_memory(model_path: Path, steps: int, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(ROOT), str(model_path), str(steps), str(threads)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-256", action="store_true")
    ap.add_argument("--memory-256", action="store_true", help="also measure the 40 + 40 step edit at 256 px (slow)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    report = {}

    demo = load_model(DEMO)
    s = step_costs(demo, 32, args.repeats * 4)
    w = whole_sweep(demo, args.repeats)
    m = peak_memory(DEMO, 40, args.threads)
    report["demo"] = {**{f"step_{k}": v for k, v in s.items()}, **w, **m}
    print(f"demo model (32 px, {demo.num_params / 1e6:.1f} M params), {args.threads} threads")
    print(f"  plain DDIM step {s['plain'] * 1e3:.1f} ms, edited step {s['edited'] * 1e3:.1f} ms: "
          f"{s['edited'] / s['plain']:.2f}x (target <= 1.6x)")
    print(f"  k=4 sweep, whole 40-step edits: one batch {w['sweep_batched']:.2f} s vs 4 runs "
          f"{w['sweep_separate']:.2f} s: {w['sweep_batched'] / w['sweep_separate']:.2f}x (target <= 0.6x)")
    print(f"  peak RSS of a 40 + 40 step edit: {m['peak_kib'] / 1024:.0f} MiB "
          f"({(m['peak_kib'] - m['after_load_kib']) / 1024:.0f} MiB above the loaded model)")

    if not args.skip_256:
        with tempfile.TemporaryDirectory() as tmp:
            path = _celeba_256(Path(tmp))
            model = load_model(path)
            s = step_costs(model, 256, args.repeats)
            report["celeba256"] = {f"step_{k}": v for k, v in s.items()}
            print(f"CelebA-HQ 256 configuration (113.7 M params, random weights), {args.threads} threads")
            print(f"  plain DDIM step {s['plain']:.2f} s, edited step {s['edited']:.2f} s: "
                  f"{s['edited'] / s['plain']:.2f}x (target <= 1.6x)")
            print(f"  k=4 sweep step: one batch {s['sweep_batched']:.2f} s vs 4 separate {s['sweep_separate']:.2f} s: "
                  f"{s['sweep_batched'] / s['sweep_separate']:.2f}x (target <= 0.6x)")
            if args.memory_256:
                m = peak_memory(path, 40, args.threads)
                report["celeba256"].update(m)
                print(f"  peak RSS of a 40 + 40 step edit: {m['peak_kib'] / 1024:.0f} MiB "
                      f"({(m['peak_kib'] - m['after_load_kib']) / 1024:.0f} MiB above the loaded model)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
