"""What `exastor cluster status` shows for a gateway (services/cluster.py, ``gateway_address``)."""

import socket

from exastor.services.cluster import gateway_address


def test_a_gateway_listening_on_one_address_is_shown_by_it():
    # Two gateways in network namespaces (or containers) share the machine's host name: the address
    # each listens on tells them apart.
    assert gateway_address("10.213.5.9", 9000) == "10.213.5.9:9000"
    assert gateway_address("fd00::9", 9000) == "[fd00::9]:9000"


def test_a_gateway_on_every_address_or_loopback_is_shown_by_host_name():
    name = socket.gethostname()
    for host in ("0.0.0.0", "::", "", "127.0.0.1", "::1", "localhost"):
        assert gateway_address(host, 9000) == f"{name}:9000"
