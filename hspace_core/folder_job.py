"""Editing a folder of images at data-set scale: every input inverted once, written once per strength as
its own file in an output tree that mirrors the input tree, resumable, spread over processes.

    output/<relative folder>/<stem>.s<strength>.png      one file per input and strength
    output/hspace_job.json                               the job's settings and their digest
    output/manifest.jsonl                                what was done: input, output, strength, t_edit,
                                                         seed, checksum, status (done / failed + reason)
    output/.inversions/batch_<k>_<digest>.safetensors    the kept inversions (--keep-inversions)

The unit of work is a *batch*: ``batch`` consecutive inputs of the sorted input list, inverted and
edited together (every strength in one sweep). Batches are the same whatever the number of processes,
and each is computed alone, so the outputs do not depend on how the work is spread. A batch is done
when every output of its readable inputs is in a manifest with the job's digest and the file on disk
has the recorded checksum; a rerun redoes only the batches that are not (whole: the same composition,
the same numbers). Outputs are written to a hidden temporary name and renamed (atomic), then recorded;
a process that dies leaves no partial output under a final name, and its temporary files are removed
by the next run. An unreadable input, or one the size policy refuses, is recorded as failed with the
reason and the job goes on.

Several processes (``torchrun``, ``distributed.context``): rank r takes batches r, r + N, ... (balanced
by count), writes ``.manifest.rank<r>.jsonl``; at the end rank 0 merges them into ``manifest.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .distributed import Context, gather_objects, share
from .errors import HSpaceError

INPUT_SUFFIXES = (".png", ".jpg", ".jpeg")
JOB_FORMAT = "hspace-folder-job-1"
JOB_FILE, MANIFEST, INVERSIONS = "hspace_job.json", "manifest.jsonl", ".inversions"


@dataclass(frozen=True)
class FolderJob:
    """What a folder job does. ``directions``: (direction file, coefficient) pairs; ``steps`` None: the
    inversion's grid; ``method``: "ddim" or "ddpm" (edit-friendly)."""

    model: str
    directions: tuple[tuple[str, float], ...]
    strengths: tuple[float, ...]
    t_edit: int
    t_boost: int = 0
    steps: int | None = None
    inversion_steps: int = 40
    method: str = "ddim"
    eta: float = 1.0
    seed: int = 0
    size_policy: str = "resize_crop"
    variant: str = "asymmetric"
    batch: int = 8

    def check(self) -> None:
        """The cheap checks, before any file is read or any step is taken."""
        if not self.strengths:
            raise HSpaceError("give at least one strength")
        if self.batch < 1:
            raise HSpaceError(f"batch must be at least 1, got {self.batch}")
        if self.inversion_steps < 2 or (self.steps is not None and self.steps < 2):
            raise HSpaceError("steps must be at least 2")
        if self.method not in ("ddim", "ddpm"):
            raise HSpaceError(f"unknown inversion method {self.method!r}; use ddim or ddpm")
        if not 0 <= self.t_edit <= 999:
            raise HSpaceError(f"t_edit must lie in [0, 999], got {self.t_edit}")


@dataclass
class JobReport:
    """What a run did: outputs written, outputs skipped (already done), inputs failed (with reasons)."""

    inputs: int = 0
    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def input_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the PNG / JPEG files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HSpaceError(f"{folder}: no such input folder")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES and not p.name.startswith("."))


def output_name(rel_input: str, strength: float) -> str:
    """The output path (relative) of one input at one strength: same folder, ``<stem>.s<+strength>.png``."""
    p = Path(rel_input)
    return (p.parent / f"{p.stem}.s{strength:+g}.png").as_posix()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _input_checksum(path: Path) -> str:
    return sha256(path) if path.is_file() else "missing"


def job_digest(job: FolderJob, fingerprint: str) -> tuple[dict, str]:
    """The settings that decide the outputs (the model by its fingerprint, directions by their bytes) and
    their digest."""
    settings = {**asdict(job), "model": fingerprint,
                "directions": [[sha256(Path(p)), c] for p, c in job.directions]}
    return settings, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _read_manifest(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a process that died while appending
            continue
    return out


def _manifests(out: Path) -> list[dict]:
    entries = _read_manifest(out / MANIFEST)
    for p in sorted(out.glob(".manifest.rank*.jsonl")):
        entries += _read_manifest(p)
    return entries


def _claim_folder(out: Path, settings: dict, digest: str, restart: bool) -> None:
    """Rank 0: write the job file, or refuse a folder made with other settings (``restart``: start over,
    removing the old job's outputs and manifests)."""
    f = out / JOB_FILE
    if f.exists():
        try:
            old = json.loads(f.read_text())
        except json.JSONDecodeError:
            raise HSpaceError(f"{f}: not a readable job file; remove it or choose another output folder") from None
        if old.get("digest") != digest:
            if not restart:
                changed = sorted(k for k in set(settings) | set(old.get("settings", {}))
                                 if settings.get(k) != old.get("settings", {}).get(k))
                raise HSpaceError(f"{out} holds a job made with other settings (changed: {', '.join(changed)}); "
                                  "use another output folder, or --restart to replace it")
            for e in _manifests(out):
                if e.get("output") and (out / e["output"]).exists():
                    (out / e["output"]).unlink()
            for p in [out / MANIFEST, *out.glob(".manifest.rank*.jsonl")]:
                p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.rglob(".*.tmp"):  # what a process that died was writing
        tmp.unlink()
    _atomic_write(f, lambda p: p.write_text(json.dumps({"format": JOB_FORMAT, "digest": digest,
                                                         "settings": settings}, indent=2) + "\n"))


def _done(out: Path, entries: list[dict], digest: str) -> dict[str, dict]:
    """Recorded outputs of this job whose file is there with its checksum: output path -> entry."""
    ok = {}
    for e in entries:
        if e.get("status") == "done" and e.get("digest") == digest:
            p = out / e["output"]
            if p.exists() and sha256(p) == e["checksum"]:
                ok[e["output"]] = e
    return ok


class _Progress:
    """One line per finished batch on stderr: images done of this process's share, rate, time left."""

    def __init__(self, total: int, rank: int, world: int, stream=sys.stderr):
        self.total, self.done, self.t0 = total, 0, time.time()
        self.prefix = f"[rank {rank}/{world}] " if world > 1 else ""
        self.stream = stream

    def add(self, n: int) -> None:
        self.done += n
        dt = time.time() - self.t0
        rate = self.done / dt if dt > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        print(f"{self.prefix}{self.done}/{self.total} images, {rate:.2f} images/s, {left:.0f} s left",
              file=self.stream, flush=True)


def run_folder_job(job: FolderJob, input_dir: Path, output_dir: Path, *, ctx: Context = Context(),
                   keep_inversions: bool = False, restart: bool = False, progress=sys.stderr) -> JobReport:
    """Run (or resume) ``job`` on the images under ``input_dir``, writing under ``output_dir``; this
    process does its share of the batches. Returns this process's report, with every process's failures
    on rank 0 (after the merge)."""
    from .directions.io import load_direction
    from .images import load_image, prepare_images, to_pil
    from .interval import EditInterval
    from .loading import load_model

    tic = time.time()
    job.check()
    input_dir, out = Path(input_dir), Path(output_dir)
    if out.resolve() == input_dir.resolve() or input_dir.resolve() in out.resolve().parents:
        raise HSpaceError(f"{out}: the output folder must not be the input folder or inside it")
    inputs = input_files(input_dir)
    if not inputs:
        raise HSpaceError(f"{input_dir}: no PNG or JPEG images in it")
    model = load_model(job.model)
    model.to(ctx.device)
    directions = [(load_direction(p), c) for p, c in job.directions]
    for d, _ in directions:
        d.check_fits(model)
    settings, digest = job_digest(job, model.fingerprint)
    refusal = None
    if ctx.main:
        try:
            _claim_folder(out, settings, digest, restart)
        except HSpaceError as e:
            refusal = str(e)
    refusal = gather_objects(refusal, ctx)[0]
    if refusal:
        raise HSpaceError(refusal)
    ctx.barrier()

    entries = _manifests(out)
    done = _done(out, entries, digest)
    # inputs that failed with this job's settings and have not changed since: failing again is all a rerun would do
    settled = {e["input"] for e in entries if e.get("status") == "failed" and e.get("digest") == digest
               and e.get("input_checksum") == _input_checksum(input_dir / e["input"])}
    batches = [inputs[i:i + job.batch] for i in range(0, len(inputs), job.batch)]
    mine = share(list(range(len(batches))), ctx.rank, ctx.world)
    report = JobReport(inputs=sum(len(batches[k]) for k in mine))
    todo = [k for k in mine if not all(r in settled or all(output_name(r, s) in done for s in job.strengths)
                                       for r in batches[k])]
    report.skipped = sum(output_name(r, s) in done for k in mine if k not in todo for r in batches[k]
                         for s in job.strengths)
    bar = _Progress(sum(len(batches[k]) for k in todo), ctx.rank, ctx.world, progress)
    rank_manifest = out / f".manifest.rank{ctx.rank}.jsonl"
    interval = EditInterval(job.t_edit, job.t_boost, "folder job")
    for k in todo:
        good, names = [], []
        failed = []
        for rel in batches[k]:
            try:
                x, _ = prepare_images(load_image(input_dir / rel), model.image_size, job.size_policy)
                good.append(x)
                names.append(rel)
            except HSpaceError as e:
                failed.append({"input": rel, "status": "failed", "reason": str(e), "digest": digest, "batch": k,
                               "input_checksum": _input_checksum(input_dir / rel)})
        result = None
        if good:
            try:
                inv = _inversion(model, torch.cat(good), job, k, names, input_dir, out if keep_inversions else None)
                result = _edit_batch(model, inv, directions, job, interval, k)
            except HSpaceError as e:  # e.g. an edit that diverges: these inputs fail, the job goes on
                failed += [{"input": rel, "status": "failed", "reason": str(e), "digest": digest, "batch": k,
                            "input_checksum": _input_checksum(input_dir / rel)} for rel in names]
        entries = list(failed)
        if result is not None:
            for i, rel in enumerate(names):
                for j, s in enumerate(job.strengths):
                    name = output_name(rel, s)
                    _atomic_write(out / name, lambda p, im=result[i, j]: to_pil(im).save(p, format="PNG"))
                    entries.append({"input": rel, "output": name, "strength": s, "t_edit": job.t_edit,
                                    "seed": job.seed + k, "checksum": sha256(out / name), "status": "done",
                                    "digest": digest, "batch": k})
                    report.written += 1
        with rank_manifest.open("a") as f:
            for e in entries:
                f.write(json.dumps(e) + "\n")
            f.flush()
            os.fsync(f.fileno())
        report.failed.update({e["input"]: e["reason"] for e in failed})
        bar.add(len(batches[k]))
    ctx.barrier()
    if ctx.main:
        report.failed = _merge(out, digest, inputs)
    report.seconds = time.time() - tic
    return report


def _inversion(model, x0: torch.Tensor, job: FolderJob, k: int, names: list[str], input_dir: Path,
               keep: Path | None):
    """The batch's inversion: read back from ``keep``'s .inversions when it is there for the same inputs
    and settings, else computed (and written there)."""
    from .inversion import invert, invert_ddpm, load_inversion, save_inversion

    path = None
    if keep is not None:
        key = hashlib.sha256(json.dumps([names, [sha256(input_dir / n) for n in names], job.method,
                                         job.inversion_steps, job.seed + k, job.size_policy,
                                         model.fingerprint]).encode()).hexdigest()[:16]
        path = keep / INVERSIONS / f"batch_{k:06d}_{key}.safetensors"
        if path.exists():
            try:
                return load_inversion(path)
            except HSpaceError:
                path.unlink()  # damaged: computed again
    with torch.inference_mode():
        if job.method == "ddpm":
            inv = invert_ddpm(model, x0, steps=job.inversion_steps, seed=job.seed + k)
        else:
            inv = invert(model, x0, steps=job.inversion_steps)
    if path is not None:
        save_inversion(inv, path, overwrite=True)
    return inv


def _edit_batch(model, inv, directions, job: FolderJob, interval, k: int) -> torch.Tensor:
    """Images [N, K, 3, S, S] of one batch at every strength (one sweep)."""
    from .editing import edit

    return edit(model, inv, directions or None, list(job.strengths), t_edit=interval, steps=job.steps, eta=job.eta,
                seed=job.seed + k, variant=job.variant).images


def _merge(out: Path, digest: str, inputs: list[str]) -> dict[str, str]:
    """Rank 0, after every process finished: one manifest, the latest entry per (input, strength) of this
    job, in input order; returns the failures."""
    latest: dict[tuple, dict] = {}
    for e in _manifests(out):
        if e.get("digest") == digest:
            latest[(e["input"], e.get("strength"))] = e
    order = {rel: i for i, rel in enumerate(inputs)}
    done_inputs = {rel for (rel, s), e in latest.items() if e["status"] == "done"}
    rows = [e for key, e in latest.items() if not (e["status"] == "failed" and key[0] in done_inputs)]
    rows.sort(key=lambda e: (order.get(e["input"], len(order)), e.get("strength") or 0.0))
    _atomic_write(out / MANIFEST, lambda p: p.write_text("".join(json.dumps(e) + "\n" for e in rows)))
    for p in out.glob(".manifest.rank*.jsonl"):
        p.unlink()
    return {e["input"]: e["reason"] for e in rows if e["status"] == "failed"}
