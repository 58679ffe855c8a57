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


def _mallopt(env: str, param: int, value: int) -> bool:
    """``mallopt(param, value)``, as the environment variable ``env`` would set it; True if set.
    The environment wins (glibc read it at start-up: the systemd unit sets it); a libc without
    ``mallopt`` (musl) is left alone."""
    if os.environ.get(env):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(param, value))
    if ok:
        log.debug("malloc: %s=%d set", env, value)
    return ok


def limit_malloc_arenas(n: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``n``; counts for arenas made from here on, so call it
    before the camera threads start."""
    return _mallopt("MALLOC_ARENA_MAX", M_ARENA_MAX, n)


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``size`` bytes (no dynamic raising)."""
    return _mallopt("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, size)


def tune_malloc() -> None:
    """Both settings above: call once, before the camera threads start."""
    limit_malloc_arenas()
    fix_mmap_threshold()
