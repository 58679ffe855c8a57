"""``GET /metrics``: Prometheus text from the official client library.

The camera loops keep plain counters (:mod:`edgeemo.health`); this collector reads them when
Prometheus scrapes, so the frame path never touches a metrics library or a lock of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from edgeemo import __version__
from edgeemo.health import MS_BUCKETS, Health, MsHistogram

if TYPE_CHECKING:
    from edgeemo.web.hub import LiveHub


def _hist(h: MsHistogram) -> tuple[list[tuple[str, float]], float]:
    """Our cumulative-by-bucket counts as Prometheus buckets (seconds, cumulative)."""
    out, running = [], 0
    for bound, n in zip([*MS_BUCKETS, float("inf")], h.counts, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else f"{bound / 1000:g}", running))
    return out, h.total_ms / 1000


class DaemonCollector(Collector):
    def __init__(self, health: Health, hub: LiveHub) -> None:
        self.health, self.hub = health, hub

    def collect(self) -> Iterator:  # type: ignore[override]
        info = GaugeMetricFamily("edgeemo_build_info", "edgeemo's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        cam = ["camera"]
        analysed = CounterMetricFamily("edgeemo_frames_analysed", "frames run through the models", labels=cam)
        skipped = CounterMetricFamily(
            "edgeemo_frames_skipped", "frames not analysed (nothing moved, faces still)", labels=cam
        )
        dropped = CounterMetricFamily(
            "edgeemo_frames_dropped", "frames dropped (analysis behind)", labels=cam
        )
        bad = CounterMetricFamily("edgeemo_frames_bad", "frames the source delivered broken", labels=cam)
        errors = CounterMetricFamily("edgeemo_frame_errors", "frames that failed in analysis", labels=cam)
        fps = GaugeMetricFamily("edgeemo_camera_fps", "frames handled per second, last 10 s", labels=cam)
        online = GaugeMetricFamily("edgeemo_camera_online", "1 while the camera delivers frames", labels=cam)
        faces = GaugeMetricFamily("edgeemo_faces_in_view", "faces in view now", labels=cam)
        det = HistogramMetricFamily("edgeemo_detect_seconds", "face detection time per frame", labels=cam)
        emo = HistogramMetricFamily("edgeemo_classify_seconds", "emotion model time per face", labels=cam)
        for c in self.health.cameras:
            h, name = c.loop.health, [c.name]
            analysed.add_metric(name, h.analysed)
            skipped.add_metric(name, h.skipped)
            dropped.add_metric(name, c.reader.dropped)
            bad.add_metric(name, c.reader.bad_frames)
            errors.add_metric(name, h.errors)
            fps.add_metric(name, round(h.fps(), 3))
            online.add_metric(name, 1 if c.reader.online else 0)
            view = self.hub.cameras.get(c.name)
            state = view.state if view else None
            faces.add_metric(name, (state or {}).get("faces", 0))
            det.add_metric(name, *_hist(h.detect_hist))
            emo.add_metric(name, *_hist(h.classify_hist))
        yield from (analysed, skipped, dropped, bad, errors, fps, online, faces, det, emo)
        events = CounterMetricFamily("edgeemo_events", "emotion events produced", labels=["camera", "type"])
        for name, counts in self.hub.event_counts().items():
            for kind, n in sorted(counts.items()):
                events.add_metric([name, kind], n)
        yield events
        p = self.health.publisher
        g, c = GaugeMetricFamily, CounterMetricFamily
        yield g("edgeemo_mqtt_connected", "1 while connected to the broker", value=int(p.is_connected()))
        yield c(
            "edgeemo_mqtt_reconnects", "broker connections after the first", value=getattr(p, "reconnects", 0)
        )
        yield c("edgeemo_events_delivered", "events acknowledged by the broker", value=p.delivered)
        yield g("edgeemo_events_undelivered", "events waiting in the outbox", value=p.outbox_pending())
        yield c(
            "edgeemo_events_dropped", "undelivered events dropped (outbox bounds)", value=p.outbox_dropped()
        )
        yield c("edgeemo_mqtt_messages_dropped", "messages paho's queue refused", value=p.dropped)


class Metrics:
    """The registry /metrics serves: the daemon's counters, process memory and CPU (the client
    library's process collector), and the web face's own request metrics."""

    def __init__(self, health: Health, hub: LiveHub) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(health, hub))
        ProcessCollector(registry=self.registry)
        self.predict_seconds = Histogram(
            "edgeemo_predict_seconds",
            "/predict time from request to answer",
            buckets=[b / 1000 for b in MS_BUCKETS],
            registry=self.registry,
        )
        self.requests = Counter(
            "edgeemo_predict_requests",
            "/predict answers by status (499: the client left)",
            ["code"],
            registry=self.registry,
        )
