"""Process-wide memory settings for the daemon, applied before its threads start.

glibc gives each thread that allocates while the others hold the lock its own malloc arena
(up to 8 per core), and RSS counts every page an arena has touched and not given back: with a
reader and a loop per camera, FFmpeg's and OpenCV's threads, the arenas held ~30 MiB more
with four cameras than two arenas do (``scripts/soak.py``; the README has the figures).

glibc also raises its mmap threshold to the size of the largest block freed (up to 32 MiB),
after which frames and the detector's working buffers come from the heap, where a freed one
stays resident behind smaller live blocks: four cameras' RSS swung between 158 and 180 MiB
with it; fixed at 1 MiB it held 143-147 MiB, at 256 KiB 139-141 MiB (``scripts/soak.py``).
The price: each frame's pages are faulted in afresh, ~0.2 ms a 640x480 frame here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

ARENA_MAX = 2
# Blocks this large (a 640x480 BGR frame is 900 KiB) are mmap()ed and given back when freed.
MMAP_THRESHOLD = 256 << 10
M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter numbers (malloc.h)
M_ARENA_MAX = -8


def _mallopt():  # type: ignore[no-untyped-def]
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None  # a libc without mallopt (musl) is left alone


def limit_malloc_arenas(n: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``n``, as ``MALLOC_ARENA_MAX=n`` would; True if set.

    The environment wins (glibc has read it at start-up: the systemd unit sets it). Otherwise
    ``mallopt`` does it now, which counts for arenas made from here on: call it before the
    camera threads start."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _mallopt()
    ok = bool(mallopt and mallopt(M_ARENA_MAX, n))
    if ok:
        log.debug("malloc arenas capped at %d", n)
    return ok


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``size`` bytes (no dynamic raising), as
    ``MALLOC_MMAP_THRESHOLD_=size`` would; True if set. The environment wins."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    mallopt = _mallopt()
    ok = bool(mallopt and mallopt(M_MMAP_THRESHOLD, size))
    if ok:
        log.debug("malloc mmap threshold fixed at %d bytes", size)
    return ok


def tune_malloc() -> None:
    """Both settings above: call once, before the camera threads start."""
    limit_malloc_arenas()
    fix_mmap_threshold()
