"""The folder job (``python -m hspace_core edit-folder``) on the embedded demo model, through the real
command line in subprocesses: one process, and two processes started by torchrun with the gloo backend on
the CPU (the way a user spreads it over GPUs or machines). Nothing is lost: every input gets its own
outputs, changed inputs are redone, outputs of deleted inputs are named, strengths are named exactly,
changed settings are named, one job per folder (a lock, stale locks taken over), an input's output does
not depend on its folder or batch, tiny inputs are refused and upscaled ones named; the same files bit for
bit under two processes, resumable after a killed process or Ctrl-C, one clear line per process."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hspace_core import HSpaceError
from hspace_core.demo.demo import demo_model_path
from hspace_core.demo.faces import render_face, sample_faces
from hspace_core.folder_job import LOCK, MANIFEST, FolderJob, output_name, run_folder_job, sha256, strength_tag

ROOT = Path(__file__).resolve().parents[2]
WIDTH = ROOT / "hspace_core" / "data" / "directions" / "demo_width.safetensors"
STRENGTHS = ("-2", "2")


def make_inputs(folder: Path, n: int, seed: int = 3) -> list[str]:
    """n procedural faces at 32 px, every other one in a subfolder; a.png and a.jpg (the same stem, other
    faces); a broken file; a 1x1 image; a 20x20 face (upscaled). Returns the good inputs."""
    names = []
    for i, f in enumerate(sample_faces(n, seed)):
        rel = f"sub/face{i:02d}.png" if i % 2 else f"face{i:02d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        render_face(f, 32).save(folder / rel)
        names.append(rel)
    a, b, small = sample_faces(3, seed + 100)
    render_face(a, 32).save(folder / "a.png")
    render_face(b, 32).convert("RGB").save(folder / "a.jpg", quality=95)
    render_face(small, 20).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"not a png")
    Image.new("RGB", (1, 1), "red").save(folder / "tiny.png")
    return names + ["a.png", "a.jpg", "small.png"]


def cli_args(inp: Path, out: Path, *extra: str, strengths=STRENGTHS) -> list[str]:
    args = ["edit-folder", "--model", str(demo_model_path()), "--input", str(inp), "--output", str(out),
            "--direction", str(WIDTH), "--inversion-steps", "8", "--batch", "2", "--t-edit", "435"]
    for s in strengths:
        args += ["--strength", s]
    return args + list(extra)


def env(**extra) -> dict:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def cli(args: list[str], **env_extra) -> subprocess.CompletedProcess:
    """The command line in a subprocess: (returncode, stderr)."""
    return subprocess.run([sys.executable, "-m", "hspace_core", *args], cwd=ROOT, env=env(**env_extra),
                          capture_output=True, text=True, timeout=600)


def torchrun(args: list[str], nproc: int = 2, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                             "-m", "hspace_core", *args], cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (torchrun's workers), from /proc."""
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == pid:
            out.append(int(status.parent.name))
    return out


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate() and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be stopped"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    return folder, make_inputs(folder, 6)


@pytest.fixture(scope="module")
def one_process(inputs, tmp_path_factory):
    """The reference: the whole job in one process (the command line)."""
    out = tmp_path_factory.mktemp("one") / "out"
    return out, cli(cli_args(inputs[0], out))


def test_one_process_gives_every_input_its_own_outputs_and_records_them(inputs, one_process):
    folder, names = inputs
    out, run = one_process
    assert run.returncode == 102, run.stderr  # 100 + two failed inputs (broken.png, tiny.png)
    written = files(out)
    assert sorted(written) == sorted(output_name(n, float(s)) for n in names for s in STRENGTHS)
    assert written["a.png.s+2.png"] != written["a.jpg.s+2.png"]  # same stem, two faces, two outputs
    rows = manifest(out)
    done = [r for r in rows if r["status"] == "done"]
    assert len({(r["input"], r["strength"]) for r in done}) == len(done) == len(names) * len(STRENGTHS)
    for r in done:
        assert sha256(out / r["output"]) == r["checksum"] and r["t_edit"] == 435
        assert r["input_sha256"] == sha256(folder / r["input"]) and r["input_size"] == (folder / r["input"]).stat().st_size
    failed = {r["input"]: r["reason"] for r in rows if r["status"] == "failed"}
    assert sorted(failed) == ["broken.png", "tiny.png"]
    assert "not a readable image" in failed["broken.png"] and "below the smallest input" in failed["tiny.png"]
    assert "upscaled: small.png: 20x20 resized" in run.stderr
    assert [r["input"] for r in done if r["upscaled"]] == ["small.png"] * len(STRENGTHS)
    assert not list(out.glob(".manifest.rank*")) and not list(out.rglob(".*.tmp")) and not (out / LOCK).exists()
    last = run.stderr.strip().splitlines()[-1]
    assert "2 failed" in last and "exit status 102" in last and "with 1 thread(s)" in last  # OMP_NUM_THREADS=1
    # the width edit: +2 wider than -2 on every face (the probe reads it)
    from hspace_core.demo.probe import load_probe
    from hspace_core.images import load_image

    probe = load_probe()
    w = {s: probe.read(torch.cat([load_image(out / output_name(n, float(s))) for n in names]))["face_width"]
         for s in STRENGTHS}
    assert bool((w["2"] > w["-2"]).all())


def test_a_rerun_redoes_changed_inputs_names_orphans_and_leaves_the_rest(inputs, one_process, tmp_path):
    folder, names = inputs
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(folder, src)
    shutil.copytree(one_process[0], out)
    before = files(out)
    stamps = {p: (out / p).stat().st_mtime_ns for p in before}
    shutil.copy(src / "sub" / "face01.png", src / "face02.png")  # replaced by another face
    (src / "face04.png").unlink()  # deleted
    render_face(sample_faces(1, 77)[0], 32).save(src / "new.png")  # added
    run = cli(cli_args(src, out))
    assert run.returncode == 102, run.stderr
    assert "changed since the last run, redone: face02.png" in run.stderr
    assert f"orphan: {output_name('face04.png', 2.0)} (its input is gone; --remove-orphans deletes it)" in run.stderr
    after = files(out)
    assert after[output_name("face02.png", 2.0)] == before[output_name("sub/face01.png", 2.0)]
    assert output_name("new.png", 2.0) in after and output_name("face04.png", 2.0) in after
    untouched = [p for p in before if not p.startswith(("face02", "face04"))]
    assert all(after[p] == before[p] and (out / p).stat().st_mtime_ns == stamps[p] for p in untouched)
    assert "4 outputs written" in run.stderr.splitlines()[-1]  # face02 and new.png, nothing else
    run = cli(cli_args(src, out, "--remove-orphans"))
    assert f"removed: {output_name('face04.png', 2.0)}" in run.stderr and "0 outputs written" in run.stderr
    assert not (out / output_name("face04.png", 2.0)).exists()
    assert "face04.png" not in {r["input"] for r in manifest(out)}
    run = cli(cli_args(src, out))
    assert ", 0 outputs written" in run.stderr and "orphan:" not in run.stderr and "changed since" not in run.stderr


def test_strengths_that_print_alike_are_named_exactly_and_the_same_number_is_refused(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    render_face(sample_faces(1, 5)[0], 32).save(src / "f.png")
    run = cli(cli_args(src, tmp_path / "out", "--threads", "2", strengths=("0.1", "0.1000001")))
    assert run.returncode == 0, run.stderr
    assert sorted(files(tmp_path / "out")) == ["f.png.s+0.1.png", "f.png.s+0.1000001.png"]
    assert "with 2 thread(s)" in run.stderr
    run = cli(cli_args(src, tmp_path / "other", strengths=("0", "-0")))
    assert run.returncode == 2 and "are the same number" in run.stderr and not (tmp_path / "other").exists()
    assert [strength_tag(s) for s in (2.0, -0.5, 1e-7, 0.1 + 0.2)] == ["+2", "-0.5", "+1e-07", "+0.30000000000000004"]


def test_changed_settings_are_named_with_their_old_and_new_values(inputs, one_process, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(one_process[0], out)
    before = files(out)
    run = cli(cli_args(inputs[0], out, "--t-edit", "400", "--seed", "3"))
    assert run.returncode == 2
    assert "changed: seed 0 -> 3; t_edit 435 -> 400); use another output folder, or --restart" in run.stderr
    assert "strengths [" not in run.stderr and files(out) == before


def test_an_inputs_output_does_not_depend_on_its_folder_or_batch(inputs, tmp_path):
    """Edit-friendly inversion and quality boosting (both random): face02 edited in a folder of three, in
    one batch, and alone. Its seed is its own; the batch changes only float rounding (one 8-bit level)."""
    folder, _ = inputs
    for name, members in (("three", ["face00.png", "face02.png", "a.png"]), ("alone", ["face02.png"])):
        (tmp_path / name).mkdir()
        for m in members:
            shutil.copy(folder / m, tmp_path / name / m)
        run = cli(cli_args(tmp_path / name, tmp_path / f"out_{name}", "--inversion-method", "ddpm", "--t-boost", "300",
                           "--batch", "3", strengths=("2",)))
        assert run.returncode == 0, run.stderr
    a, b = (np.asarray(Image.open(tmp_path / f"out_{n}" / "face02.png.s+2.png"), dtype=int) for n in ("three", "alone"))
    assert np.abs(a - b).max() <= 1
    other_seed = tmp_path / "other_seed"
    cli(cli_args(tmp_path / "alone", other_seed, "--inversion-method", "ddpm", "--t-boost", "300", "--seed", "1",
                 strengths=("2",)))
    c = np.asarray(Image.open(other_seed / "face02.png.s+2.png"), dtype=int)
    assert np.abs(c - b).max() >= 4  # the seed does matter (8 levels here): a batch-seeded draw would show


def test_cheap_arguments_are_checked_before_any_work(inputs, tmp_path, capsys):
    from hspace_core.cli import main

    out = tmp_path / "out"
    for extra, message in ((["--batch", "0"], "batch must be at least 1"),
                           (["--inversion-steps", "1"], "steps must be at least 2"),
                           (["--threads", "0"], "--threads must be at least 1"),
                           (["--seed", "-1"], "the seed must be at least 0")):
        assert main(cli_args(inputs[0], out, *extra)) == 2
        err = capsys.readouterr().err
        assert message in err and not out.exists(), err
    assert main(cli_args(inputs[0], inputs[0] / "sub")) == 2
    assert "must not be the input folder or inside it" in capsys.readouterr().err


def test_a_wrong_size_input_is_recorded_as_failed(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, f in enumerate(sample_faces(2, 3)):
        render_face(f, 32).save(folder / f"f{i}.png")
    Image.new("RGB", (48, 40), "red").save(folder / "wide.png")
    job = FolderJob(model=str(demo_model_path()), directions=((str(WIDTH), 1.0),), strengths=(2.0,), t_edit=435,
                    inversion_steps=8, batch=4, size_policy="error")
    report = run_folder_job(job, folder, tmp_path / "out")
    assert sorted(report.failed) == ["wide.png"] and "48x40" in report.failed["wide.png"]
    assert report.written == 2
    again = run_folder_job(job, folder, tmp_path / "out")
    assert again.written == 0 and again.skipped == 2  # unchanged failures are not retried
    with pytest.raises(HSpaceError, match="batch's mean change"):
        run_folder_job(FolderJob(**{**job.__dict__, "variant": "xt_shift"}), folder, tmp_path / "out2")


def test_two_torchrun_processes_give_the_one_process_files_and_end_with_one_line_each(inputs, one_process, tmp_path):
    out = tmp_path / "out"
    proc = torchrun(cli_args(inputs[0], out))
    log, _ = proc.communicate(timeout=600)
    # failed inputs are reported, but a job that ran to its end exits 0 under torchrun (no crash report)
    assert proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log and "ChildFailedError" not in log
    ends = [line for line in log.splitlines() if "exit status 0" in line]
    assert sorted(line.split(":")[0] for line in ends) == ["rank 0/2", "rank 1/2"]
    assert "failed: tiny.png" in log and "2 failed" in ends[[e.startswith("rank 0") for e in ends].index(True)]
    assert files(out) == files(one_process[0])
    rows = manifest(out)
    keys = [(r["input"], r.get("strength")) for r in rows]
    assert len(keys) == len(set(keys))  # each input and strength exactly once
    assert sorted(keys, key=str) == sorted(((r["input"], r.get("strength")) for r in manifest(one_process[0])), key=str)
    assert not list(out.glob(".manifest.rank*")) and not (out / LOCK).exists()


def test_a_second_job_is_refused_while_a_live_process_holds_the_folder(inputs, tmp_path):
    """The lock of a live process on this host (this test's own process stands in for a running job)."""
    import socket

    from hspace_core.folder_job import FolderLock

    out = tmp_path / "out"
    out.mkdir()
    FolderLock(out, command="edit-folder (the first job)").acquire()
    run = cli(cli_args(inputs[0], out))
    assert run.returncode == 2, run.stderr
    assert f"is in use by another job: process {os.getpid()} on {socket.gethostname()}" in run.stderr
    assert "(edit-folder (the first job))" in run.stderr and not files(out)


def test_a_killed_process_leaves_no_partial_file_and_the_rerun_takes_over_its_lock_and_completes(tmp_path):
    folder = tmp_path / "in"
    names = make_inputs(folder, 8, seed=5)
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = cli_args(folder, out, "--batch", "1")
    proc = torchrun(args)
    wait_for(lambda: len(list(out.rglob("*.png"))) >= 4, proc)
    workers = children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # one rank dies; torchrun then stops the other
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    half = files(out)
    assert 0 < len(half) < len(names) * len(STRENGTHS)
    for rel in half:  # every file under a final name is a whole PNG
        with Image.open(out / rel) as im:
            im.load()
    rerun = torchrun(args)
    log, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, log[-3000:]
    assert "took over a stale lock of process" in log
    cli(cli_args(folder, ref, "--batch", "1"))
    assert files(out) == files(ref)
    assert not list(out.rglob(".*.tmp")) and not list(out.glob(".manifest.rank*")) and not (out / LOCK).exists()
    done = [r for r in manifest(out) if r["status"] == "done"]
    assert len(done) == len({(r["input"], r["strength"]) for r in done}) == len(names) * len(STRENGTHS)


def test_ctrl_c_under_torchrun_ends_each_rank_with_one_line_and_a_rerun_resumes(tmp_path):
    folder = tmp_path / "in"
    make_inputs(folder, 10, seed=6)
    out = tmp_path / "out"
    args = cli_args(folder, out, "--batch", "1")
    proc = torchrun(args, start_new_session=True)
    wait_for(lambda: len(list(out.rglob("*.png"))) >= 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does: the whole process group
    log, _ = proc.communicate(timeout=300)
    lines = [line for line in log.splitlines() if "interrupted; rerun the same command to resume" in line]
    assert sorted(line.split(":")[0] for line in lines) == ["rank 0/2", "rank 1/2"], log[-3000:]
    assert "KeyboardInterrupt" not in log
    rerun = cli(args)
    assert rerun.returncode == 102 and "already done" in rerun.stderr and not (out / LOCK).exists()
