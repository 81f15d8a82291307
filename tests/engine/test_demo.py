"""The main job, ``python -m hspace_core demo``, as a user runs it: progress on stderr, results on
stdout, and every row of its strip a visible edit of the attribute it names (the probe's reading
moves by at least 0.3 between the extreme strengths), with the shipped directions."""

import json

from PIL import Image

from hspace_core.demo.demo import demo_row
from tests.engine.test_editing import _cli

ROWS = ("demo_width", "text_glasses")  # one supervised, one text-trained: the full default runs in the README


def test_the_demo_shows_visible_edits_and_reports_progress(tmp_path):
    out, report = tmp_path / "strip.png", tmp_path / "report.json"
    args = [a for r in ROWS for a in ("--row", r)]
    r = _cli("demo", *args, "--out", str(out), "--report", str(report))
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stderr.splitlines() if line.startswith("[demo]")]
    assert len(progress) == 1 + len(ROWS) and "[demo]" not in r.stdout
    readings = json.loads(report.read_text())["readings"]
    assert [x["direction"] for x in readings] == [d for d in ROWS for _ in range(2)]
    for x in readings:
        assert abs(x["change"]) >= 0.3, x
    columns = 2 + len(demo_row(ROWS[0]).strengths)
    assert Image.open(out).size == (4 * (columns * 32 + (columns + 1) * 2), 4 * (4 * 32 + 5 * 2))
