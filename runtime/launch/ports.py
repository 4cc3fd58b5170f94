"""Is the rendezvous port free? Checked before any rank starts: a busy port otherwise shows up as a rank
that waits for its peers until the rendezvous times out, minutes later and far from the cause."""

from __future__ import annotations

import errno
import socket


def port_in_use(port: int, host: str = "") -> bool:
    """True when something listens on `port` (on all interfaces by default, as the rendezvous store binds).
    SO_REUSEADDR: sockets of a finished run still in TIME_WAIT do not count, as they do not for the store."""
    families = [(socket.AF_INET, host or "0.0.0.0")]
    if socket.has_ipv6 and not host:
        families.append((socket.AF_INET6, "::"))
    for family, address in families:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                try:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                except OSError:
                    pass
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
                if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                raise
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (tests and `MASTER_PORT=0`-style callers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
