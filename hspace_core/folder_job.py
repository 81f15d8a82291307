"""Editing a folder of images at data-set scale: every input inverted once, written once per strength as
its own file in an output tree that mirrors the input tree, resumable, spread over processes, losing
nothing.

    output/<relative input path>.s<strength>.png      one file per input and strength, e.g.
                                                      faces/a.jpg.s+0.5.png (the input's whole name, so
                                                      a.png and a.jpg never share an output)
    output/hspace_job.json                            the job's settings and their digest
    output/manifest.jsonl                             one row per output: input, its fingerprint (size,
                                                      mtime, SHA-256), output, strength, t_edit, seed,
                                                      checksum, what resizing did, status (done /
                                                      failed + reason)
    output/.hspace_job.lock                           held while a job runs (who holds it)
    output/.inversions/batch_<digest>.safetensors     the kept inversions (--keep-inversions)

Strength tags are exact: the shortest decimal that reads back as the same float (0.1 -> "+0.1",
0.1000001 -> "+0.1000001", 2.0 -> "+2"); two strengths that are the same number are refused.

An input is done when every one of its outputs is in the manifest with this job's digest, the file on
disk has the recorded checksum, and the input is the one recorded: the same size and modification time
(the fast path), else the same SHA-256. A rerun redoes exactly the inputs that are not done (new,
changed, or with an output lost), and names the outputs whose input is gone (``remove_orphans`` deletes
them). Each input's randomness (the edit-friendly inversion's draws, the quality-boosting noise) comes
from its own seed, derived from ``seed`` and its relative path (``input_seed``): its outputs do not
depend on which other inputs share its folder or its batch. The batch composition changes only float
rounding in batched kernels (measured on the demo model: at most one 8-bit level); the image-space
variants, whose shift is a batch mean, are refused here for that reason.

Outputs are written to a hidden temporary name and renamed (atomic), then recorded; a process that dies
leaves no partial output under a final name, and its temporary files are removed by the next run. An
unreadable input, one smaller than a quarter of the model's resolution on its shorter side
(``min_side``), or one the size policy refuses is recorded as failed with the reason and the job goes
on; an input that the size policy scales up is named in the report and its rows.

One job at a time per output folder: the first process takes ``.hspace_job.lock`` (process id, host,
start, command); another job is refused with the holder's name. A lock whose process is gone (same host)
is stale and taken over, said in the report.

Several processes (``torchrun``, ``distributed.context``): the first one plans (what is done, what
changed, orphans) and every process takes every N-th batch of the inputs to do (batches are formed
before they are shared, so one process or N give the same batches and the same files bit for bit);
each writes ``.manifest.rank<r>.jsonl``, and at the end the first merges them into ``manifest.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .distributed import Context, gather_objects, share
from .errors import HSpaceError

INPUT_SUFFIXES = (".png", ".jpg", ".jpeg")
JOB_FORMAT = "hspace-folder-job-2"
JOB_FILE, MANIFEST, INVERSIONS, LOCK = "hspace_job.json", "manifest.jsonl", ".inversions", ".hspace_job.lock"
IMAGE_SPACE_VARIANTS = ("eps_shift", "xt_shift")


@dataclass(frozen=True)
class FolderJob:
    """What a folder job does. ``directions``: (direction file, coefficient) pairs; ``steps`` None: the
    inversion's grid; ``method``: "ddim" or "ddpm" (edit-friendly); ``seed``: the job's seed, from which
    each input's own is derived (``input_seed``)."""

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
    units: str = "calibrated"

    def check(self) -> None:
        """The cheap checks, before any file is read or any step is taken."""
        if not self.strengths:
            raise HSpaceError("give at least one strength")
        bad = [s for s in self.strengths if s != s or s in (float("inf"), float("-inf"))]
        if bad:
            raise HSpaceError(f"strengths must be finite numbers, got {bad[0]}")
        seen: dict[float, float] = {}
        for s in self.strengths:
            if s in seen:
                raise HSpaceError(f"the strengths {seen[s]!r} and {s!r} are the same number (given twice); each "
                                  "strength writes one file")
            seen[s] = s
        if self.batch < 1:
            raise HSpaceError(f"batch must be at least 1, got {self.batch}")
        if self.inversion_steps < 2 or (self.steps is not None and self.steps < 2):
            raise HSpaceError("steps must be at least 2")
        if self.method not in ("ddim", "ddpm"):
            raise HSpaceError(f"unknown inversion method {self.method!r}; use ddim or ddpm")
        if not 0 <= self.t_edit <= 999:
            raise HSpaceError(f"t_edit must lie in [0, 999], got {self.t_edit}")
        if self.units not in ("calibrated", "raw"):
            raise HSpaceError(f"strength units must be calibrated or raw, got {self.units!r}")
        if self.seed < 0:
            raise HSpaceError(f"the seed must be at least 0, got {self.seed}")
        if self.variant in IMAGE_SPACE_VARIANTS:
            raise HSpaceError(f"the {self.variant} variant shifts every image by its batch's mean change, so an "
                              "image's output would depend on the other images in its batch; the folder job takes "
                              "the asymmetric or the symmetric variant")


@dataclass
class JobReport:
    """What a run did. ``written``: outputs written; ``skipped``: outputs already done; ``failed``: input ->
    reason; ``changed``: inputs redone because they differ from the recorded ones; ``orphans``: outputs
    whose input is gone (``removed`` when they were deleted); ``notes``: input -> what resizing did,
    for the inputs the size policy scaled up; ``stale_lock``: the holder of a stale lock taken over."""

    inputs: int = 0
    written: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    removed: bool = False
    notes: dict[str, str] = field(default_factory=dict)
    stale_lock: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------ names, seeds, fingerprints

def input_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the PNG / JPEG files under ``folder`` (recursively), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HSpaceError(f"{folder}: no such input folder")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES and not p.name.startswith("."))


def strength_tag(strength: float) -> str:
    """The exact tag of a strength: the shortest decimal that reads back as the same float, signed, without
    a trailing ".0" (2.0 -> "+2", 0.1 -> "+0.1", 0.1000001 -> "+0.1000001", -1e-07 -> "-1e-07")."""
    text = repr(float(strength))
    if text.endswith(".0"):
        text = text[:-2]
    return text if text.startswith("-") else "+" + text


def output_name(rel_input: str, strength: float) -> str:
    """The output path (relative) of one input at one strength: ``<input's relative path>.s<tag>.png``.
    Distinct inputs or distinct strengths never share a name (tags hold no letters but an exponent's e)."""
    return f"{rel_input}.s{strength_tag(strength)}.png"


def input_seed(seed: int, rel_input: str) -> int:
    """The seed of one input: from the job's ``seed`` and the input's relative path alone (63 bits of their
    SHA-256), so an input's randomness does not depend on the other inputs."""
    digest = hashlib.sha256(f"{int(seed)}\0{rel_input}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_fingerprint(path: Path) -> dict:
    """What identifies an input's content: size, modification time (ns) and SHA-256."""
    st = path.stat()
    return {"input_size": st.st_size, "input_mtime_ns": st.st_mtime_ns, "input_sha256": sha256(path)}


def same_input(path: Path, row: dict) -> bool:
    """Whether ``path`` holds the input ``row`` recorded: the same size and modification time (fast path),
    else the same SHA-256 (a copied or touched file with the same bytes is the same input)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if "input_sha256" not in row:
        return False
    if st.st_size == row.get("input_size") and st.st_mtime_ns == row.get("input_mtime_ns"):
        return True
    return st.st_size == row.get("input_size") and sha256(path) == row["input_sha256"]


def job_digest(job: FolderJob, fingerprint: str) -> tuple[dict, str]:
    """The settings that decide the outputs (the model by its fingerprint, directions by their bytes) as
    JSON values, and their digest."""
    settings = json.loads(json.dumps({**asdict(job), "model": fingerprint,
                                      "directions": [[sha256(Path(p)), c] for p, c in job.directions],
                                      "format": JOB_FORMAT}))
    return settings, hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def changed_settings(old: dict, new: dict) -> list[str]:
    """Each setting that differs, as ``name old -> new``."""
    keys = sorted(set(old) | set(new))
    return [f"{k} {_shown(old.get(k))} -> {_shown(new.get(k))}" for k in keys if old.get(k) != new.get(k)]


# ------------------------------------------------------------------ the folder's files

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


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux), "" elsewhere: with the pid it
    tells a live holder from a new process that reuses a dead one's pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(holder: dict) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = holder.get("start_ticks", "")
    return not start or _process_start(pid) in ("", start)


class FolderLock:
    """``.hspace_job.lock`` in the output folder, created atomically (O_EXCL). ``acquire`` refuses while
    another live job holds it (naming it), and takes over a stale one (its process is gone, on this host);
    returns who held a stale lock, or ""."""

    def __init__(self, out: Path, command: str = ""):
        self.path = Path(out) / LOCK
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _process_start(os.getpid()),
                   "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}
        self.held = False

    @staticmethod
    def describe(holder: dict) -> str:
        return (f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                + (f" ({holder['command']})" if holder.get("command") else ""))

    def acquire(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stale = ""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text())
                except (OSError, json.JSONDecodeError):
                    holder = {}
                if holder.get("host") == self.me["host"] and not _alive(holder):
                    stale = self.describe(holder)
                    self.path.unlink(missing_ok=True)  # the holder is gone: take the folder over
                    continue
                where = "" if holder.get("host") == self.me["host"] else " (another host: it cannot be checked here)"
                raise HSpaceError(f"{self.path.parent} is in use by another job: {self.describe(holder)}{where}; wait "
                                  f"for it to end, or, if it is gone, delete {self.path}") from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(self.me) + "\n")
            self.held = True
            return stale
        raise HSpaceError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        if self.held:
            try:
                if json.loads(self.path.read_text()).get("pid") == self.me["pid"]:
                    self.path.unlink()
            except (OSError, json.JSONDecodeError):
                pass
            self.held = False


def _claim_folder(out: Path, settings: dict, digest: str, restart: bool) -> None:
    """Write the job file, or refuse a folder made with other settings, naming each changed setting with
    its old and new value (``restart``: start over, removing the old job's outputs and manifests)."""
    f = out / JOB_FILE
    if f.exists():
        try:
            old = json.loads(f.read_text())
        except json.JSONDecodeError:
            raise HSpaceError(f"{f}: not a readable job file; remove it or choose another output folder") from None
        if old.get("digest") != digest:
            if not restart:
                changed = changed_settings(old.get("settings", {}), settings)
                if old.get("format") != JOB_FORMAT:
                    changed = [f"format {old.get('format')!r} -> {JOB_FORMAT!r} (another version of the pack)"]
                raise HSpaceError(f"{out} holds a job made with other settings (changed: {'; '.join(changed)}); "
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


@dataclass
class Plan:
    """The first process's reading of the folder, shared with every process."""

    todo: list[str]
    skipped_outputs: dict[str, int]
    changed: list[str]
    orphans: list[str]
    settled: list[str]


def plan_job(out: Path, input_dir: Path, inputs: list[str], job: FolderJob, digest: str,
             remove_orphans: bool) -> Plan:
    """What is left to do: an input is done when all its outputs are recorded for this job, on disk with
    their checksums, and the input is the recorded one (``same_input``); an input that failed with this
    job and is unchanged is settled (failing again is all a rerun would do). Outputs of inputs that are
    gone are orphans (deleted, with their rows, when ``remove_orphans``)."""
    entries = [e for e in _manifests(out) if e.get("digest") == digest]
    latest: dict[tuple, dict] = {}
    for e in entries:
        latest[(e.get("input"), e.get("strength"))] = e
    present = set(inputs)
    by_input: dict[str, list[dict]] = {}
    for (rel, _), e in latest.items():
        by_input.setdefault(rel, []).append(e)
    todo, skipped, changed, settled = [], {}, [], []
    for rel in inputs:
        rows = by_input.get(rel, [])
        path = input_dir / rel
        done = {e["strength"]: e for e in rows if e.get("status") == "done"}
        recorded = next(iter(done.values()), None) or next(iter(rows), None)
        if recorded is not None and not same_input(path, recorded):
            changed.append(rel)
            todo.append(rel)
            continue
        ok = [s for s in job.strengths if s in done and (out / done[s]["output"]).exists()
              and sha256(out / done[s]["output"]) == done[s]["checksum"]]
        if len(ok) == len(job.strengths):
            skipped[rel] = len(ok)
        elif any(e.get("status") == "failed" for e in rows) and not done:
            settled.append(rel)
        else:
            todo.append(rel)
    orphans = sorted(e["output"] for (rel, _), e in latest.items()
                     if rel not in present and e.get("status") == "done" and (out / e["output"]).exists())
    if remove_orphans:
        for name in orphans:
            (out / name).unlink(missing_ok=True)
    return Plan(todo, skipped, changed, orphans, settled)


# ------------------------------------------------------------------ the job

def min_side(model) -> int:
    """The smallest shorter side an input may have: a quarter of the model's resolution (a smaller image
    would be scaled up more than 4x, inventing what the edit would act on)."""
    return max(1, model.image_size // 4)


def _load_input(path: Path, model, job: FolderJob):
    """(image [1, 3, S, S], what resizing did, whether it scaled the image up) or HSpaceError with the
    reason."""
    from .images import load_image, prepare_images

    image = load_image(path)
    h, w = image.shape[-2:]
    if min(h, w) < min_side(model):
        raise HSpaceError(f"{w}x{h} is below the smallest input this model takes ({min_side(model)} px on the shorter "
                          f"side, a quarter of its {model.image_size} px)")
    x, what = prepare_images(image, model.image_size, job.size_policy)
    return x, what[0], h < model.image_size or w < model.image_size


def run_folder_job(job: FolderJob, input_dir: Path, output_dir: Path, *, ctx: Context = Context(),
                   keep_inversions: bool = False, restart: bool = False, remove_orphans: bool = False,
                   command: str = "", progress: Callable[[int, int], None] | None = None,
                   say: Callable[[str], None] | None = None) -> JobReport:
    """Run (or resume) ``job`` on the images under ``input_dir``, writing under ``output_dir``; this
    process does its share of the batches. ``progress(done, total)``: inputs done of this process's
    share, after each batch; ``say``: told once when a direction has no calibration (``job.units``). Returns this process's report; on the first process it also holds every
    process's failures (after the merge), the changed inputs, the orphans and the resize notes."""
    from .directions.io import load_direction
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
    direction = _in_units(directions, job.units, say)
    settings, digest = job_digest(job, model.fingerprint)
    lock = FolderLock(out, command)
    report = JobReport()
    try:
        shared = None
        if ctx.main:
            try:
                report.stale_lock = lock.acquire()
                _claim_folder(out, settings, digest, restart)
                shared = plan_job(out, input_dir, inputs, job, digest, remove_orphans)
            except HSpaceError as e:
                shared = str(e)
        shared = gather_objects(shared, ctx)[0]
        if isinstance(shared, str):
            raise HSpaceError(shared)
        plan: Plan = shared
        # batches are formed before they are shared: any number of processes computes the same batches
        batches = [plan.todo[i:i + job.batch] for i in range(0, len(plan.todo), job.batch)]
        mine = share(list(range(len(batches))), ctx.rank, ctx.world)
        report.inputs = sum(len(batches[k]) for k in mine)
        if ctx.main:
            report.inputs += len(plan.skipped_outputs) + len(plan.settled)
            report.skipped = sum(plan.skipped_outputs.values())
            report.changed, report.orphans, report.removed = plan.changed, plan.orphans, remove_orphans
        total, done_count = sum(len(batches[k]) for k in mine), 0
        rank_manifest = out / f".manifest.rank{ctx.rank}.jsonl"
        interval = EditInterval(job.t_edit, job.t_boost, "folder job")
        for k in mine:
            rows = _do_batch(model, direction, job, interval, batches[k], input_dir, out, digest, keep_inversions)
            with rank_manifest.open("a") as f:
                for e in rows:
                    f.write(json.dumps(e) + "\n")
                f.flush()
                os.fsync(f.fileno())
            report.written += sum(e["status"] == "done" for e in rows)
            report.failed.update({e["input"]: e["reason"] for e in rows if e["status"] == "failed"})
            report.notes.update({e["input"]: e["resized"] for e in rows if e.get("upscaled")})
            done_count += len(batches[k])
            if progress is not None:
                progress(done_count, total)
        ctx.barrier()
        if ctx.main:
            report.failed, report.notes = _merge(out, digest, inputs, keep_orphans=not remove_orphans)
    finally:
        lock.release()
    report.seconds = time.time() - tic
    return report


def _in_units(directions, units: str, say):
    """The job's directions as one, with strengths and coefficients counted in ``units``."""
    from .directions.base import mix, mix_calibrated
    from .directions.calibration import in_units

    if len(directions) == 1 and directions[0][1] == 1.0:
        return in_units(directions[0][0], units, say)
    if units == "raw":
        return mix(directions)
    return in_units(mix_calibrated(directions, say=say), units, say)


def _do_batch(model, direction, job: FolderJob, interval, names: list[str], input_dir: Path, out: Path,
              digest: str, keep_inversions: bool) -> list[dict]:
    """Invert and edit one batch of inputs, write their outputs; the manifest rows."""
    from .images import to_pil

    good, kept, rows = [], [], []
    for rel in names:
        path = input_dir / rel
        try:
            fingerprint = input_fingerprint(path)
        except OSError as e:
            rows.append({"input": rel, "status": "failed", "reason": f"cannot be read ({e.strerror})",
                         "digest": digest})
            continue
        try:
            x, what, upscaled = _load_input(path, model, job)
        except HSpaceError as e:
            rows.append({"input": rel, "status": "failed", "reason": str(e), "digest": digest, **fingerprint})
            continue
        good.append(x)
        kept.append((rel, fingerprint, what, upscaled))
    if not good:
        return rows
    names_ok = [rel for rel, *_ in kept]
    seeds = tuple(input_seed(job.seed, rel) for rel in names_ok)
    try:
        inv = _inversion(model, torch.cat(good), job, names_ok, [f["input_sha256"] for _, f, _, _ in kept], seeds,
                         out if keep_inversions else None)
        result = _edit_batch(model, inv, direction, job, interval, seeds)
    except HSpaceError as e:  # e.g. an edit that diverges: these inputs fail, the job goes on
        return rows + [{"input": rel, "status": "failed", "reason": str(e), "digest": digest, **f}
                       for rel, f, _, _ in kept]
    for i, (rel, fingerprint, what, upscaled) in enumerate(kept):
        for j, s in enumerate(job.strengths):
            name = output_name(rel, s)
            _atomic_write(out / name, lambda p, im=result[i, j]: to_pil(im).save(p, format="PNG"))
            rows.append({"input": rel, "output": name, "strength": s, "t_edit": job.t_edit, "seed": seeds[i],
                         "checksum": sha256(out / name), "resized": what, "upscaled": upscaled, "status": "done",
                         "digest": digest, **fingerprint})
    return rows


def _inversion(model, x0: torch.Tensor, job: FolderJob, names: list[str], checksums: list[str], seeds: tuple,
               keep: Path | None):
    """The batch's inversion: read back from ``keep``'s .inversions when it is there for the same inputs
    and settings, else computed (and written there)."""
    from .inversion import invert, invert_ddpm, load_inversion, save_inversion

    path = None
    if keep is not None:
        key = hashlib.sha256(json.dumps([names, checksums, job.method, job.inversion_steps, list(seeds),
                                         job.size_policy, model.fingerprint]).encode()).hexdigest()[:16]
        path = keep / INVERSIONS / f"batch_{key}.safetensors"
        if path.exists():
            try:
                return load_inversion(path)
            except HSpaceError:
                path.unlink()  # damaged: computed again
    with torch.inference_mode():
        if job.method == "ddpm":
            inv = invert_ddpm(model, x0, steps=job.inversion_steps, seed=seeds)
        else:
            inv = invert(model, x0, steps=job.inversion_steps)
    if path is not None:
        save_inversion(inv, path, overwrite=True)
    return inv


def _edit_batch(model, inv, direction, job: FolderJob, interval, seeds: tuple) -> torch.Tensor:
    """Images [N, K, 3, S, S] of one batch at every strength (one sweep)."""
    from .editing import edit

    return edit(model, inv, direction, list(job.strengths), t_edit=interval, steps=job.steps, eta=job.eta,
                seed=seeds, variant=job.variant).images


def _merge(out: Path, digest: str, inputs: list[str], keep_orphans: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The first process, after every process finished: one manifest, the latest row per (input, strength)
    of this job, in input order (rows of inputs that are gone stay while their outputs do, unless removed);
    returns the failures and the resize notes (upscaled inputs)."""
    latest: dict[tuple, dict] = {}
    for e in _manifests(out):
        if e.get("digest") == digest:
            latest[(e["input"], e.get("strength"))] = e
    present = set(inputs)
    order = {rel: i for i, rel in enumerate(inputs)}
    done_inputs = {rel for (rel, s), e in latest.items() if e["status"] == "done"}
    rows = []
    for key, e in latest.items():
        if e["status"] == "failed" and key[0] in done_inputs:
            continue
        if key[0] not in present and not (keep_orphans and e.get("output") and (out / e["output"]).exists()):
            continue
        rows.append(e)
    rows.sort(key=lambda e: (order.get(e["input"], len(order)), e["input"], e.get("strength") or 0.0))
    _atomic_write(out / MANIFEST, lambda p: p.write_text("".join(json.dumps(e) + "\n" for e in rows)))
    for p in out.glob(".manifest.rank*.jsonl"):
        p.unlink()
    failed = {e["input"]: e["reason"] for e in rows if e["status"] == "failed" and e["input"] in present}
    notes = {e["input"]: e["resized"] for e in rows if e.get("upscaled") and e["input"] in present}
    return failed, notes
