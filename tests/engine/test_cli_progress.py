"""The command line's progress: a tqdm bar on a terminal, plain lines (a tenth of the job each, and its
end) when stderr is a file or a pipe."""

import io

from hspace_core.cli.common import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_a_line_per_tenth_and_no_carriage_returns():
    log = io.StringIO()
    bar = Progress("invert", stream=log)
    for i in range(1, 41):
        bar.update(i, 40, f"t={i}")
    lines = log.getvalue().splitlines()
    assert lines == [f"invert: {i}/40 steps (t={i})" for i in [1, *range(4, 41, 4)]]  # its start, each tenth
    assert "\r" not in log.getvalue()


def test_a_terminal_gets_a_tqdm_bar_and_a_new_job_starts_a_new_bar():
    term = Terminal()
    bar = Progress("edit", unit="image", stream=term)
    for i in range(1, 6):
        bar.update(i, 5)
    bar.update(1, 3)
    bar.close()
    out = term.getvalue()
    assert "\r" in out and "edit: 100%" in out and "5/5" in out and "1/3" in out
