"""One camera's loop: queue → detect → classify (batched) → track → aggregate → publish."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import cv2
import numpy as np

from edgeemo.aggregator import CameraAggregator, Observation
from edgeemo.classifier import EmotionClassifier
from edgeemo.config import CameraConfig
from edgeemo.detector import FaceDetector
from edgeemo.motion import MotionGate
from edgeemo.sources import CameraReader, FrameQueue
from edgeemo.tracker import IoUTracker

log = logging.getLogger(__name__)


class Sink:
    """Where a pipeline's output goes (the MQTT publisher, or a null sink in benchmarks)."""

    def event(self, camera: str, event: dict) -> None: ...
    def state(self, camera: str, state: dict) -> None: ...
    def camera_status(self, camera: str, online: bool) -> None: ...


class CameraPipeline(threading.Thread):
    def __init__(
        self,
        cam: CameraConfig,
        reader: CameraReader,
        queue: FrameQueue,
        detector: FaceDetector,
        classifier: EmotionClassifier,
        tracker: IoUTracker,
        aggregator: CameraAggregator,
        sink: Sink,
        heartbeat_s: float,
        gate: MotionGate | None = None,
    ) -> None:
        super().__init__(name=f"pipeline-{cam.name}", daemon=True)
        self.cam = cam
        self.reader = reader
        self.queue = queue
        self.detector = detector
        self.classifier = classifier
        self.tracker = tracker
        self.aggregator = aggregator
        self.sink = sink
        self.gate = gate
        self.skipped = 0  # frames not analysed (motion gate or steady faces)
        self._since_analysis = 0
        self._last_obs: list[Observation] = []  # the last analysis, standing for skipped frames
        self.heartbeat_s = heartbeat_s
        self.stop_event = threading.Event()
        self.progress_at = time.monotonic()  # for the watchdog: this loop is alive
        self.frames = 0
        self.errors = 0
        self._times: deque[float] = deque(maxlen=64)  # frame completion times, for fps
        self.detect_ms: deque[float] = deque(maxlen=256)
        self.classify_ms: deque[float] = deque(maxlen=256)
        self._last_state = 0.0

    def finished(self) -> bool:
        return self.ident is not None and not self.is_alive()

    def fps(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._times if now - t <= 10.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.progress_at = time.monotonic()
            frame = self.queue.get(timeout=0.5)
            if frame is None:
                self.reader.mark_stalled(self.cam.offline_after_s)
                if self.reader.finished.is_set():
                    self._emit(self.aggregator.update(time.time(), [], self.tracker.end_all()))
                    self._publish_state(time.time(), force=True)
                    return
                # No frames (camera offline or stalled): faces age out on the clock, so nobody
                # stays "in view" of a camera that cannot see.
                _, ended = self.tracker.update(time.time(), [])
                self._emit(self.aggregator.update(time.time(), [], ended))
                self._publish_state(time.time())
                continue
            try:
                self.process(frame.image, frame.ts)
            except Exception as e:  # one bad frame must not kill the camera
                self.errors += 1
                if self.errors == 1:  # the first in full; then a count, never a traceback per frame
                    log.exception(
                        "camera %s: frame %d could not be processed (skipped)", self.cam.name, frame.index
                    )
                elif self.errors % 100 == 0:
                    log.error(
                        "camera %s: %d frames could not be processed so far (last: %s)",
                        self.cam.name,
                        self.errors,
                        e,
                    )

    def process(self, image: np.ndarray, ts: float) -> list[dict]:
        t0 = time.perf_counter()
        if image.ndim == 2 or image.shape[2] == 1:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        tracks = self.tracker.tracks
        steady_skip = self._since_analysis + 1 < self.tracker.cfg.steady_every and self.tracker.all_steady()
        if steady_skip or (
            self.gate is not None
            # A new face must be seen again to be confirmed; analyse until it is.
            and all(t.confirmed for t in tracks)
            and self.gate.static(image, ts, {t.id: t.box for t in tracks})
        ):
            # Nothing changed (the gate), or every face is known and still: the last analysis
            # stands for this frame, so its faces count as seen and their observations again,
            # and a face it missed goes on ageing out.
            self._since_analysis += 1
            self.skipped += 1
            held = [ob for ob in self._last_obs if ob.track in tracks]  # faces the last analysis saw
            ended = self.tracker.hold(ts, [ob.track for ob in held])
            return self._finish(ts, self.aggregator.update(ts, held, ended))
        self._since_analysis = 0
        dets = self.detector.detect(image)
        t1 = time.perf_counter()
        matched, ended = self.tracker.update(ts, dets)
        probs = self.classifier.classify(image, [dets[i].box for _, i in matched])
        t2 = time.perf_counter()
        obs = [Observation(t, probs[k], dets[i].score, dets[i].size) for k, (t, i) in enumerate(matched)]
        self._last_obs = obs
        if self.gate is not None:
            self.gate.analysed(
                image, ts, {t.id: t.box for t in self.tracker.tracks}, {t.id for t, _ in matched}
            )
        self.detect_ms.append((t1 - t0) * 1000)
        if matched:
            self.classify_ms.append((t2 - t1) * 1000 / len(matched))
        return self._finish(ts, self.aggregator.update(ts, obs, ended))

    def _finish(self, ts: float, events: list[dict]) -> list[dict]:
        """Every frame, analysed or skipped: events and state out, counted for fps."""
        self._emit(events)
        self._publish_state(ts)
        self.frames += 1
        self._times.append(time.monotonic())
        return events

    def _emit(self, events: list[dict]) -> None:
        for ev in events:
            log.info(
                "camera %s: %s track %d %s (%.2f)",
                self.cam.name,
                ev["event_type"],
                ev["track_id"],
                ev["emotion"],
                ev["confidence"],
            )
            self.sink.event(self.cam.name, ev)

    def _publish_state(self, ts: float, force: bool = False) -> None:
        now = time.monotonic()
        if self.aggregator.state_changed() or force or now - self._last_state >= self.heartbeat_s:
            self._last_state = now
            self.sink.state(self.cam.name, self.aggregator.state(ts))
