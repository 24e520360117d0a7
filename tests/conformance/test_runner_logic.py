"""Unit tests for the s3-tests runner's own logic (no server, no suite venv needed)."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_s3tests  # noqa: E402
from run_s3tests import CaseResult, RunResult, User  # noqa: E402


def test_user_spec_defaults_and_explicit_fields() -> None:
    u = User.parse("AK:SK", "s3main")
    assert (u.access_key, u.secret_key, u.user_id, u.display_name, u.email) == (
        "AK", "SK", "s3main", "s3main", "s3main@example.com")
    u = User.parse("AK:SK:id1:Name One:one@x.org", "ignored")
    assert (u.user_id, u.display_name, u.email) == ("id1", "Name One", "one@x.org")


def test_config_has_every_key_the_suite_reads() -> None:
    text = run_s3tests.render_config("http://127.0.0.1:9123", User.parse("A:B", "m"), User.parse("C:D", "a"))
    cfg = configparser.RawConfigParser()
    cfg.read_string(text)
    d = cfg.defaults()
    assert (d["host"], d["port"], d["is_secure"]) == ("127.0.0.1", "9123", "False")
    # read unconditionally by the suite's conftest: a missing one aborts the whole run
    for key in ("ssl_verify", "ssh_user", "ssh_passwd", "ssh_port"):
        assert key in d
    assert "{random}" in cfg.get("fixtures", "bucket prefix")
    for section, ak in (("s3 main", "A"), ("s3 alt", "C")):
        assert cfg.get(section, "access_key") == ak
        for key in ("secret_key", "user_id", "display_name", "email"):
            assert cfg.get(section, key)
    assert cfg.get("s3 main", "storage_classes") and int(cfg.get("s3 main", "lc_debug_interval")) > 0
    assert "@" not in text.replace(cfg.get("s3 main", "email"), "").replace(cfg.get("s3 alt", "email"), "")


def test_https_endpoint_default_port() -> None:
    text = run_s3tests.render_config("https://s3.local", User.parse("A:B", "m"), User.parse("C:D", "a"))
    cfg = configparser.RawConfigParser()
    cfg.read_string(text)
    assert cfg.defaults()["port"] == "443" and cfg.defaults()["is_secure"] == "True"


def test_phases_fold_into_one_outcome() -> None:
    lines = [
        {"nodeid": "t::a", "when": "setup", "outcome": "passed", "duration": 0.1},
        {"nodeid": "t::a", "when": "call", "outcome": "passed", "duration": 0.2},
        {"nodeid": "t::a", "when": "teardown", "outcome": "passed", "duration": 0.1},
        {"nodeid": "t::b", "when": "setup", "outcome": "passed", "duration": 0.0},
        {"nodeid": "t::b", "when": "call", "outcome": "failed", "duration": 0.0, "message": "boom"},
        {"nodeid": "t::c", "when": "setup", "outcome": "failed", "duration": 0.0, "message": "fixture"},
        {"nodeid": "t::d", "when": "call", "outcome": "passed", "duration": 0.0},
        {"nodeid": "t::d", "when": "teardown", "outcome": "failed", "duration": 0.0, "message": "cleanup"},
        {"nodeid": "t::e", "when": "setup", "outcome": "skipped", "duration": 0.0, "message": "why"},
        {"nodeid": "t::f", "when": "call", "outcome": "xfailed", "duration": 0.0},
    ]
    r = run_s3tests._final_outcomes(lines)
    assert {k: v.outcome for k, v in r.items()} == {
        "t::a": "passed", "t::b": "failed", "t::c": "error", "t::d": "error", "t::e": "skipped", "t::f": "skipped"}
    assert abs(r["t::a"].duration - 0.4) < 1e-9
    assert r["t::b"].message == "boom"


def test_failure_causes_group_like_failures() -> None:
    msg = ("botocore.exceptions.ClientError: An error occurred (NotImplemented) when calling the "
           "PutBucketAcl operation: A parameter you provided implies functionality that is not implemented")
    assert run_s3tests.failure_cause(msg) == "PutBucketAcl -> NotImplemented"
    assert run_s3tests.failure_cause("AssertionError: ClientError not raised") == \
        "AssertionError: ClientError not raised"
    assert run_s3tests.failure_cause("Failed: Timeout >60.0s") == "timeout (per-test limit)"
    assert run_s3tests.failure_cause("") == "(no message)"


def test_group_of_nodeid() -> None:
    assert run_s3tests.group_of("tests/test_s3_acl_v.py::TestBucketAcl::test_x") == "acl_v::TestBucketAcl"
    assert run_s3tests.group_of("tests/test_s3_misc.py::test_y") == "misc"


def _run(outcomes: dict[str, tuple[str, float]]) -> RunResult:
    return RunResult({k: CaseResult(o, "", d) for k, (o, d) in outcomes.items()}, 1.0, False, 0,
                     Path("junit.xml"), Path("conf"))


def test_passing_file_roundtrip_and_slow_filter(tmp_path: Path) -> None:
    run = _run({"t::fast": ("passed", 0.5), "t::slow": ("passed", 30.0), "t::bad": ("failed", 0.1)})
    path = tmp_path / "passing.txt"
    written = run_s3tests.write_passing(run, "label", run_s3tests.summarize(run), path)
    assert written == ["t::fast", "t::slow"]
    assert run_s3tests.read_passing(path) == ["t::fast", "t::slow"]
    assert run_s3tests.read_passing(path, max_seconds=run_s3tests.SLOW_TEST_S) == ["t::fast"]
    assert run_s3tests.read_passing(tmp_path / "missing.txt") == []


def test_regressions_include_tests_that_never_ran() -> None:
    run = _run({"t::a": ("passed", 0.1), "t::b": ("failed", 0.1)})
    bad = run_s3tests.regressions(run, ["t::a", "t::b", "t::gone"])
    assert [(k, r.outcome) for k, r in bad] == [("t::b", "failed"), ("t::gone", "not-run")]


def test_summary_counts_and_groups() -> None:
    run = _run({"tests/test_s3_x.py::TestA::t1": ("passed", 0.1), "tests/test_s3_x.py::TestA::t2": ("failed", 0.1),
                "tests/test_s3_y.py::TestB::t3": ("skipped", 0.0)})
    s = run_s3tests.summarize(run)
    assert s["total"] == 3 and s["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert s["groups"]["x::TestA"] == {"passed": 1, "failed": 1}
