"""Writing and reading the JSON every benchmark leaves behind."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

SCHEMA = "exastor-bench/1"


def utc_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_result(path: str | os.PathLike[str], result: dict[str, Any]) -> Path:
    """Write ``result`` atomically (temp file + rename) so a crash never leaves half a JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"schema": SCHEMA, **result}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not an {SCHEMA} result")
    return data


def save_figure(fig: Any, path: str | Path) -> None:
    """Lay out ``fig``, write it as a PNG at ``path`` (its folder made if missing) and say where."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")
