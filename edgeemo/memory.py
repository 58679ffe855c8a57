"""Process-wide memory settings for the daemon, applied before its threads start.

glibc gives each thread that allocates while the others hold the lock its own malloc arena
(up to 8 per core), and RSS counts every page an arena has touched and not given back: with a
reader and a loop per camera, FFmpeg's and OpenCV's threads, the arenas held ~30 MiB more
with four cameras than two arenas do (``scripts/soak.py``; the README has the figures).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENA_MAX = 2
M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)


def limit_malloc_arenas(n: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``n``, as ``MALLOC_ARENA_MAX=n`` would; True if set.

    The environment wins (glibc has read it at start-up: the systemd unit sets it). Otherwise
    ``mallopt`` does it now, which counts for arenas made from here on: call it before the
    camera threads start. A libc without ``mallopt`` (musl) is left alone."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_ARENA_MAX, n))
    if ok:
        log.debug("malloc arenas capped at %d", n)
    return ok
