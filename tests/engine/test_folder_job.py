"""The folder job (``python -m hspace_core edit-folder``) on the embedded demo model: one process, and two
processes started by torchrun with the gloo backend on the CPU (the way a user spreads it over GPUs or
machines): the same files bit for bit, each input done once, resumable after a killed process,
refusals, broken inputs recorded."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hspace_core import HSpaceError
from hspace_core.demo.demo import demo_model_path
from hspace_core.demo.faces import render_face, sample_faces
from hspace_core.folder_job import MANIFEST, FolderJob, output_name, run_folder_job, sha256

ROOT = Path(__file__).resolve().parents[2]
WIDTH = ROOT / "hspace_core" / "data" / "directions" / "demo_width.safetensors"
STRENGTHS = ("-2", "2")


def make_inputs(folder: Path, n: int, seed: int = 3) -> list[str]:
    """n procedural faces at 32 px, every other one in a subfolder, plus a broken file."""
    names = []
    for i, f in enumerate(sample_faces(n, seed)):
        rel = f"sub/face{i:02d}.png" if i % 2 else f"face{i:02d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        render_face(f, 32).save(folder / rel)
        names.append(rel)
    (folder / "broken.png").write_bytes(b"not a png")
    return names


def cli_args(inp: Path, out: Path, *extra: str) -> list[str]:
    args = ["edit-folder", "--model", str(demo_model_path()), "--input", str(inp), "--output", str(out),
            "--direction", str(WIDTH), "--inversion-steps", "8", "--batch", "2", "--t-edit", "435",
            "--threads", "1"]
    for s in STRENGTHS:
        args += ["--strength", s]
    return args + list(extra)


def torchrun(args: list[str], nproc: int = 2, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                             "-m", "hspace_core", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
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


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    return folder, make_inputs(folder, 9)


@pytest.fixture(scope="module")
def one_process(inputs, tmp_path_factory):
    """The reference: the whole job in this process."""
    from hspace_core.cli import main

    out = tmp_path_factory.mktemp("one") / "out"
    code = main(cli_args(inputs[0], out))
    return out, code


def test_one_process_writes_every_input_at_every_strength_and_records_it(inputs, one_process):
    folder, names = inputs
    out, code = one_process
    assert code == 101  # 100 + one failed input
    written = files(out)
    assert sorted(written) == sorted(output_name(n, float(s)) for n in names for s in STRENGTHS)
    rows = manifest(out)
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == len(names) * len(STRENGTHS)
    assert all(sha256(out / r["output"]) == r["checksum"] and r["t_edit"] == 435 for r in done)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["input"] for r in failed] == ["broken.png"] and "not a readable image" in failed[0]["reason"]
    assert not list(out.glob(".manifest.rank*")) and not list(out.rglob(".*.tmp"))
    # the width edit: +2 wider than -2 on every face (the probe reads it)
    from hspace_core.demo.probe import load_probe
    from hspace_core.images import load_image

    probe = load_probe()
    w = {s: probe.read(torch.cat([load_image(out / output_name(n, float(s))) for n in names]))["face_width"]
         for s in STRENGTHS}
    assert bool((w["2"] > w["-2"]).all())


def test_a_rerun_skips_what_is_done_and_other_settings_are_refused(inputs, one_process, tmp_path):
    import shutil

    from hspace_core.folder_job import input_files

    folder, names = inputs
    out = tmp_path / "out"
    shutil.copytree(one_process[0], out)
    before = files(out)
    (out / output_name(names[2], 2.0)).unlink()  # one output lost: its batch is redone
    job = FolderJob(model=str(demo_model_path()), directions=((str(WIDTH), 1.0),), strengths=(-2.0, 2.0), t_edit=435,
                    inversion_steps=8, batch=2)
    report = run_folder_job(job, folder, out, progress=open(os.devnull, "w"))
    assert report.written == 2 * len(STRENGTHS)  # the two inputs of that batch, whole
    assert files(out) == before
    assert len(input_files(folder)) == len(names) + 1
    other = FolderJob(**{**job.__dict__, "strengths": (-1.0, 1.0)})
    with pytest.raises(HSpaceError, match=r"other settings \(changed: strengths\).*--restart"):
        run_folder_job(other, folder, out, progress=open(os.devnull, "w"))
    assert files(out) == before  # nothing lost
    run_folder_job(other, folder, out, restart=True, progress=open(os.devnull, "w"))
    assert sorted(files(out)) == sorted(output_name(n, s) for n in names for s in (-1.0, 1.0))


def test_cheap_arguments_are_checked_before_any_work(inputs, tmp_path, capsys):
    from hspace_core.cli import main

    out = tmp_path / "out"
    assert main(cli_args(inputs[0], out, "--batch", "0")) == 2
    assert "batch must be at least 1" in capsys.readouterr().err and not out.exists()
    assert main(cli_args(inputs[0], out, "--inversion-steps", "1")) == 2 and not out.exists()
    assert main(cli_args(inputs[0], inputs[0] / "sub")) == 2  # inside the input folder


def test_a_wrong_size_input_is_recorded_as_failed(tmp_path):
    from PIL import Image

    folder = tmp_path / "in"
    make_inputs(folder, 2)
    Image.new("RGB", (48, 40), "red").save(folder / "wide.png")
    job = FolderJob(model=str(demo_model_path()), directions=((str(WIDTH), 1.0),), strengths=(2.0,), t_edit=435,
                    inversion_steps=8, batch=4, size_policy="error")
    report = run_folder_job(job, folder, tmp_path / "out", progress=open(os.devnull, "w"))
    assert sorted(report.failed) == ["broken.png", "wide.png"] and "48x40" in report.failed["wide.png"]
    assert report.written == 2
    again = run_folder_job(job, folder, tmp_path / "out", progress=open(os.devnull, "w"))
    assert again.written == 0 and again.skipped == 2  # unchanged failures are not retried


def test_two_torchrun_processes_give_the_one_process_files_bit_for_bit(inputs, one_process, tmp_path):
    out = tmp_path / "out"
    proc = torchrun(cli_args(inputs[0], out))
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "rank 0/2" in log and "rank 1/2" in log, log[-3000:]
    assert files(out) == files(one_process[0])
    rows = manifest(out)
    keys = [(r["input"], r.get("strength")) for r in rows]
    assert len(keys) == len(set(keys))  # each input and strength exactly once
    assert sorted(keys, key=str) == sorted(((r["input"], r.get("strength")) for r in manifest(one_process[0])), key=str)
    assert not list(out.glob(".manifest.rank*"))


def test_a_killed_process_leaves_no_partial_file_and_the_rerun_completes_the_job(tmp_path):
    folder = tmp_path / "in"
    names = make_inputs(folder, 16, seed=5)
    out, ref = tmp_path / "out", tmp_path / "ref"
    args = cli_args(folder, out, "--batch", "1")
    proc = torchrun(args)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.rglob("*.png"))) < 4 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    workers = children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(max(workers), signal.SIGKILL)  # one rank dies; torchrun then stops the other
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    half = files(out)
    assert 0 < len(half) < len(names) * len(STRENGTHS)
    from PIL import Image

    for rel in half:  # every file under a final name is a whole PNG
        with Image.open(out / rel) as im:
            im.load()
    rerun = torchrun(args)
    rerun.communicate(timeout=600)
    from hspace_core.cli import main

    main(cli_args(folder, ref, "--batch", "1"))
    assert files(out) == files(ref)
    assert not list(out.rglob(".*.tmp")) and not list(out.glob(".manifest.rank*"))
    done = [r for r in manifest(out) if r["status"] == "done"]
    assert len(done) == len({(r["input"], r["strength"]) for r in done}) == len(names) * len(STRENGTHS)
