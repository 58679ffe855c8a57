"""Health in one place: per-camera liveness, fps and inference times, the publisher's state,
and which loops are stuck. sd_notify (STATUS, WATCHDOG), the MQTT stats message and any future
``/health`` endpoint all read :class:`Health`; the loops only write their :class:`CameraHealth`.
"""

from __future__ import annotations

import bisect
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

STUCK_AFTER_S = 10  # a camera loop or the publisher silent this long counts as hung
# Inference-time histogram bounds (ms) for /metrics: from a Coral's fraction of a ms to a
# 4 MP full-frame pass on a Pi.
MS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)


@dataclass
class MsHistogram:
    """Cumulative counts since start (Prometheus histogram semantics) without importing a
    metrics library into the camera loops: /metrics reads these when scraped."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(MS_BUCKETS) + 1))  # last: +Inf
    total_ms: float = 0.0
    n: int = 0

    def observe(self, ms: float) -> None:
        self.counts[bisect.bisect_left(MS_BUCKETS, ms)] += 1
        self.total_ms += ms
        self.n += 1


@dataclass
class CameraHealth:
    """One camera loop's counters; written by that loop's thread only."""

    name: str
    frames: int = 0
    analysed: int = 0  # frames run through the models (its own counter: scrapes see it only rise)
    errors: int = 0  # frames that raised in analysis (skipped)
    skipped: int = 0  # frames not analysed (motion gate or steady faces)
    progress_at: float = field(default_factory=time.monotonic)  # the loop went round (watchdog)
    detect_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    classify_ms: deque[float] = field(default_factory=lambda: deque(maxlen=256))
    detect_hist: MsHistogram = field(default_factory=MsHistogram)
    classify_hist: MsHistogram = field(default_factory=MsHistogram)  # per face
    _done_at: deque[float] = field(default_factory=lambda: deque(maxlen=64))  # for fps

    def frame_done(self, analysed: bool, detect_ms: float | None, classify_ms: float | None) -> None:
        self.frames += 1
        self._done_at.append(time.monotonic())
        if analysed:
            self.analysed += 1
        else:
            self.skipped += 1
        if detect_ms is not None:
            self.detect_ms.append(detect_ms)
            self.detect_hist.observe(detect_ms)
        if classify_ms is not None:
            self.classify_ms.append(classify_ms)
            self.classify_hist.observe(classify_ms)

    def last_frame_age(self) -> float | None:
        """Seconds since the loop last finished a frame; None before the first."""
        return round(time.monotonic() - self._done_at[-1], 2) if self._done_at else None

    def fps(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._done_at if now - t <= 10.0]
        if len(recent) < 2:
            return 0.0
        span = recent[-1] - recent[0]
        # A loop that has stopped delivering: count the silence too, so the rate falls.
        if now - recent[-1] > max(1.0, 3 * span / (len(recent) - 1)):
            span = now - recent[0]
        return (len(recent) - 1) / max(span, 1e-6)


class Reader(Protocol):
    online: bool
    bad_frames: int

    @property
    def dropped(self) -> int: ...


class Loop(Protocol):
    health: CameraHealth

    def is_alive(self) -> bool: ...


class PublisherState(Protocol):
    progress_at: float
    dropped: int
    delivered: int

    def is_connected(self) -> bool: ...
    def outbox_pending(self) -> int: ...
    def outbox_dropped(self) -> int: ...
    def outbox_error(self) -> str | None: ...


@dataclass
class Watched:
    """A camera as health sees it: its reader (is frames coming?) and its loop."""

    name: str
    reader: Reader
    loop: Loop


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _runtimes(loop: Loop) -> dict[str, str] | None:
    """The camera's models' runtimes, where its loop has an analyzer (a real camera loop)."""
    models = getattr(getattr(loop, "analyzer", None), "models", None)
    return models.runtimes() if models is not None else None


class Health:
    def __init__(self, publisher: PublisherState) -> None:
        self.publisher = publisher
        self.cameras: list[Watched] = []
        self.started = time.monotonic()
        self.stuck_after_s: float = STUCK_AFTER_S

    def watch(self, name: str, reader: Reader, loop: Loop) -> None:
        self.cameras.append(Watched(name, reader, loop))

    def stats(self) -> dict:
        det = [v for c in self.cameras for v in c.loop.health.detect_ms]
        emo = [v for c in self.cameras for v in c.loop.health.classify_ms]
        p = self.publisher
        runtimes = {c.name: _runtimes(c.loop) for c in self.cameras}
        return {
            "ts": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self.started),
            "detector_ms": round(statistics.median(det), 2) if det else None,
            "emotion_ms": round(statistics.median(emo), 2) if emo else None,
            "rss_mb": rss_mb(),
            "mqtt_dropped": p.dropped,
            "events_delivered": p.delivered,
            "outbox_pending": p.outbox_pending(),
            "outbox_dropped": p.outbox_dropped(),
            "outbox_error": p.outbox_error(),  # why the state disk is not used (full?), or None
            # What the models run on: "cpu", "edgetpu", "onnx (TensorrtExecutionProvider)".
            "emotion_runtime": next((r["emotion"] for r in runtimes.values() if r), None),
            "cameras": {
                c.name: {
                    "online": c.reader.online,
                    "fps": round(c.loop.health.fps(), 2),
                    "frames": c.loop.health.frames,
                    "dropped_frames": c.reader.dropped,
                    "bad_frames": c.reader.bad_frames,
                    "errors": c.loop.health.errors,
                    "skipped_frames": c.loop.health.skipped,
                    "masked_faces": c.loop.analyzer.masked,  # found inside a mask, dropped
                    **({"detector_runtime": runtimes[c.name]["detector"]} if runtimes[c.name] else {}),
                }
                for c in self.cameras
            },
        }

    def summary(self) -> dict:
        """For ``GET /health``: ``status`` is "stuck" exactly when the daemon withholds its
        systemd watchdog ping (HTTP 503), "degraded" while a camera is offline or the broker
        is unreachable (events wait in the outbox), else "ok"."""
        stuck = self.stuck()
        cams = {
            c.name: {
                "online": c.reader.online,
                "fps": round(c.loop.health.fps(), 2),
                "last_frame_age_s": c.loop.health.last_frame_age(),
                "frames": c.loop.health.frames,
                "errors": c.loop.health.errors,
            }
            for c in self.cameras
        }
        connected = self.publisher.is_connected()
        degraded = not connected or not all(c["online"] for c in cams.values())
        return {
            "status": "stuck" if stuck else "degraded" if degraded else "ok",
            "stuck": stuck,
            "uptime_s": round(time.monotonic() - self.started),
            "mqtt": {"connected": connected},
            "undelivered_events": self.publisher.outbox_pending(),
            "cameras": cams,
        }

    def status_line(self) -> str:
        """systemd's STATUS=: fps per camera, or offline, and the broker."""
        parts = [
            f"{c.name} {c.loop.health.fps():.1f} fps" if c.reader.online else f"{c.name} offline"
            for c in self.cameras
        ]
        mqtt = "mqtt ok" if self.publisher.is_connected() else "mqtt down"
        return ", ".join([*parts, mqtt])

    def stuck(self) -> list[str]:
        """Loops that have made no progress lately (a hung inference, a deadlock): names."""
        now = time.monotonic()
        stuck = [
            f"camera {c.name}"
            for c in self.cameras
            if c.loop.is_alive() and now - c.loop.health.progress_at > self.stuck_after_s
        ]
        if now - self.publisher.progress_at > self.stuck_after_s:
            stuck.append("MQTT publisher")
        return stuck
