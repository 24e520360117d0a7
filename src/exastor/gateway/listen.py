"""Listening sockets, made before the workers fork so they all accept from them (server.py for the
front-ends, admin.py for the admin listener)."""

from __future__ import annotations

import socket


class ListenError(RuntimeError):
    """A front-end could not bind its port."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, made before the workers fork so they all accept from it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock
