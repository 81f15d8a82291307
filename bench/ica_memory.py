"""Peak memory and time of independent components on wide rows: on the rows themselves (how ``ica`` did it
before: every whitening and bootstrap resample formed a centred double-precision copy of the rows) against
on the coordinates of their span (``ica.span``, now: one N x N Gram matrix built in column chunks, the rest
on N x r coordinates), side by side in one run.

    python bench/ica_memory.py [--rows 256] [--width 400000] [--k 8] [--json docs/ica_memory.json]

The rows are a planted mixture (16 non-Gaussian factors along random directions plus weak Gaussian noise), float32,
as h trajectories are handed over: an SD1.5 trajectory of 20 edited steps of 1280 x 8 x 8 is 1.6 M numbers, so
256 of them are 1.7 GB (``--width 1638400``). Each way runs in its own process (``--way``): its peak is the
growth of the process's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) over its resident
size once the rows exist.

Both ways compute the same thing in exact arithmetic: ``tests/engine/test_ica.py`` shows them equal (components,
sources, stability) on rows 5000 wide. Here they are not compared: with 256 rows FastICA in 16 dimensions is
sensitive to rounding (the kept components of any two ways of computing it differ; either finds most of the
planted factors), so a comparison would measure that, not the change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import merge_json  # noqa: E402

WAYS = ("rows", "span")
FACTORS = 16  # planted non-Gaussian factors: as many as the default whitened dimensions for k 8
NOISE = 0.1  # the Gaussian noise per number, against factors of spread about 1 per number


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def planted_rows(n: int, width: int, seed: int = 0) -> torch.Tensor:
    """Rows [n, width] float32: ``FACTORS`` non-Gaussian factors (uniform dials, yes/no features of several
    frequencies, skewed ones, in turn) along random directions plus Gaussian noise (``NOISE``), made a column
    block at a time (no full-size temporaries)."""
    g = torch.Generator().manual_seed(seed)
    kinds = [lambda: torch.rand(n, generator=g) * 2 - 1, lambda: (torch.rand(n, generator=g) < 0.3).float(),
             lambda: torch.rand(n, generator=g) ** 3]
    s = torch.stack([kinds[i % 3]() * (3 + i / 4) for i in range(FACTORS)], dim=1)
    x = torch.empty(n, width)
    for a in range(0, width, 65536):
        b = min(width, a + 65536)
        mixing = torch.randn(FACTORS, b - a, generator=g)
        x[:, a:b] = NOISE * torch.randn(n, b - a, generator=g) + s @ mixing
    return x


def run_way(way: str, n: int, width: int, k: int) -> dict:
    from hspace_core.discovery.ica import RESAMPLES, _unmixed, independent_components, stability, whitened_dims

    torch.set_num_threads(2)
    x = planted_rows(n, width)
    dims = whitened_dims(k, None)
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from the resident size
    before = status_kb("VmRSS")
    tic = time.time()
    if way == "rows":  # the kept ones were indexed out of these shifts, already as wide as the rows
        shifts, _ = _unmixed(x, dims, 0)
        stability(x, shifts, dims, resamples=RESAMPLES, seed=0)
    else:
        independent_components(x, k, dims=dims, seed=0)
    seconds = time.time() - tic
    peak = status_kb("VmHWM") - before
    return {"way": way, "seconds": round(seconds, 1), "peak_over_rows_mb": round(peak / 1024),
            "rows_mb": round(x.numel() * 4 / 2 ** 20)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--width", type=int, default=400_000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--way", choices=WAYS, default=None, help="(internal) run one way and print its JSON")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.way:
        print(json.dumps(run_way(args.way, args.rows, args.width, args.k)))
        return
    results = {}
    for way in WAYS:
        out = subprocess.run([sys.executable, __file__, "--way", way, "--rows", str(args.rows),
                              "--width", str(args.width), "--k", str(args.k)], capture_output=True, text=True,
                             check=True)
        results[way] = json.loads(out.stdout.strip().splitlines()[-1])
    rows_mb = results["rows"]["rows_mb"]
    print(f"{args.rows} rows x {args.width} (float32, {rows_mb} MB), k {args.k}, whitened in {2 * args.k}, "
          f"stability over the default resamples\n")
    print("| way | peak memory over the rows | time |")
    print("|---|---|---|")
    for way, r in results.items():
        print(f"| {way} | {r['peak_over_rows_mb']} MB ({r['peak_over_rows_mb'] / rows_mb:.2f}x the rows) "
              f"| {r['seconds']} s |")
    ratio = results["rows"]["peak_over_rows_mb"] / max(results["span"]["peak_over_rows_mb"], 1)
    print(f"\npeak ratio rows / span: {ratio:.1f}x; time ratio {results['rows']['seconds'] / results['span']['seconds']:.1f}x")
    if args.json:
        merge_json(args.json, {"rows": args.rows, "width": args.width, "k": args.k, "ways": results,
                               "peak_ratio": round(ratio, 2)})


if __name__ == "__main__":
    main()
