"""The daemon: builds every part from the config, runs the camera loops, stops cleanly."""

from __future__ import annotations

import logging
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgeemo import notify, secrets
from edgeemo.aggregator import CameraAggregator
from edgeemo.classifier import EmotionClassifier
from edgeemo.config import CameraConfig, Config
from edgeemo.detector import FaceDetector
from edgeemo.identity import device_id, device_name
from edgeemo.modelstore import ResolvedModel, default_models_dir, open_model, resolve
from edgeemo.motion import MotionGate
from edgeemo.mqtt.discovery import discovery_messages
from edgeemo.mqtt.publisher import Publisher
from edgeemo.mqtt.topics import Topics
from edgeemo.outbox import Outbox
from edgeemo.pipeline import CameraPipeline
from edgeemo.sources import CameraReader, FrameQueue, make_source
from edgeemo.tracker import IoUTracker

log = logging.getLogger(__name__)
STUCK_AFTER_S = 10  # a camera loop or the publisher silent this long counts as hung
STATUS_EVERY_S = 5.0


def default_state_dir() -> Path:
    env = os.environ.get("STATE_DIRECTORY")  # systemd StateDirectory=
    if env:
        return Path(env.split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgeemo"


@dataclass
class Camera:
    cfg: CameraConfig
    reader: CameraReader
    pipeline: CameraPipeline


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.models_dir = cfg.models_dir or default_models_dir()
        self.state_dir = cfg.state_dir or default_state_dir()
        self.stop_event = threading.Event()
        self.cameras: list[Camera] = []
        self.started = time.monotonic()
        # Everything that can fail on bad input is resolved here, before any camera opens.
        self.emotion_model = resolve(cfg.emotion.model, self.models_dir, "emotion", cfg.emotion.edgetpu_model)
        self.detector_models: dict[str, ResolvedModel] = {}
        for cam in cfg.cameras:
            d = cfg.detector_for(cam)
            self.detector_models[cam.name] = resolve(
                d.model, self.models_dir, "face_detection", d.edgetpu_model
            )
        self.sources = {cam.name: make_source(cam) for cam in cfg.cameras if cam.enabled}
        self.labels = list(self.emotion_model.manifest.labels or [])
        self.device_id = device_id(cfg, self.state_dir)
        self.device_name = device_name(cfg)
        self.topics = Topics(f"{cfg.mqtt.topic_prefix}/{self.device_id}")
        self.publisher = Publisher(
            cfg.mqtt,
            self.topics,
            cfg.mqtt.client_id or f"edgeemo-{self.device_id}",
            secrets.mqtt_password(),
            self._discovery,
            Outbox(self.state_dir / "outbox.sqlite3", cfg.outbox.max_events, cfg.outbox.max_age_s),
        )

    def _discovery(self) -> list[tuple[str, dict]]:
        return discovery_messages(
            self.cfg.mqtt.discovery_prefix,
            self.topics,
            self.device_id,
            self.device_name,
            [c.name for c in self.cfg.cameras if c.enabled],
            self.labels,
        )

    def _build_camera(self, cam: CameraConfig) -> Camera:
        inf = self.cfg.inference
        det_model = self.detector_models[cam.name]
        # Each camera loop owns its interpreters: TFLite interpreters are not thread-safe.
        detector = FaceDetector(
            open_model(det_model, inf, f"camera {cam.name} detector"),
            det_model.manifest,
            self.cfg.detector_for(cam),
        )
        classifier = EmotionClassifier(
            open_model(self.emotion_model, inf, f"camera {cam.name} emotion model"),
            self.emotion_model.manifest,
            self.cfg.emotion.crop_margin,
        )
        queue = FrameQueue(depth=2)
        reader = CameraReader(
            cam.name, self.sources[cam.name], cam.detect_fps, queue, self.publisher.camera_status
        )
        pipeline = CameraPipeline(
            cam,
            reader,
            queue,
            detector,
            classifier,
            IoUTracker(self.cfg.tracker),
            CameraAggregator(cam.name, self.labels, self.cfg.aggregator),
            self.publisher,
            self.cfg.mqtt.state_heartbeat_s,
            MotionGate(self.cfg.motion) if self.cfg.motion.enabled else None,
        )
        return Camera(cam, reader, pipeline)

    def stats(self) -> dict:
        det = [v for c in self.cameras for v in c.pipeline.detect_ms]
        emo = [v for c in self.cameras for v in c.pipeline.classify_ms]
        return {
            "ts": round(time.time(), 3),
            "uptime_s": round(time.monotonic() - self.started),
            "detector_ms": round(statistics.median(det), 2) if det else None,
            "emotion_ms": round(statistics.median(emo), 2) if emo else None,
            "rss_mb": rss_mb(),
            "mqtt_dropped": self.publisher.dropped,
            "events_delivered": self.publisher.delivered,
            "outbox_pending": self.publisher.outbox.count(),
            "outbox_dropped": self.publisher.outbox.dropped,
            "cameras": {
                c.cfg.name: {
                    "online": c.reader.online,
                    "fps": round(c.pipeline.fps(), 2),
                    "frames": c.pipeline.frames,
                    "dropped_frames": c.reader.queue.dropped,
                    "bad_frames": c.reader.bad_frames,
                    "errors": c.pipeline.errors,
                    "skipped_frames": c.pipeline.skipped,
                }
                for c in self.cameras
            },
        }

    def _status_line(self) -> str:
        parts = [
            f"{c.cfg.name} {c.pipeline.fps():.1f} fps" if c.reader.online else f"{c.cfg.name} offline"
            for c in self.cameras
        ]
        mqtt = "mqtt ok" if self.publisher.connected.is_set() else "mqtt down"
        return ", ".join([*parts, mqtt])

    def _stuck(self) -> list[str]:
        """Loops that have made no progress lately (a hung inference, a deadlock): names."""
        now = time.monotonic()
        stuck = [
            f"camera {c.cfg.name}"
            for c in self.cameras
            if c.pipeline.is_alive() and now - c.pipeline.progress_at > STUCK_AFTER_S
        ]
        if now - self.publisher.progress_at > STUCK_AFTER_S:
            stuck.append("MQTT publisher")
        return stuck

    def request_stop(self, *_: object) -> None:
        self.stop_event.set()

    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.cameras = [self._build_camera(c) for c in self.cfg.cameras if c.enabled]
        log.info(
            "device %s (%s): %d camera(s), topics under %s/, MQTT %s",
            self.device_id,
            self.device_name,
            len(self.cameras),
            self.topics.prefix,
            self.publisher.where,
        )
        self.publisher.start()
        if not self.publisher.wait_connected(5.0):
            log.warning(
                "MQTT broker %s not reachable yet; running anyway, events wait in the outbox",
                self.publisher.where,
            )
        for c in self.cameras:
            self.publisher.camera_status(c.cfg.name, False)
            c.reader.start()
            c.pipeline.start()
        notify.notify("READY=1\nSTATUS=" + self._status_line())
        wd = notify.watchdog_interval()
        next_stats = time.monotonic() + min(5.0, self.cfg.mqtt.stats_interval_s)
        next_wd = next_status = time.monotonic()
        reported: list[str] = []
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            if now >= next_status:
                notify.notify("STATUS=" + self._status_line())
                next_status = now + STATUS_EVERY_S
            if wd and now >= next_wd:
                stuck = self._stuck()
                if not stuck:
                    notify.notify("WATCHDOG=1")
                elif stuck != reported:
                    # No ping: systemd's watchdog restarts us, which is the cure for a hung loop.
                    log.error(
                        "%s made no progress for %d s; not pinging the watchdog, so systemd restarts edgeemo",
                        ", ".join(stuck), STUCK_AFTER_S,
                    )  # fmt: skip
                reported = stuck
                next_wd = now + wd
            if now >= next_stats:
                self.publisher.stats(self.stats())
                next_stats = now + self.cfg.mqtt.stats_interval_s
            if all(c.pipeline.finished() for c in self.cameras):
                log.info("all sources have ended; stopping")
                break
        return self.shutdown()

    def shutdown(self) -> int:
        notify.notify("STOPPING=1")
        for c in self.cameras:
            c.reader.stop_event.set()
            c.pipeline.stop_event.set()
        for c in self.cameras:
            c.pipeline.join(timeout=2.0)
            c.reader.join(timeout=2.0)
        self.publisher.stats(self.stats())
        self.publisher.stop()
        log.info("stopped")
        return 0
