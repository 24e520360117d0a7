"""The mutation check's fast subset (tests/faults/fsync_mutation.py; the full table is in
docs/reliability.md): the power-loss harness must be able to fail. Key fsync sites are disabled in a
copy of the tree, and the power-cut scenario (or, inside LocalDrive, the syscall contract tests)
must report the loss."""

from __future__ import annotations

import re
from pathlib import Path

import fsync_mutation as fm
import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def _by_function(file: str, function: str, code: str) -> fm.Site:
    found = [s for s in fm.find_sites() if s.file == file and s.function == function and s.code == code]
    assert len(found) == 1, (file, function, code, found)
    return found[0]


# The metadata journal's directory fsync (journal.py:_prepare) is caught by its targeted test below:
# since the recorder journals directory fsyncs exactly, the power+meta scenario no longer sees it in 4
# cuts at seed 1 (docs/reliability.md).
@pytest.mark.parametrize("site,scenario", [
    (("exastor/engine/segments.py", "_fsync_all", "d.io.fsync(name)"), "power"),        # the open segment's fsync
], ids=["segment-append-fsync"])
def test_the_power_cut_harness_catches_a_missing_fsync(tmp_path, site, scenario):
    mutant = _by_function(*site)
    copy = fm.make_copy(tmp_path)
    fm.check_copy_is_used(copy)
    fm.mutate(copy / "src", mutant)
    caught, evidence = fm.run_detector(copy, mutant, scenario, cuts=4, seed=1, timeout=240)
    assert caught, f"{mutant.where} disabled and the harness saw nothing: {evidence}"


# Three of the five in CI (an engine step, a metadata-copy step and the metadata journal's new file, which
# the load-driven scenarios no longer catch at all; ~20-35 s each on a quiet machine); the full check
# (fsync_mutation.py) runs every one.
@pytest.mark.parametrize("where", [w for w in sorted(fm.TARGETED)
                                   if w[1] in ("_create", "retire_older", "_prepare")],
                         ids=lambda w: f"{w[1]}")
def test_each_targeted_site_is_caught_by_its_power_cut_test(tmp_path, where):
    """The sites the load-driven scenario reaches too rarely: each one's own test (a power cut at exactly
    its step, tests/faults/test_power_cut_points.py) must fail on the tree without it."""
    mutant = _by_function(*where)
    assert mutant.targeted == fm.TARGETED[where]
    copy = fm.make_copy(tmp_path)
    fm.mutate(copy / "src", mutant)
    caught, evidence = fm.run_detector(copy, mutant, f"test:{mutant.targeted}", cuts=0, seed=0, timeout=240)
    assert caught, f"{mutant.where} disabled and {mutant.targeted} still passed: {evidence}"


def test_local_drive_fsyncs_are_each_caught_by_the_contract_tests(tmp_path):
    # LocalDrive's only: the drive server's and --data's contract sites run in the full check
    for mutant in (s for s in fm.find_sites() if s.detector == "contract" and s.file == "exastor/drives/local.py"):
        copy = fm.make_copy(tmp_path / f"{mutant.line}")
        fm.mutate(copy / "src", mutant)
        caught, evidence = fm.run_detector(copy, mutant, "contract", cuts=0, seed=0, timeout=120)
        assert caught, f"{mutant.where} ({mutant.code}) disabled and no contract test failed"


def test_every_site_is_in_the_docs_table():
    """docs/reliability.md lists each site with the scenario that catches it (or why none does)."""
    text = DOC.read_text()
    table = set(re.findall(r"`(exastor/[\w/]+\.py):(\w+)`", text))
    missing = {(s.file, s.function) for s in fm.find_sites()} - table
    assert not missing, f"sites missing from the table in docs/reliability.md: {sorted(missing)}"
