"""One camera's thread: take frames off its queue, hand them to the analyzer, send the results.

Reading, reconnecting and pacing belong to the reader (:mod:`edgeemo.sources.base`); noticing
stalls to the supervisor (:mod:`edgeemo.daemon`); what a frame means to the analyzer
(:mod:`edgeemo.analyzer`). This loop only moves things between them and survives bad frames.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import numpy as np

from edgeemo.analyzer import FrameAnalyzer
from edgeemo.health import CameraHealth
from edgeemo.sources import END, FrameQueue, StatusChange

log = logging.getLogger(__name__)


def wall_clock(ts: float) -> float:
    """A pipeline time (monotonic: frames, tracks and durations use it, so a clock step by NTP
    cannot end or stretch a visit) as Unix time for the outside, as the wall clock says now."""
    return round(time.time() - (time.monotonic() - ts), 3)


class Sink(Protocol):
    """Where a camera's output goes (the MQTT publisher; a list in tests)."""

    def event(self, camera: str, event: dict) -> int | None: ...  # the event's seq, if it has one
    def state(self, camera: str, state: dict) -> None: ...
    def camera_status(self, camera: str, online: bool) -> None: ...


class Viewer(Protocol):
    """Who watches the frames as they are analysed (the web face's live view), or nobody.
    Called on the camera's thread: it must only store references, never wait."""

    def frame(self, camera: str, image: np.ndarray, faces: list[dict]) -> None: ...


class CameraLoop(threading.Thread):
    def __init__(
        self,
        analyzer: FrameAnalyzer,
        queue: FrameQueue,
        sink: Sink,
        heartbeat_s: float,
        viewer: Viewer | None = None,
    ) -> None:
        super().__init__(name=f"camera-{analyzer.camera}", daemon=True)
        self.camera = analyzer.camera
        self.analyzer = analyzer
        self.queue = queue
        self.sink = sink
        self.heartbeat_s = heartbeat_s
        self.viewer = viewer
        self.health = CameraHealth(analyzer.camera)
        self.stop_event = threading.Event()
        self._last_state = 0.0
        self._lost = False  # visits ended and offline said since the last frame

    def finished(self) -> bool:
        return self.ident is not None and not self.is_alive()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.health.progress_at = time.monotonic()
            frame = self.queue.get(timeout=0.5)
            if frame is END:
                self._camera_lost()
                return
            if isinstance(frame, StatusChange):
                if frame.online:
                    self.sink.camera_status(self.camera, True)
                else:
                    self._camera_lost()
                continue
            if frame is None:
                self._emit(self.analyzer.idle(time.monotonic()))
                self._publish_state(time.monotonic())
                continue
            self._lost = False
            try:
                self.handle(frame.image, frame.ts)
            except Exception as e:  # one bad frame must not kill the camera
                self.health.errors += 1
                errors = self.health.errors
                if errors == 1:  # the first in full; then a count, never a traceback per frame
                    log.exception(
                        "camera %s: frame %d could not be processed (skipped)", self.camera, frame.index
                    )
                elif errors % 100 == 0:
                    log.error(
                        "camera %s: %d frames could not be processed so far (last: %s)",
                        self.camera,
                        errors,
                        e,
                    )
        # Stopped before the reader could say so (its source hung in read()): same ending.
        self._camera_lost()

    def _camera_lost(self) -> None:
        """The camera stopped (dropped, ended, or edgeemo is stopping): end every visit, send
        face_left and a faces-0 state, and only then offline. In the other order Home
        Assistant's event entity (available only while the camera is) drops the face_left."""
        if self._lost:
            return
        self._lost = True
        now = time.monotonic()  # pipeline time; wall_clock() converts as events leave
        self._emit(self.analyzer.end(now))
        self._publish_state(now, force=True)
        self.sink.camera_status(self.camera, False)

    def handle(self, image: np.ndarray, ts: float) -> list[dict]:
        """One frame through the analyzer, its events and state out, counted."""
        a = self.analyzer.process(image, ts, paced=True)  # the reader applied detect_fps
        self._emit(a.events)
        self._publish_state(ts)
        self.health.frame_done(a.analysed, a.detect_ms, a.classify_ms)
        if self.viewer is not None:
            self.viewer.frame(self.camera, image, self.analyzer.faces_now())
        return a.events

    def _emit(self, events: list[dict]) -> None:
        for ev in events:
            log.info(
                "camera %s: %s track %d %s (%.2f)",
                self.camera,
                ev["event_type"],
                ev["track_id"],
                ev["emotion"],
                ev["confidence"],
            )
            self.sink.event(self.camera, {**ev, "ts": wall_clock(ev["ts"])})

    def _publish_state(self, ts: float, force: bool = False) -> None:
        now = time.monotonic()
        if self.analyzer.state_changed() or force or now - self._last_state >= self.heartbeat_s:
            self._last_state = now
            state = self.analyzer.state(ts)
            self.sink.state(self.camera, {**state, "ts": wall_clock(state["ts"])})
