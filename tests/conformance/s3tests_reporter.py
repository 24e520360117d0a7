"""pytest plugin loaded into the s3-tests run (``-p s3tests_reporter``).

It appends one JSON line per test phase to ``$S3TESTS_REPORT`` as soon as
the phase ends, so a run that is cut off by the time limit still leaves every
result it got, with exact node ids and the crash message (which
``run_s3tests.py`` groups into failure causes). Kept dependency-free: it runs
inside the separate s3-tests venv, not the project's.
"""

from __future__ import annotations

import json
import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the test's markers on its report (the upstream driver groups results by them)."""
    outcome = yield
    outcome.get_result().s3tests_markers = sorted({m.name for m in item.iter_markers()
                                                    if m.name not in ("parametrize", "timeout")})


def _crash_message(report) -> str:
    longrepr = report.longrepr
    if longrepr is None:
        return ""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skips: (file, line, reason)
        return str(longrepr[2])
    return str(longrepr).strip().splitlines()[-1] if str(longrepr).strip() else ""


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get("S3TESTS_REPORT")
    if not path:
        return
    outcome = report.outcome
    if hasattr(report, "wasxfail"):  # the suite marks known failures xfail: keep them apart from skips
        outcome = "xfailed" if report.skipped else "xpassed"
    line = {
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": outcome,
        "duration": round(report.duration, 3),
        "message": _crash_message(report)[:2000] if report.outcome != "passed" else "",
    }
    if report.when == "setup":
        line["markers"] = getattr(report, "s3tests_markers", [])
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
