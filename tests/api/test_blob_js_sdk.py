"""The JavaScript SDK (@azure/storage-blob on Node) against the real server: every scenario of
bench/js/blob_sdk_scenarios.cjs. Needs node and the SDK under bench/.peers/node (installed by
`python bench/blob_js_sdk.py`, which also records the results); skipped where they are absent."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "bench/.peers/node/node_modules"


@pytest.mark.skipif(shutil.which("node") is None or not (MODULES / "@azure/storage-blob/package.json").exists(),
                    reason="node or @azure/storage-blob missing (python bench/blob_js_sdk.py installs it)")
def test_js_sdk_scenarios(exastor_server):
    out = subprocess.run(["node", str(REPO / "bench/js/blob_sdk_scenarios.cjs"), exastor_server.connection_string],
                         env={"NODE_PATH": str(MODULES), "PATH": "/usr/bin:/bin:/usr/local/bin"},
                         capture_output=True, text=True, timeout=300)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) >= 15, out.stderr[-2000:]
    failed = [(r["name"], r.get("error")) for r in rows if r["outcome"] != "passed"]
    assert not failed, failed
