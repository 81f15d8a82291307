"""``edit-folder``: edit every image under a folder at every strength, one file each, resumable, under one
process or spread over several with torchrun.

Exit status (one process): 0 when every input was done; 2 when the job was refused before any work (bad
arguments, another job holds the folder, the folder holds a job with other settings); 100 + n when n
inputs failed (n up to 99; the reasons on stderr and in manifest.jsonl); 130 when interrupted (rerun the
same command: finished outputs are kept and the rest is done). Under torchrun every process that ran the
job to its end exits 0 whatever failed, because torchrun reports any other status as a crash (exit 1 with
its own traceback): the failures are on the first process's lines and in manifest.jsonl. Every process
ends with one line saying what it did.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..errors import HSpaceError
from .common import Progress, add_threads, add_units, apply_threads, check_common, finite, say
from .edit import SIZE_POLICIES, TABLES, VARIANTS

FAILED_BASE = 100  # exit status when inputs failed (one process): 100 + their number (up to 199)


def register(sub) -> None:
    ef = sub.add_parser("edit-folder", help="edit every image under a folder (recursively) at every strength, one file "
                        "each, resumable; spread over processes with torchrun")
    ef.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
    ef.add_argument("--input", required=True, help="folder of PNG / JPEG images (searched recursively)")
    ef.add_argument("--output", required=True, help="output folder: mirrors the input tree, one file per input and "
                                                    "strength (<input name>.s<strength>.png)")
    ef.add_argument("--direction", required=True, action="append", help="direction file (repeat to combine)")
    ef.add_argument("--coef", type=float, action="append", help="coefficient of each --direction (default 1)")
    add_units(ef)
    ef.add_argument("--strength", type=float, action="append", required=True, help="edit strength (repeat)")
    ef.add_argument("--t-edit", dest="t_edit", type=int, default=500)
    ef.add_argument("--t-boost", dest="t_boost", type=int, default=None)
    ef.add_argument("--table", choices=TABLES)
    ef.add_argument("--text-cosine", dest="text_cosine", type=float, default=1.0)
    ef.add_argument("--from-direction", dest="from_direction", action="store_true")
    ef.add_argument("--steps", type=int, default=None, help="generation steps (default: the inversion's)")
    ef.add_argument("--inversion-steps", dest="inversion_steps", type=int, default=40)
    ef.add_argument("--inversion-method", dest="inversion_method", choices=["ddim", "ddpm"], default="ddim")
    ef.add_argument("--keep-inversions", dest="keep_inversions", action="store_true",
                    help="write each batch's inversion under OUTPUT/.inversions and reuse it on reruns")
    ef.add_argument("--eta", type=float, default=1.0)
    ef.add_argument("--seed", type=int, default=0,
                    help="the job's seed; each input's own seed comes from it and the input's relative path")
    ef.add_argument("--variant", default="asymmetric", choices=[v for v in VARIANTS if not v.endswith("_shift")])
    ef.add_argument("--size-policy", dest="size_policy", default="resize_crop", choices=SIZE_POLICIES)
    ef.add_argument("--batch", type=int, default=8, help="inputs inverted and edited together")
    ef.add_argument("--restart", action="store_true",
                    help="the output folder holds a job with other settings: remove its outputs and start over")
    ef.add_argument("--remove-orphans", dest="remove_orphans", action="store_true",
                    help="delete the outputs (and manifest rows) of inputs that are no longer in the input folder")
    ef.add_argument("--device", default="auto", help="auto: cuda:LOCAL_RANK when there are GPUs, else the CPU")
    add_threads(ef)
    ef.set_defaults(func=run, interrupted="interrupted; rerun the same command to resume (finished outputs are kept)")


def run(args: argparse.Namespace) -> int:
    from ..directions.io import load_direction
    from ..distributed import context
    from ..folder_job import FolderJob, run_folder_job
    from ..interval import choose_interval

    check_common(args)
    finite(args.strength, "--strength")
    finite(args.coef, "--coef")
    coefs = args.coef or [1.0] * len(args.direction)
    if len(coefs) != len(args.direction):
        raise HSpaceError(f"give one --coef per --direction ({len(args.direction)}), got {len(coefs)}")
    source = "table" if args.table else "direction" if args.from_direction else "explicit"
    if args.from_direction and len(args.direction) != 1:
        raise HSpaceError("--from-direction takes the interval of exactly one --direction")
    job = FolderJob(model=args.model, directions=tuple(zip(args.direction, coefs)), strengths=tuple(args.strength),
                    t_edit=args.t_edit, t_boost=args.t_boost or 0, steps=args.steps,
                    inversion_steps=args.inversion_steps, method=args.inversion_method, eta=args.eta, seed=args.seed,
                    size_policy=args.size_policy, variant=args.variant, batch=args.batch, units=args.units)
    job.check()  # before anything is read or computed
    if source != "explicit":
        interval = choose_interval(source, t_edit=args.t_edit, t_boost=args.t_boost,
                                   direction=load_direction(args.direction[0]) if args.from_direction else None,
                                   dataset=args.table, text_cosine=args.text_cosine)
        job = FolderJob(**{**job.__dict__, "t_edit": interval.t_edit, "t_boost": interval.t_boost})
    apply_threads(args)
    ctx = context(args.device)
    who = f"rank {ctx.rank}/{ctx.world}: " if ctx.world > 1 else ""
    args.interrupted = f"{who}{args.interrupted}"
    bar = Progress(f"{who}edit-folder", unit="image")
    try:
        report = run_folder_job(job, Path(args.input), Path(args.output), ctx=ctx,
                                keep_inversions=args.keep_inversions, restart=args.restart,
                                remove_orphans=args.remove_orphans, command=shlex.join(sys.argv),
                                progress=bar.update, say=say if ctx.main else None)
    except HSpaceError as e:
        raise HSpaceError(f"{who}{e}") from None
    finally:
        bar.close()
        ctx.close()
    if ctx.main:
        if report.stale_lock:
            say(f"took over a stale lock of {report.stale_lock} (that process is gone)")
        for rel, what in sorted(report.notes.items()):
            say(f"upscaled: {rel}: {what}")
        for rel in report.changed:
            say(f"changed since the last run, redone: {rel}")
        for name in report.orphans:
            say(f"{'removed' if report.removed else 'orphan'}: {name} (its input is gone"
                f"{'' if report.removed else '; --remove-orphans deletes it'})")
        for rel, why in sorted(report.failed.items()):
            say(f"failed: {rel}: {why}")
    failed = len(report.failed) if ctx.main else 0
    code = FAILED_BASE + min(failed, 99) if failed and ctx.world == 1 else 0
    import torch

    say(f"{who}{report.inputs} inputs, {report.written} outputs written, {report.skipped} already done, "
        f"{len(report.changed)} changed and redone, {failed if ctx.main else '-'} failed, "
        f"{len(report.orphans) if ctx.main else '-'} orphaned; {report.seconds:.1f} s on {ctx.device} with "
        f"{torch.get_num_threads()} thread(s); exit status {code}")
    return code
