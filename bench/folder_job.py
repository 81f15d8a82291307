"""Throughput of the folder job (``python -m hspace_core edit-folder``) on the embedded demo model: images per
second with 1 and with N processes (torchrun, gloo on the CPU, or one GPU each), side by side in one run.

    python bench/folder_job.py [--images 32] [--batch 8] [--procs 1,2] [--threads-total 2]

Each run starts from an empty output folder; the time is the whole command (start-up, model loading,
inversion and edit of every image at two strengths, writing, the manifest merge). With a fixed number of
CPU threads in total (--threads-total), N processes get total / N threads each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--threads-total", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from hspace_core.demo.demo import demo_model_path
    from hspace_core.demo.faces import render_face, sample_faces

    tmp = Path(tempfile.mkdtemp())
    faces = tmp / "faces"
    faces.mkdir()
    for i, f in enumerate(sample_faces(args.images, 77)):
        render_face(f, 32).save(faces / f"face{i:04d}.png")
    width = ROOT / "hspace_core" / "data" / "directions" / "demo_width.safetensors"
    print(f"{args.images} images of 32 px, batches of {args.batch}, {args.steps} inversion + {args.steps} edit steps, "
          f"2 strengths, {args.threads_total} CPU threads in total")
    first = None
    for n in [int(p) for p in args.procs.split(",")]:
        out = tmp / f"out{n}"
        threads = max(1, args.threads_total // n)
        cli = ["edit-folder", "--model", str(demo_model_path()), "--input", str(faces), "--output", str(out),
               "--direction", str(width), "--strength", "-2", "--strength", "2", "--t-edit", "435", "--batch",
               str(args.batch), "--inversion-steps", str(args.steps), "--threads", str(threads), "--device", args.device]
        cmd = [sys.executable, "-m", "hspace_core", *cli] if n == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", "hspace_core",
             *cli]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(r.stderr[-2000:])
        first = first or dt
        print(f"  {n} process(es) x {threads} thread(s): {dt:6.1f} s, {args.images / dt:5.2f} images/s, "
              f"{first / dt:.2f}x the first row", flush=True)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
