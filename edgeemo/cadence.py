"""``detect_fps``: which frames of a camera are analysed, one rule for every place that asks.

The daemon's reader drops frames above it before the hand-off (no queueing, no per-frame
work); :class:`edgeemo.analyzer.FrameAnalyzer` applies the same rule to whatever drives it
(``bench``, tests, a harness feeding every frame of a clip), so each sees what the daemon does.
Frigate's ``detect.fps`` is the same idea, with the same default of 5.
"""

from __future__ import annotations

# A frame slightly early (camera jitter) still counts, and 10, 15, 25 and 30 fps streams all
# give exactly detect_fps: at 15 fps and detect_fps 5, frames 200 ms apart, never 133.
SLACK = 0.9


def min_interval_s(fps: float) -> float:
    """Seconds that must pass after an analysed frame before the next may be analysed."""
    return SLACK / fps


def due(last: float, ts: float, fps: float) -> bool:
    """Is a frame at ``ts`` due, the last one analysed (or handed over) at ``last``? A clock
    that went back (a clip starting again) counts as due."""
    return not last <= ts < last + min_interval_s(fps)
