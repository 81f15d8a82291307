"""What the benches share for their reports."""

from __future__ import annotations

import json
from pathlib import Path


def merge_json(path: str | Path, report: dict) -> None:
    """Write ``report`` into the JSON file at ``path``, keeping the keys this run did not produce (a rerun of
    one part keeps the other parts' rows)."""
    path = Path(path)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(report)
    path.write_text(json.dumps(merged, indent=2) + "\n")
