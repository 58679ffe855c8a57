"""What the web face shows, kept as the camera loops produce it, without ever making them wait.

:class:`LiveHub` stands between the camera loops and the MQTT publisher (it is their sink and
passes everything on unchanged) and is their viewer. It keeps each camera's latest state, the
faces in view, a few minutes of the emotion mix, recent events and, only when snapshots are on,
a reference to the latest frame. Server-Sent Events subscribers get each event through their
own bounded queue; one that does not keep up loses events (counted), the camera never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edgeemo.camera_loop import Sink

HISTORY_EVERY_S = 5.0  # one emotion-mix sample per camera this often...
HISTORY_SAMPLES = 120  # ...for the last 10 minutes
RECENT_EVENTS = 50
SUBSCRIBER_QUEUE = 256


@dataclass
class CameraView:
    online: bool = False
    state: dict | None = None
    faces: list[dict] = field(default_factory=list)
    faces_at: float | None = None  # wall clock of the frame the faces are from
    frame_size: tuple[int, int] | None = None  # (width, height)
    frame: np.ndarray | None = None  # only with snapshots on
    frame_seq: int = 0  # changes with each frame (the snapshot's encoding cache key)
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY_SAMPLES))
    newest: dict | None = None  # the latest state's sample, when too soon after the last kept
    events: dict[str, int] = field(default_factory=dict)  # event type → count (for /metrics)


@dataclass
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    lost: int = 0


class LiveHub:
    def __init__(self, inner: Sink, cameras: list[str], keep_frames: bool) -> None:
        self.inner = inner
        self.keep_frames = keep_frames
        self.cameras = {name: CameraView() for name in cameras}
        self.recent: deque[dict] = deque(maxlen=RECENT_EVENTS)
        self._lock = threading.Lock()
        self._subs: list[_Subscriber] = []
        self._seq = itertools.count(1)

    # -- the camera loops' sink: pass on first, then keep what the pages need ------------------
    def event(self, camera: str, event: dict) -> None:
        seq = self.inner.event(camera, event)
        # The MQTT event's own seq where the sink gives one (the publisher's outbox does).
        item = {**event, "seq": seq if isinstance(seq, int) else next(self._seq)}
        with self._lock:
            view = self.cameras.setdefault(camera, CameraView())
            kind = str(event.get("event_type"))
            view.events[kind] = view.events.get(kind, 0) + 1
            self.recent.append(item)
            subs = list(self._subs)
        for s in subs:
            # RuntimeError: that client's loop has closed; it unsubscribes itself.
            with contextlib.suppress(RuntimeError):
                s.loop.call_soon_threadsafe(self._offer, s, item)

    def state(self, camera: str, state: dict) -> None:
        self.inner.state(camera, state)
        now = time.time()
        with self._lock:
            view = self.cameras.setdefault(camera, CameraView())
            view.state = state
            # States come on change and on a heartbeat, and each holds until the next. Samples
            # kept are at least HISTORY_EVERY_S apart; the newest state is shown after them.
            sample = {"ts": round(now, 1), "faces": state.get("faces", 0), "mix": state.get("distribution")}
            if not view.history or now - view.history[-1]["ts"] >= HISTORY_EVERY_S:
                view.history.append(sample)
                view.newest = None
            else:
                view.newest = sample

    def camera_status(self, camera: str, online: bool) -> None:
        self.inner.camera_status(camera, online)
        with self._lock:
            view = self.cameras.setdefault(camera, CameraView())
            view.online = online
            if not online:
                view.faces, view.frame = [], None

    # -- the camera loops' viewer -----------------------------------------------------------
    def frame(self, camera: str, image: np.ndarray, faces: list[dict]) -> None:
        view = self.cameras.get(camera)
        if view is None:
            return
        h, w = image.shape[:2]
        # Plain reference swaps (atomic under the GIL): the sources hand out a new array per
        # frame, so keeping the reference costs no copy; without snapshots no frame is kept.
        view.faces, view.faces_at, view.frame_size = faces, time.time(), (w, h)
        if self.keep_frames:
            view.frame = image
            view.frame_seq += 1

    # -- for the HTTP side ------------------------------------------------------------------
    def snapshot(self, camera: str) -> tuple[np.ndarray | None, list[dict], int]:
        view = self.cameras[camera]
        return view.frame, view.faces, view.frame_seq

    def camera_json(self, camera: str) -> dict:
        view = self.cameras[camera]
        with self._lock:
            history = list(view.history) + ([view.newest] if view.newest else [])
            state = view.state
        return {
            "online": view.online,
            "state": state,
            "faces": view.faces,
            "faces_at": view.faces_at,
            "frame_size": list(view.frame_size) if view.frame_size else None,
            "snapshot": self.keep_frames and view.frame is not None,
            "history": history,
        }

    def recent_events(self, camera: str | None = None) -> list[dict]:
        with self._lock:
            return [e for e in self.recent if camera is None or e.get("camera") == camera]

    def event_counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: dict(v.events) for name, v in self.cameras.items()}

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(SUBSCRIBER_QUEUE))
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @staticmethod
    def _offer(sub: _Subscriber, item: dict) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:
            sub.lost += 1
