"""``detect_fps``: which frames of a camera are analysed, one rule for every place that asks.

The daemon's reader drops frames above it before the hand-off (no queueing, no per-frame
work); :class:`edgeemo.analyzer.FrameAnalyzer` applies the same rule to whatever drives it
(``bench``, tests, a harness feeding every frame of a clip), so each sees what the daemon does.
Fed the same timestamps, two :class:`Cadence` agree frame for frame, so the analyzer passes
every frame the reader handed over. Frigate's ``detect.fps`` is the same idea, default 5 too.
"""

from __future__ import annotations

# A frame this share of an interval early still counts: camera jitter, and float sums of
# intervals (0.2 + 0.2 + 0.2 > 0.6) must not shift a 15 fps stream's cadence by a frame.
EARLY = 0.1


class Cadence:
    def __init__(self, fps: float) -> None:
        self.interval = 1.0 / fps
        self._next = float("-inf")
        self._last = float("-inf")

    def due(self, ts: float) -> bool:
        """Is the frame at ``ts`` (seconds, monotonic) to be analysed? Keeps the cadence while
        frames come on time, so a 6 fps camera still gives 5 a second; after a stall, or a
        clock that went back (a clip starting again), it starts afresh from this frame."""
        fresh = ts < self._last
        if not fresh and ts < self._next - EARLY * self.interval:
            return False
        nxt = self._next + self.interval
        self._next = nxt if not fresh and nxt > ts else ts + self.interval
        self._last = ts
        return True
