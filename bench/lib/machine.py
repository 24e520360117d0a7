"""Where a number was measured: CPU, memory, disk, kernel, Python, packages.

A benchmark result without this is not comparable with anything, so every
result JSON embeds :func:`machine_info`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

DEFAULT_PACKAGES = ("boto3", "botocore", "urllib3", "numpy", "rich", "exastor")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _run(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def disk_info(path: str | os.PathLike[str]) -> dict[str, object]:
    """The filesystem and block device that hold ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    info: dict[str, object] = {"path": str(path.resolve())}
    st = os.statvfs(path)
    info["fs_size_bytes"] = st.f_blocks * st.f_frsize
    info["fs_free_bytes"] = st.f_bavail * st.f_frsize
    out = _run(["df", "--output=source,fstype,target", str(path)])
    if out:
        lines = out.splitlines()
        if len(lines) >= 2:
            source, fstype, target = (lines[1].split() + ["", "", ""])[:3]
            info.update(device=source, fstype=fstype, mount=target)
            dev_name = Path(source).name
            for candidate in (dev_name, dev_name.rstrip("0123456789")):
                rotational = Path(f"/sys/block/{candidate}/queue/rotational")
                if rotational.exists():
                    info["rotational"] = rotational.read_text().strip() == "1"
                    model = Path(f"/sys/block/{candidate}/device/model")
                    if model.exists():
                        info["model"] = model.read_text().strip()
                    break
    return info


def package_versions(names: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(data_dir: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Everything about this machine that a reader needs to judge a number."""
    info: dict[str, object] = {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_bytes": _mem_total_bytes(),
        "kernel": platform.release(),
        "os": _run(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]) or platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": package_versions(),
        "loadavg_at_start": os.getloadavg(),
    }
    if data_dir is not None:
        info["disk"] = disk_info(data_dir)
    return info
