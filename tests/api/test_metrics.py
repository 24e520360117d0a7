"""/metrics on the admin listener (issue 15, item 1): counted across forked workers, cheap to scrape,
protected, and every series the shipped Grafana dashboard asks for exists in a real scrape."""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import requests
from azure.storage.blob import BlobServiceClient
from prometheus_client.parser import text_string_to_metric_families

from conftest import exastor, free_port, s3_client, start_server
from exastor.gateway.admin import AdminApp, is_loopback

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "exastor-dashboard.json"


def scrape(port: int, **headers: str) -> dict[tuple[str, tuple], float]:
    got = requests.get(f"http://127.0.0.1:{port}/metrics", headers=headers, timeout=30)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(got.text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_requests_are_counted_across_workers_and_the_dashboard_exists(tmp_path):
    admin = free_port()
    server = start_server(tmp_path, "--admin-port", str(admin), "--workers", "2")
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="metrics")
        body = b"m" * 100_000
        for i in range(5):
            s3.put_object(Bucket="metrics", Key=f"k{i}", Body=body)
        for i in range(5):
            assert s3.get_object(Bucket="metrics", Key=f"k{i}")["Body"].read() == body
        try:
            s3.head_object(Bucket="metrics", Key="absent")
        except Exception:  # noqa: BLE001 - a 404 is the point
            pass
        blob = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
        blob.create_container("metricsblob")
        blob.get_blob_client("metricsblob", "b").upload_blob(b"x" * 1000)
        assert blob.get_blob_client("metricsblob", "b").download_blob().readall() == b"x" * 1000
        samples = scrape(admin)
        # 12 S3 requests on two workers, every one counted once (the scrapes are not)
        assert total(samples, "exastor_requests_total", api="s3") == 12
        assert total(samples, "exastor_requests_total", api="s3", status="404") == 1
        assert total(samples, "exastor_requests_total", api="blob") >= 3
        assert total(samples, "exastor_request_seconds_count", api="s3") == 12
        assert total(samples, "exastor_received_bytes_total", api="s3") >= 5 * len(body)
        assert total(samples, "exastor_sent_bytes_total", api="s3") >= 5 * len(body)
        # store-wide figures, as `exastor stats --json` has them
        stats = json.loads(exastor("stats", "--json", data_dir=server.data_dir).stdout)
        fresh = scrape(admin)
        deadline = time.monotonic() + 30
        while total(fresh, "exastor_objects") != stats["objects"] and time.monotonic() < deadline:
            time.sleep(0.2)  # the figures are refreshed in the background every few seconds
            fresh = scrape(admin)
        assert total(fresh, "exastor_objects") == stats["objects"] == 6
        assert total(fresh, "exastor_buckets") == stats["buckets"] == 2
        assert total(fresh, "exastor_data_bytes", stage="logical") == stats["logical_bytes"]
        assert total(fresh, "exastor_data_bytes", stage="stored") == stats["stored_bytes"]
        assert abs(total(fresh, "exastor_reduction_ratio", factor="total") - stats["reduction_ratio"]) < 1e-3
        assert total(fresh, "exastor_drive_healthy", drive="0") == 1
        # every metric the dashboard asks for is served
        served = {n for n, _ in fresh}
        exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
        assert len(exprs) >= 20
        for expr in exprs:
            for name in re.findall(r"\bexastor_[a-z_]+", expr):
                assert name in served, (name, expr)
    finally:
        server.stop()
    # a restart starts from zero: the multiprocess directory is emptied at start
    server.start()
    try:
        assert total(scrape(admin), "exastor_requests_total") == 0
    finally:
        server.stop()


def test_a_scrape_of_100_buckets_on_4_drives_takes_under_50_ms(tmp_path):
    admin = free_port()
    drives = [a for i in range(4) for a in ("--drive", str(tmp_path / f"d{i}"))]
    server = start_server(tmp_path, "--admin-port", str(admin), *drives)
    try:
        s3 = s3_client(server)
        for i in range(100):
            s3.create_bucket(Bucket=f"b{i:03d}")
            s3.put_object(Bucket=f"b{i:03d}", Key="k", Body=bytes([i]) * 10_000)
        first = scrape(admin)  # computes the store figures once
        session = requests.Session()
        times = []
        for _ in range(15):
            started = time.perf_counter()
            assert session.get(f"http://127.0.0.1:{admin}/metrics", timeout=30).status_code == 200
            times.append(time.perf_counter() - started)
        assert statistics.median(times) < 0.050, times
        assert total(first, "exastor_store_figures_compute_seconds") < 0.250
        assert len({ls for n, ls in first if n == "exastor_drive_capacity_bytes"}) == 4
    finally:
        server.stop()


def test_metrics_need_the_token_when_one_is_set(tmp_path):
    admin = free_port()
    token = "metrics-token-0123456789"
    server = start_server(tmp_path, "--admin-port", str(admin), "--metrics-token", token, "--workers", "1")
    try:
        url = f"http://127.0.0.1:{admin}/metrics"
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong-token-0123456789"},
                            timeout=30).status_code == 401
        assert "exastor_buckets" in scrape(admin, Authorization=f"Bearer {token}").__repr__()
        assert requests.post(url, timeout=30).status_code == 405
    finally:
        server.stop()


def test_without_a_token_only_loopback_clients_may_scrape():
    class Cfg:
        metrics_token = ""

    class Req:
        def __init__(self, host: str) -> None:
            self.client_host, self.headers = host, {}

    app = AdminApp.__new__(AdminApp)
    app.cfg = Cfg()
    assert app.may_scrape(Req("127.0.0.1")) and app.may_scrape(Req("::1"))
    assert not app.may_scrape(Req("10.1.2.3")) and not app.may_scrape(Req("192.168.0.7"))
    assert is_loopback("127.8.9.10") and not is_loopback("")
