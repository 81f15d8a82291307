"""What the subcommands share: cheap argument checks (before any file is read or any network runs), the
overrides for what a checkpoint does not store, the thread setting, and progress on stderr.

Progress: a tqdm bar when stderr is a terminal; plain lines otherwise (a log file gets one line per tenth
of a job and its last step, not a run-on line of carriage returns).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import HSpaceError

OVERRIDES = ("image_size", "num_heads", "num_head_channels", "schedule", "num_timesteps")


def add_override_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what the weights do not store")
    g.add_argument("--image-size", dest="image_size", type=int, default=None)
    g.add_argument("--num-heads", dest="num_heads", type=int, default=None)
    g.add_argument("--num-head-channels", dest="num_head_channels", type=int, default=None)
    g.add_argument("--schedule", choices=["linear", "cosine"], default=None)
    g.add_argument("--num-timesteps", dest="num_timesteps", type=int, default=None)


def overrides(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in OVERRIDES}


def add_units(p: argparse.ArgumentParser) -> None:
    p.add_argument("--units", choices=["calibrated", "raw"], default="calibrated",
                   help="what --strength and --coef count in: calibrated (default; 1 = an RMS change of the predicted "
                        "x0 of 2%% of its own per edited step over the direction's calibration interval, the same for "
                        "every direction) or raw (as the direction was made); a direction without a calibration is "
                        "raw either way")


def say(message: str) -> None:
    """One line on stderr in one write: the ranks of a torchrun job share the terminal, and print's separate
    newline let another rank's line land in the middle of this one."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per process (default: PyTorch's, which follows OMP_NUM_THREADS when it is set, "
                        "else uses every core; torchrun sets OMP_NUM_THREADS=1 per process)")


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads`` when given; otherwise the environment decides (OMP_NUM_THREADS, else PyTorch's default)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def at_least(value, low: int, flag: str) -> None:
    """Cheap arguments are checked before any file is read or any network runs."""
    if value is not None and value < low:
        raise HSpaceError(f"{flag} must be at least {low}, got {value}")


def finite(values, flag: str) -> None:
    bad = [v for v in values or [] if not math.isfinite(v)]
    if bad:
        raise HSpaceError(f"{flag} must be finite numbers, got {bad[0]}")


def check_common(args: argparse.Namespace) -> None:
    at_least(getattr(args, "threads", None), 1, "--threads")
    for name in ("image_size", "num_heads", "num_head_channels"):
        at_least(getattr(args, name, None), 1, "--" + name.replace("_", "-"))
    at_least(getattr(args, "num_timesteps", None), 2, "--num-timesteps")


def check_out(out: Path, suffix: str, overwrite: bool) -> None:
    if out.suffix.lower() != suffix:
        raise HSpaceError(f"{out}: the output must be a {suffix} file")
    if not out.parent.is_dir():
        raise HSpaceError(f"{out.parent}: no such folder for the output")
    if out.exists() and not overwrite:
        raise HSpaceError(f"{out}: already exists (use --overwrite to replace it)")


class Progress:
    """Progress of one job on ``stream`` (stderr): ``update(done, total, note)`` with the number of units
    done so far. A tqdm bar on a terminal; elsewhere a line at each tenth of the job and at its end."""

    def __init__(self, label: str, unit: str = "step", stream=None):
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar, self.total, self.shown = None, None, -1

    def update(self, done: int, total: int, note: str = "") -> None:
        if total != self.total:  # a new job
            self.close()
            self.total, self.shown = total, -1
            if self.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=self.label, unit=self.unit, file=self.stream, leave=True)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            if done >= total:
                self.close()
            return
        tenth = max(1, total // 10)
        if done >= total or done // tenth > self.shown // tenth:
            self.shown = done
            print(f"{self.label}: {done}/{total} {self.unit}s" + (f" ({note})" if note else ""), file=self.stream,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StepProgress(Progress):
    """``Progress`` as the engine's per-step callback (``StepInfo``; a CLIP training update also carries
    its image and loss)."""

    def __call__(self, info) -> None:
        image = f", image {info.image}" if hasattr(info, "image") else ""
        loss = f"{image} loss {info.loss:.4f}" if hasattr(info, "loss") else ""
        self.update(info.i + 1, info.total, f"t={info.t}{loss}")
