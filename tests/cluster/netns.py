"""Hosts as Linux network namespaces, for the cluster tests (tests/cluster/): a "switch" namespace
with a bridge and one namespace per host, each wired to it by a veth and given a private address
10.213.N.H/24 that exists only inside these namespaces. The root namespace's default route leaves the
machine, so every request is sent from inside a namespace, and for the cluster's life the root
namespace holds a blackhole route for the subnet as a second guard. ``up()`` makes it all and
``down()`` removes it all (call it in a ``finally``); ``namespaces_permitted()`` says why a machine
cannot (not root, no CAP_NET_ADMIN, a container) so a test can skip with that message."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


class Namespaces:
    """A switch namespace with a bridge and ``hosts`` host namespaces wired to it."""

    def __init__(self, hosts: int) -> None:
        self.tag = f"ex{os.getpid() % 100000}"
        self.switch = f"{self.tag}-sw"
        self.hosts = [f"{self.tag}-h{i}" for i in range(1, hosts + 1)]
        self.subnet = ""
        self.made: list[str] = []

    def address(self, host: int) -> str:
        return f"{self.subnet}.{host}"

    def up(self) -> None:
        # A /24 nobody on this machine routes yet; the blackhole keeps the root namespace from ever
        # sending to it (it would leave the machine by the default route).
        for attempt in range(50):
            candidate = f"10.213.{(os.getpid() + attempt) % 250 + 1}"
            if ip("route", "add", "blackhole", f"{candidate}.0/24", check=False).returncode == 0:
                self.subnet = candidate
                break
        else:
            raise RuntimeError("no free 10.213.x.0/24 for the test network")
        for ns in (self.switch, *self.hosts):
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, ns in enumerate(self.hosts, 1):
            port = f"p{i}"
            ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", self.switch, "link", "set", port, "master", "br0")
            ip("-n", self.switch, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def down(self) -> None:
        for ns in reversed(self.made):
            ip("netns", "del", ns, check=False)  # removes its veth ends too
        if self.subnet:
            ip("route", "del", "blackhole", f"{self.subnet}.0/24", check=False)

    def partition(self, host: int) -> None:
        ip("-n", self.switch, "link", "set", f"p{host}", "down")

    def heal(self, host: int) -> None:
        ip("-n", self.switch, "link", "set", f"p{host}", "up")

    def cmd(self, host: int, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[host - 1], *argv]


def namespaces_permitted() -> str | None:
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"exprobe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    bridge = ip("-n", probe, "link", "add", "br0", "type", "bridge", check=False)
    ip("netns", "del", probe, check=False)
    if bridge.returncode != 0:
        return f"no bridges inside a namespace here: {bridge.stderr.strip()}"
    return None


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group ``proc`` leads (started with start_new_session), SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
