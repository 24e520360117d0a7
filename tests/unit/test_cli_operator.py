"""The command line as an operator meets it: every bad input gets a clear message and a non-zero exit,
never a traceback (issue 15, item 8)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_plan_model import EXAMPLE

from exastor.cli import COMMANDS, main
from exastor.datadir.opening import open_metadata
from exastor.tools.plan.procure import ratio_fix

# Commands with actions: every action is tried too.
ACTIONS = {"user": ["add", "list", "remove"], "drive": ["status", "add", "remove", "replace"],
           "quota": ["set", "clear", "show"], "qos": ["set", "clear", "show"], "reduce": ["run", "pause", "resume", "status"]}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help and usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def _store(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    open_metadata(data).close()
    return data


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help_and_a_bad_argument_without_a_traceback(command, capsys):
    lines = [[command]] + [[command, action] for action in ACTIONS.get(command, [])]
    for line in lines:
        code, out, err = _run([*line, "--help"], capsys)
        assert code == 0 and "usage: exastor" in out, (line, out, err)
        code, out, err = _run([*line, "--no-such-option"], capsys)
        assert code == 2 and "unrecognized arguments" in err or "error:" in err, (line, err)
        assert "Traceback" not in out + err


def test_data_is_accepted_before_and_after_the_action(tmp_path, capsys):
    data = str(_store(tmp_path))
    assert _run(["user", "--data", data, "add", "carol"], capsys)[0] == 0
    for argv in (["user", "list", "--data", data], ["user", "--data", data, "list"],
                 ["--data", data, "user", "list"], [f"--data={data}", "user", "list"]):
        code, out, err = _run(argv, capsys)
        assert code == 0 and "carol" in out, (argv, err)
    for argv in (["stats", "--data", data, "--json"], ["--data", data, "stats"],
                 ["drive", "status", "--data", data], ["drive", "--data", data, "status"]):
        code, out, err = _run(argv, capsys)
        assert code == 0, (argv, err)
    code, _, err = _run(["--data", data, "plan", str(EXAMPLE)], capsys)
    assert code == 2 and "--data does not apply" in err


def test_a_missing_store_is_named_and_never_created(tmp_path, capsys):
    missing = tmp_path / "typo"
    for argv in (["stats"], ["user", "list"], ["drive", "status"], ["fsck"]):
        code, _, err = _run([*argv, "--data", str(missing)], capsys)
        assert code == 2 and f"no store at {missing}" in err, (argv, err)
    assert not missing.exists()


def test_the_same_port_for_s3_and_blob_is_refused_before_binding(tmp_path, capsys):
    code, _, err = _run(["serve", "--data", str(tmp_path / "d"), "--s3-port", "9123", "--blob-port", "9123"],
                        capsys)
    assert code == 2 and "need a port each" in err


def test_estimate_of_a_missing_or_empty_path(tmp_path, capsys):
    code, out, err = _run(["estimate", str(tmp_path / "no" / "such"), "--quiet"], capsys)
    assert code == 2 and "no such file or directory" in err and "1.00x" not in out
    (tmp_path / "empty").mkdir()
    code, out, err = _run(["estimate", str(tmp_path / "empty"), "--quiet"], capsys)
    assert code == 1 and "no files to estimate" in err


def test_the_estimate_table_is_never_cut_in_a_pipe(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("the same words again " * 40_000)
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run([sys.executable, "-m", "exastor.cli", "estimate", str(src), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "…" not in run.stdout  # rich's mark for a cut cell
    rows = [line for line in run.stdout.splitlines() if line.startswith("│ text")]
    assert len(rows) == 1 and "compression" in run.stdout and "float tf" in run.stdout
    ratio = rows[0].split("│")[5].strip()
    assert ratio.endswith("x") and float(ratio[:-1]) > 100  # the whole number, e.g. 1818.18x


def test_plan_refuses_an_unwritable_output_before_the_work(tmp_path, capsys):
    for flag in ("--json", "--report"):
        code, out, err = _run(["plan", str(EXAMPLE), "--scenarios", "0", flag,
                               str(tmp_path / "missing-dir" / "x.out")], capsys)
        assert code == 2 and "does not exist" in err and "Traceback" not in err
        assert "Sizing" not in out  # refused before the summary


def test_the_planners_reduction_fix_always_differs_from_the_ratio_it_replaces():
    assert ratio_fix(1.5000001, 1.5) == "1.51 instead of 1.50"
    assert ratio_fix(1.62, 1.5) == "1.62 instead of 1.50"
    for needed in (1.5 + 1e-12, 1.504, 1.5049999, 2.0):
        shown, _, have = ratio_fix(needed, 1.5).partition(" instead of ")
        assert shown != have and float(shown) >= needed


READ_ONLY = shutil.which("unshare") is not None


def _read_only(data: Path, *argv: str) -> subprocess.CompletedProcess:
    """``exastor ARGV`` with ``data`` bind-mounted read-only, in a private mount namespace of its own
    (so nothing outlives the command, and root's bypass of permission bits does not hide the case)."""
    inner = ('mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"')
    return subprocess.run(["unshare", "-rm", "sh", "-c", inner, str(data), sys.executable, "-m", "exastor.cli",
                           *argv], capture_output=True, text=True, timeout=120)


def test_a_read_only_data_directory_is_named_not_a_traceback(tmp_path):
    data = _store(tmp_path)
    probe = _read_only(data, "--version")
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only bind mount here (unshare -rm): {probe.stderr.strip()}")
    for argv in (["serve", "--s3-port", "0", "--blob-port", "0"], ["stats"], ["fsck"], ["user", "list"],
                 ["user", "add", "dave"], ["drive", "status"]):
        run = _read_only(data, *argv, "--data", str(data))
        assert run.returncode == 2, (argv, run.stdout, run.stderr)
        assert "read-only file system" in run.stderr.lower() and "Traceback" not in run.stderr, (argv, run.stderr)
