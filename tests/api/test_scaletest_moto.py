"""The scale test against a peer S3 server on loopback: moto's server."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import _scaletest_checks as checks
import pytest

from conftest import free_port


@pytest.fixture(scope="module")
def moto_endpoint():
    executable = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    if not os.path.exists(executable):
        pytest.skip("moto[server] is not installed (pip install -e .[test])")
    port = free_port()
    process = subprocess.Popen([executable, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


KEYS = ("testing", "testing")


def test_training_run(tmp_path, moto_endpoint):
    checks.check_training_compute_bound(tmp_path, moto_endpoint, *KEYS, "scaletest-train")


def test_ranged_reads_and_reuse(moto_endpoint):
    checks.check_ranged_reads_and_content(moto_endpoint, *KEYS, "scaletest-ranged")


def test_checkpoint(tmp_path, moto_endpoint):
    checks.check_checkpoint_multipart(tmp_path, moto_endpoint, *KEYS, "scaletest-ckpt")


def test_two_mpi_hosts_aggregate(tmp_path, moto_endpoint):
    """Under mpirun each process drives its share; rank 0 aggregates (skipped without MPI)."""
    import importlib.util
    import json

    if shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None:
        pytest.skip("needs mpirun and mpi4py")
    out = tmp_path / "mpi.json"
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable, "-m", "exastor.cli",
               "scaletest", "--endpoint", moto_endpoint, "--access-key", KEYS[0], "--secret-key", KEYS[1],
               "--bucket", "scaletest-mpi", "--quiet", "--workload", "cosmoflow", "--accelerators", "5",
               "--duration", "2", "--record-length", "8KiB", "--num-files", "20", "--compute-time", "0.05",
               "--json", str(out)]
    subprocess.run(command, check=False, timeout=120, capture_output=True)
    result = json.loads(out.read_text())["result"]
    assert result["hosts"] == 2 and result["accelerators"] == 5
    assert len(result["au_per_accelerator"]) == 5 and result["errors"] == 0
    assert result["au_mean"] > 0.5
