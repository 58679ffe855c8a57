"""systemd notification (READY, STATUS, WATCHDOG, STOPPING).

Uses systemd-python where installed; otherwise writes the datagram itself, which is all
sd_notify does. Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op. A
notification can never stop the daemon: a failure (a socket that is gone, a full buffer) is
logged once and the call returns False.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _failed(addr: str | None, e: Exception) -> bool:
    why = f"{type(e).__name__}: {e}"
    if why not in _warned:  # once per cause: this runs every few seconds
        _warned.add(why)
        log.warning(
            "cannot notify systemd at NOTIFY_SOCKET=%s (%s); running on, but systemd's watchdog "
            "and status line will not see this daemon. Unset NOTIFY_SOCKET when not run by systemd",
            addr, why,
        )  # fmt: skip
    return False


def notify(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    try:
        from systemd import daemon  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        try:
            return bool(daemon.notify(state))
        except Exception as e:  # systemd-python raises OSError for a dead socket
            return _failed(addr, e)
    if not addr:
        return False
    path = "\0" + addr[1:] if addr.startswith("@") else addr  # "@": abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), path)
    except (OSError, ValueError) as e:
        return _failed(addr, e)
    return True


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec for this process, in seconds, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
