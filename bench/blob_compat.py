#!/usr/bin/env python3
"""The Azure Blob peer check: run the same Blob test modules against exastor and Azurite, and probe
what each returns for the same requests.

    python bench/blob_compat.py [--out bench/results/blob_compat.json] [--md docs/compatibility-blob-results.md]

1. Starts exastor (``exastor serve``, temp data dir, free ports) and Azurite (``bench/peers/azurite.sh``,
   npm azurite 3.35 with ``--skipApiVersionCheck`` on Node 20).
2. Runs tests/api/test_blob_sdk.py, test_blob_aio.py and test_blob_adlfs.py against each (the modules
   read EXASTOR_BLOB_TEST_CONNECTION_STRING) and records every test's outcome and failure line.
3. Probes both with the same SDK calls and diffs the properties the SDK reports (blob, container,
   listing), ignoring values that differ by nature (times, ETags, request ids).
4. Writes a JSON (machine info, versions, outcomes, property differences) and a Markdown table.
   docs/compatibility-blob.md explains every difference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EXASTOR_ACCOUNT = "exastorbench"
MODULES = ["tests/api/test_blob_sdk.py", "tests/api/test_blob_aio.py", "tests/api/test_blob_adlfs.py"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connection_string(account: str, key: str, port: int) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{account};")


def exastor_label(geometry: str) -> str:
    """A geometry's column name: "exastor" for one drive, "exastor-4+2" for 4+2 erasure."""
    return "exastor" if geometry == "1" else f"exastor-{geometry}"


def exastor_layout(data: Path, geometry: str) -> list[str]:
    """``exastor serve`` arguments for a geometry: "1" is the default (one drive directory, no
    redundancy); "K+M" is K+M drive directories under ``data`` with that erasure geometry, as
    bench/peers/exastor.sh does with EXASTOR_BENCH_EC for the S3 benchmarks."""
    if geometry == "1":
        return []
    k, m = (int(x) for x in geometry.split("+"))
    return [arg for i in range(k + m) for arg in ("--drive", str(data / f"d{i}"))] + ["--ec", geometry]


class Servers:
    """exastor (one server per geometry) and Azurite side by side on free loopback ports."""

    def __init__(self, tmp: Path, geometries: tuple[str, ...] = ("1",), azurite: bool = True) -> None:
        self.tmp, self.geometries, self.azurite = tmp, geometries, azurite
        self.ports = {exastor_label(g): free_port() for g in geometries}
        self.azurite_port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.pids: dict[str, int] = {}  # column name -> server pid, for CPU accounting

    def __enter__(self) -> Servers:
        from exastor.gateway.health import wait_ready

        try:
            for geometry in self.geometries:
                name = exastor_label(geometry)
                data = self.tmp / name
                log = open(self.tmp / f"{name}.log", "ab")
                proc = self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "exastor.cli", "serve", "--data", str(data),
                     *exastor_layout(data, geometry), "--s3-port", str(free_port()),
                     "--blob-port", str(self.ports[name]),
                     "--account-name", EXASTOR_ACCOUNT, "--account-key", AZURITE_KEY],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                self.pids[name] = proc.pid
                wait_ready([f"http://127.0.0.1:{self.ports[name]}"], alive=lambda p=proc: p.poll() is None)
            if self.azurite:
                out = subprocess.run(["bash", str(REPO / "bench/peers/azurite.sh"), "start", str(self.azurite_port),
                                      str(self.tmp / "azurite")], capture_output=True, text=True, check=True)
                self.pids["azurite"] = int(out.stdout.strip().split("pid=")[-1])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.azurite:
            subprocess.run(["bash", str(REPO / "bench/peers/azurite.sh"), "stop"], check=False)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)

    def targets(self) -> dict[str, str]:
        out = {name: connection_string(EXASTOR_ACCOUNT, AZURITE_KEY, port) for name, port in self.ports.items()}
        if self.azurite:
            out["azurite"] = connection_string(AZURITE_ACCOUNT, AZURITE_KEY, self.azurite_port)
        return out


def run_tests(name: str, cs: str, tmp: Path) -> dict[str, dict[str, str]]:
    junit = tmp / f"{name}.xml"
    env = dict(os.environ, EXASTOR_BLOB_TEST_CONNECTION_STRING=cs)
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                    "--rootdir", str(REPO), *MODULES], cwd=REPO, env=env, capture_output=True, text=True)
    outcomes: dict[str, dict[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failure is not None:
            message = (failure.get("message") or "").strip().splitlines()
            outcomes[test] = {"outcome": "failed", "reason": (message[0] if message else "")[:200]}
        elif case.find("skipped") is not None:
            outcomes[test] = {"outcome": "skipped", "reason": ""}
        else:
            outcomes[test] = {"outcome": "passed", "reason": ""}
    return outcomes


_VOLATILE = {"etag", "last_modified", "creation_time", "request_id", "date", "name", "container", "version",
             "client_request_id", "last_accessed_on", "deleted_time", "snapshot", "version_id"}


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    """An SDK model as dotted fields, minus the ones that differ by nature."""
    if isinstance(value, dict):
        items = list(value.items())
    elif hasattr(value, "__dict__"):
        items = [(k, v) for k, v in vars(value).items() if not k.startswith("_")]
    else:
        return {prefix.rstrip("."): value}
    out: dict[str, object] = {}
    for k, v in items:
        if k in _VOLATILE:
            continue
        key = prefix + str(k)
        if isinstance(v, bytes | bytearray):
            out[key] = v.hex()
        elif hasattr(v, "__dict__") and not isinstance(v, type):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v if isinstance(v, str | int | float | bool | type(None) | dict | list) else str(v)
    return out


def probe(cs: str) -> dict[str, dict[str, object]]:
    """The same SDK calls on one server; the SDK's view of the results."""
    from azure.storage.blob import BlobServiceClient, ContentSettings

    svc = BlobServiceClient.from_connection_string(cs, retry_total=0)
    cc = svc.create_container(f"probe{int(time.time() * 1000)}", metadata={"Team": "ml"})
    seen: dict[str, dict[str, object]] = {}
    try:
        bc = cc.get_blob_client("dir/probe.bin")
        bc.upload_blob(b"x" * 1000, metadata={"CamelKey": "v"},
                       content_settings=ContentSettings(content_type="text/plain", cache_control="no-cache"))
        seen["get_blob_properties (Put Blob)"] = _flatten(bc.get_blob_properties())
        bl = cc.get_blob_client("blocks")
        bl.stage_block("QQ==", b"a" * 10)
        bl.commit_block_list(["QQ=="])
        seen["get_blob_properties (Put Block List)"] = _flatten(bl.get_blob_properties())
        ab = cc.get_blob_client("append")
        ab.create_append_blob()
        ab.append_block(b"abc")
        seen["get_blob_properties (append)"] = _flatten(ab.get_blob_properties())
        seen["get_container_properties"] = _flatten(cc.get_container_properties())
        listed = {b.name: _flatten(b) for b in cc.list_blobs(include=["metadata"])}
        seen["list_blobs entry (Put Blob)"] = listed["dir/probe.bin"]
        seen["list_containers entry"] = _flatten(next(iter(
            svc.list_containers(name_starts_with=cc.container_name, include_metadata=True))))
    finally:
        cc.delete_container()
    return seen


def diff(a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]) -> list[dict[str, str]]:
    rows = []
    for op in a:
        for key in sorted(set(a[op]) | set(b.get(op, {}))):
            va, vb = a[op].get(key, "(absent)"), b.get(op, {}).get(key, "(absent)")
            if va != vb:
                rows.append({"operation": op, "field": key, "exastor": repr(va), "azurite": repr(vb)})
    return rows


def markdown(result: dict) -> str:
    lines = [f"# Blob API: exastor vs Azurite (generated {result['when']})", "",
             "Generated by `python bench/blob_compat.py`; explanations in `docs/compatibility-blob.md`.", "",
             f"Azurite {result['azurite_version']} (`--skipApiVersionCheck`), azure-storage-blob "
             f"{result['sdk_version']}, Node {result['node_version']}.", "",
             "## The same tests against both", "",
             "| test | exastor | Azurite | Azurite's failure |", "|---|---|---|---|"]
    ex, az = result["tests"]["exastor"], result["tests"]["azurite"]
    for test in sorted(set(ex) | set(az)):
        e, a = ex.get(test, {}), az.get(test, {})
        lines.append(f"| `{test}` | {e.get('outcome', '-')} | {a.get('outcome', '-')} | "
                     f"{a.get('reason', '').replace('|', '/')[:120]} |")
    passed = {k: sum(v["outcome"] == "passed" for v in t.values()) for k, t in result["tests"].items()}
    lines += ["", f"Passed: exastor {passed['exastor']}/{len(ex)}, Azurite {passed['azurite']}/{len(az)}.", "",
              "## What the SDK reports for the same calls (fields that differ)", "",
              "| operation | field | exastor | Azurite |", "|---|---|---|---|"]
    for row in result["property_diffs"]:
        lines.append(f"| {row['operation']} | `{row['field']}` | {row['exastor'][:60]} | {row['azurite'][:60]} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "bench/results/blob_compat.json"))
    ap.add_argument("--md", default=str(REPO / "docs/compatibility-blob-results.md"))
    args = ap.parse_args()
    import azure.storage.blob
    from rich.console import Console
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="blobcompat-"))
    try:
        with Servers(tmp) as servers:
            targets = servers.targets()
            tests = {}
            for name, cs in targets.items():
                console.print(f"[bold]running the Blob test modules against {name}[/]")
                tests[name] = run_tests(name, cs, tmp)
            console.print("[bold]probing both with the same calls[/]")
            probes = {name: probe(cs) for name, cs in targets.items()}
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        result = {"when": utc_stamp(), "machine": machine_info(), "azurite_version": "3.35.0",
                  "sdk_version": azure.storage.blob.__version__, "node_version": node, "tests": tests,
                  "property_diffs": diff(probes["exastor"], probes["azurite"])}
        write_result(args.out, result)
        md = Path(args.md)
        kept = md.read_text() if md.exists() else ""
        js = "<!-- js-sdk: generated by bench/blob_js_sdk.py -->"
        # bench/blob_js_sdk.py's section of the same page is its own: kept as it was.
        md.write_text(markdown(result) + ("\n" + js + kept.split(js, 1)[1] if js in kept else ""))
        for name, t in tests.items():
            ok = sum(v["outcome"] == "passed" for v in t.values())
            console.print(f"{name}: {ok}/{len(t)} passed")
        console.print(f"{len(result['property_diffs'])} property differences; wrote {args.out} and {args.md}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
