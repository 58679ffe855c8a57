"""The source interface and the reader thread that owns reconnects, pacing and the queue."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgeemo import cadence
from edgeemo.errors import SourceError

__all__ = [
    "END",
    "CameraReader",
    "EndOfStream",
    "Frame",
    "FrameQueue",
    "Source",
    "SourceError",
    "StatusChange",
    "frame_problem",
]

log = logging.getLogger(__name__)

CLIP_ENDED = "the clip ended"
MAX_PIXELS = 8192 * 8192  # larger than any camera; beyond this a frame is treated as corrupt


@dataclass
class Frame:
    camera: str
    ts: float  # time.monotonic() when read (tracking must not follow wall-clock steps)
    image: np.ndarray
    index: int


class Source(ABC):
    """One camera or clip. ``read`` returns a BGR (or gray) uint8 frame, or None at the end.

    File sources pace themselves at the clip's frame rate; live sources block in ``read``.
    """

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next BGR frame, a new array each call that nobody writes to afterwards (frames
        are handed on without copying)."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """For logs: never contains credentials."""


def frame_problem(img: object) -> str | None:
    """Why a decoded frame cannot be used, or None if it can."""
    if not isinstance(img, np.ndarray):
        return f"not an image ({type(img).__name__})"
    if img.dtype != np.uint8:
        return f"pixel type {img.dtype}, expected uint8"
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        return f"shape {img.shape}, expected HxW or HxWx3"
    if img.shape[0] < 8 or img.shape[1] < 8:
        return f"frame too small ({img.shape[1]}x{img.shape[0]})"
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        return f"frame too large ({img.shape[1]}x{img.shape[0]})"
    return None


@dataclass(frozen=True)
class StatusChange:
    """The camera went online or offline. It travels through the queue in order with the
    frames, so the consumer ends the visits a lost camera had before it says ``offline``
    (Home Assistant drops events of an entity that is already unavailable)."""

    online: bool
    why: str = ""


class FrameQueue:
    """Bounded queue: real time wins over completeness, the oldest frame is dropped.

    Status changes are queued too and never dropped (they are few: one per transition).
    The producer ``close``s it when its source has ended for good; the consumer then gets
    what is left and after that :data:`END`, so it never needs to ask the producer."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self._q: deque[Frame | StatusChange] = deque()
        self._frames = 0  # frames in _q (the bound applies to them only)
        self._cv = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cv:
            if self._frames >= self.depth:
                oldest = next(i for i, item in enumerate(self._q) if isinstance(item, Frame))
                del self._q[oldest]
                self._frames -= 1
                self.dropped += 1
            self._q.append(frame)
            self._frames += 1
            self._cv.notify()

    def put_status(self, change: StatusChange) -> None:
        with self._cv:
            self._q.append(change)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def get(self, timeout: float) -> Frame | StatusChange | EndOfStream | None:
        """The oldest item; None when none came within ``timeout``; END once closed and empty."""
        with self._cv:
            if not self._q and not self._closed:
                self._cv.wait(timeout)
            if self._q:
                item = self._q.popleft()
                if isinstance(item, Frame):
                    self._frames -= 1
                return item
            return END if self._closed else None


class EndOfStream:
    """The marker a closed, drained FrameQueue returns."""


END = EndOfStream()


class CameraReader(threading.Thread):
    """Reads a source into a FrameQueue at most ``fps`` times a second, reconnecting forever.

    Online/offline changes go into the queue as :class:`StatusChange`; the camera loop
    publishes them after what the frames before them caused."""

    def __init__(
        self,
        name: str,
        source: Source,
        fps: float,
        queue: FrameQueue,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        super().__init__(name=f"reader-{name}", daemon=True)
        self.camera = name
        self.source = source
        self.pace = cadence.Cadence(fps)  # detect_fps, kept across reconnects
        self.queue = queue
        self.backoff = backoff
        self.stop_event = threading.Event()
        self.finished = threading.Event()
        self.online = False
        self.last_frame_at = 0.0  # monotonic
        self.frames_read = 0
        self.bad_frames = 0
        self._index = 0

    def _set_online(self, online: bool, why: str = "") -> None:
        if online != self.online:
            self.online = online
            if online:
                log.info("camera %s: online (%s)", self.camera, self.source.describe())
            elif self.stop_event.is_set():
                log.info("camera %s: stopped", self.camera)
            elif why == CLIP_ENDED:  # the end of a file is no fault
                log.info("camera %s: offline (%s)", self.camera, why)
            else:
                log.warning("camera %s: offline: %s", self.camera, why)
            self.queue.put_status(StatusChange(online, why))

    @property
    def dropped(self) -> int:
        """Frames dropped because analysis fell behind (the queue's oldest)."""
        return self.queue.dropped

    def mark_stalled(self, after_s: float) -> None:
        """Called by the supervisor: no frame for ``after_s`` seconds means offline (a live
        source can hang inside ``read``, so the reader cannot always tell by itself)."""
        if self.online and time.monotonic() - self.last_frame_at > after_s:
            self._set_online(False, f"no frame for {after_s:.0f} s; reconnecting")

    def run(self) -> None:
        delay = self.backoff[0]
        ended = False
        while not self.stop_event.is_set():
            try:
                self.source.open()
            except SourceError as e:
                self._set_online(False, str(e))
                log.warning("camera %s: %s; retrying in %.0f s", self.camera, e, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            try:
                if self._pump():
                    ended = True
                    break  # end of a finite clip
                delay = self.backoff[0]  # it worked for a while: start the backoff afresh
            except SourceError as e:
                self._set_online(False, str(e))
                log.warning("camera %s: %s; reconnecting in %.0f s", self.camera, e, delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, self.backoff[1])
            finally:
                self.source.close()
        self._set_online(False, CLIP_ENDED if ended else "stopped")
        self.finished.set()
        self.queue.close()

    def _pump(self) -> bool:
        """Read until stopped (False) or the clip ends (True)."""
        while not self.stop_event.is_set():
            img = self.source.read()
            if img is None:
                log.info("camera %s: end of %s", self.camera, self.source.describe())
                return True
            now = time.monotonic()
            problem = frame_problem(img)
            if problem:
                self.bad_frames += 1
                if self.bad_frames == 1 or self.bad_frames % 1000 == 0:  # a broken stream must not flood
                    log.warning(
                        "camera %s: skipped a bad frame: %s (%d so far; counted in stats)",
                        self.camera, problem, self.bad_frames,
                    )  # fmt: skip
                continue
            self.frames_read += 1
            self.last_frame_at = now
            self._set_online(True)
            if not self.pace.due(now):
                continue  # above detect_fps
            # now, monotonic (not wall: NTP steps), is the frame's time: the analyzer applies
            # the same rule to it and so analyses every frame handed over.
            self.queue.put(Frame(self.camera, now, img, self._index))
            self._index += 1
        return False
