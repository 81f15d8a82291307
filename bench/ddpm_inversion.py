"""Costs of edit-friendly DDPM inversion and of Jacobian directions, side by side in one run.

  1. edit-friendly inversion + edit vs DDIM inversion + edit of one image, each in a fresh
     subprocess: wall time of each part, peak resident memory, and the size of what the inversion
     keeps (the noise maps: one image-sized float32 tensor per step, vs x_T);
  2. k = 4 Jacobian components of one image at one t: the inversion to t, then the subspace
     iteration (per round: k forward-mode and k reverse-mode products), time and peak memory.

Model: the CelebA-HQ 256 configuration (random weights, 113.7 M parameters) unless --demo (the
embedded 32 px model). Steps default to 10 (a 40-step 256 px run takes minutes per part on 2 CPU
cores; the costs scale linearly with steps).

    python bench/ddpm_inversion.py [--steps 10] [--iterations 3] [--threads 2] [--demo]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[4]))
from hspace_core import load_model, invert, invert_ddpm, edit, DirectionInfo, TensorDirection
from hspace_core.discovery.jacobian import jacobian_directions
model = load_model(sys.argv[2])
what, steps, iterations = sys.argv[3], int(sys.argv[5]), int(sys.argv[6])
size = model.image_size
g = torch.Generator().manual_seed(0)
img = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, size=size, mode="bilinear")
with torch.inference_mode():
    model.predict(img, torch.tensor([10]))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {"after_load_kib": base}
tic = time.perf_counter()
if what == "jacobian":
    rounds = []
    jacobian_directions(model, img, 4, t_edit=500, steps=steps, iterations=iterations,
                        callback=lambda info: rounds.append(time.perf_counter()))
    out["total_s"] = time.perf_counter() - tic
    out["round_s"] = (rounds[-1] - rounds[-1 - iterations]) / iterations if len(rounds) > iterations else None
else:
    info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, made_steps=steps)
    d = TensorDirection(0.3 * torch.randn(*model.h_shape, generator=g), None, info)
    inv = invert_ddpm(model, img, steps=steps) if what == "ddpm" else invert(model, img, steps=steps)
    out["invert_s"] = time.perf_counter() - tic
    kept = inv.noise_maps if what == "ddpm" else inv.x_T
    out["kept_bytes"] = kept.numel() * kept.element_size()
    tic = time.perf_counter()
    res = edit(model, inv, d, [0.0, 1.0], t_edit=500)
    out["edit_s"] = time.perf_counter() - tic
    out["regeneration_max_error"] = float((res.images[0, 0] - inv.x_0[0]).abs().max())
out["peak_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def child(model_path: Path, what: str, args) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT), str(model_path), what, str(args.threads),
                        str(args.steps), str(args.iterations)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--demo", action="store_true", help="the embedded 32 px model instead of the 256 config")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            path, label = ROOT / "hspace_core" / "data" / "demo_faces32.safetensors", "demo model (32 px)"
        else:
            from bench.editing import _celeba_256

            path, label = _celeba_256(Path(tmp)), "CelebA-HQ 256 config (random weights)"
        ddim, ddpm, jac = (child(path, w, args) for w in ("ddim", "ddpm", "jacobian"))
    mib = 1 / 1024
    print(f"{label}, {args.steps} steps, 1 image, edit at strengths 0 and 1 (t_edit 500), {args.threads} threads\n")
    print("| | DDIM inversion + edit | edit-friendly inversion + edit | ratio |")
    print("|---|---|---|---|")
    print(f"| inversion | {ddim['invert_s']:.2f} s | {ddpm['invert_s']:.2f} s | {ddpm['invert_s'] / ddim['invert_s']:.2f}x |")
    print(f"| edit (2 strengths, one batch) | {ddim['edit_s']:.2f} s | {ddpm['edit_s']:.2f} s | "
          f"{ddpm['edit_s'] / ddim['edit_s']:.2f}x |")
    print(f"| kept by the inversion | {ddim['kept_bytes'] / 2**20:.2f} MiB (x_T) | {ddpm['kept_bytes'] / 2**20:.2f} MiB "
          f"(noise maps) | {ddpm['kept_bytes'] / ddim['kept_bytes']:.0f}x |")
    print(f"| peak resident memory (fresh process; after load) | {ddim['peak_kib'] * mib:.0f} MiB "
          f"({ddim['after_load_kib'] * mib:.0f}) | {ddpm['peak_kib'] * mib:.0f} MiB ({ddpm['after_load_kib'] * mib:.0f}) | "
          f"{ddpm['peak_kib'] / ddim['peak_kib']:.2f}x |")
    print(f"| strength-0 regeneration, max abs error | {ddim['regeneration_max_error']:.2e} | "
          f"{ddpm['regeneration_max_error']:.2e} | |")
    rs = f"{jac['round_s']:.2f} s per round" if jac["round_s"] else "-"
    print(f"\nJacobian, k = 4 at t = 500 (inversion to t, then {args.iterations} rounds): {jac['total_s']:.2f} s in all, "
          f"{rs}; peak resident memory {jac['peak_kib'] * mib:.0f} MiB (after load {jac['after_load_kib'] * mib:.0f})")


if __name__ == "__main__":
    main()
