"""Hosts as Linux network namespaces, for the cluster tests (issue 14's harness).

One "switch" namespace holds a bridge; each host is a namespace with one veth into it and a private
address 10.213.N.H/24 that exists only inside these namespaces. Every request is sent from inside a
namespace, never from the root namespace (whose default route leaves the machine); while the
network exists the root namespace also holds a blackhole route for the subnet, as a second guard.
Everything is created by ``up`` and removed by ``down``; every command is bounded in time.

Faults on a host's link: ``partition``/``heal`` (the switch port down/up: connections time out),
``limit_bandwidth`` (tbf; netem is not in this kernel), ``drop_outgoing``/``drop_incoming`` (one
direction only: nftables where installed, else a blackhole route for the outgoing direction).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def tool(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=20)


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

    def leftovers(self) -> list[str]:
        return [ns for ns in ip("netns", "list").stdout.split() if ns.startswith(self.tag + "-")]

    def partition(self, host: int) -> None:
        ip("-n", self.switch, "link", "set", f"p{host}", "down")

    def heal(self, host: int) -> None:
        ip("-n", self.switch, "link", "set", f"p{host}", "up")

    def limit_bandwidth(self, host: int, rate: str = "20mbit") -> None:
        """Everything the host sends is shaped to ``rate`` (tbf on its end of the link)."""
        tool("tc", "-n", self.hosts[host - 1], "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate,
              "burst", "32kb", "latency", "100ms")

    def unlimit_bandwidth(self, host: int) -> None:
        tool("tc", "-n", self.hosts[host - 1], "qdisc", "del", "dev", "eth0", "root", check=False)

    def drop_outgoing(self, host: int, to_host: int) -> str:
        """Packets from ``host`` to ``to_host`` vanish; the other direction still flows. Returns how."""
        ns, target = self.hosts[host - 1], self.address(to_host)
        if shutil.which("nft"):
            self._nft(ns, f"add rule inet exfault out ip daddr {target} drop")
            return "nftables output drop"
        # No nftables: a blackhole route drops what the host sends (its SYN-ACKs and answers).
        ip("-n", ns, "route", "add", "blackhole", f"{target}/32")
        return "blackhole route"

    def drop_incoming(self, host: int, from_host: int) -> str:
        """Packets from ``from_host`` to ``host`` vanish (nftables); without nftables the sender's
        outgoing direction is cut instead, which is the same one-way loss seen from the wire."""
        ns, source = self.hosts[host - 1], self.address(from_host)
        if shutil.which("nft"):
            self._nft(ns, f"add rule inet exfault in ip saddr {source} drop")
            return "nftables input drop"
        return self.drop_outgoing(from_host, host)

    def undrop(self, host: int, other: int) -> None:
        for ns, peer in ((self.hosts[host - 1], other), (self.hosts[other - 1], host)):
            if shutil.which("nft"):
                tool("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "exfault", check=False)
            ip("-n", ns, "route", "del", "blackhole", f"{self.address(peer)}/32", check=False)

    @staticmethod
    def _nft(ns: str, rule: str) -> None:
        def nft(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
            return tool("ip", "netns", "exec", ns, "nft", *argv, check=check)

        if nft("list", "table", "inet", "exfault", check=False).returncode != 0:
            nft("add", "table", "inet", "exfault")
            nft("add", "chain", "inet", "exfault", "in", "{ type filter hook input priority 0 ; policy accept ; }")
            nft("add", "chain", "inet", "exfault", "out", "{ type filter hook output priority 0 ; policy accept ; }")
        nft(*rule.split())

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


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process started with ``start_new_session=True`` (its whole group), bounded in time."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
