"""The daemon: builds every part from the config, supervises the camera loops, stops cleanly."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeemo import credentials, memory, notify, preflight
from edgeemo.analyzer import FaceModels, FrameAnalyzer, open_classifier, open_detector, resolve_detector
from edgeemo.camera_loop import CameraLoop, Sink
from edgeemo.config import CameraConfig, Config
from edgeemo.health import Health
from edgeemo.identity import device_id, device_name
from edgeemo.modelstore import ResolvedModel, default_models_dir
from edgeemo.mqtt.discovery import PublishedConfigs, discovery_messages
from edgeemo.mqtt.publisher import Publisher
from edgeemo.mqtt.topics import Topics
from edgeemo.outbox import Outbox
from edgeemo.sources import CameraReader, FrameQueue

if TYPE_CHECKING:
    from edgeemo.web.hub import LiveHub
    from edgeemo.web.server import WebServer

log = logging.getLogger(__name__)
STATUS_EVERY_S = 5.0
STOP_GRACE_S = 2.5  # on stop, how long readers get to end by themselves (systemd waits 90 s)


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
    loop: CameraLoop


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.models_dir = cfg.models_dir or default_models_dir()
        self.state_dir = cfg.state_dir or default_state_dir()
        self.stop_event = threading.Event()
        self.cameras: list[Camera] = []
        # Everything that can fail on bad input is checked here, before any camera opens, by
        # the same code as `edgeemo check-config`.
        checked = preflight.check(cfg, self.models_dir)
        assert checked.emotion_model is not None
        self.emotion_model: ResolvedModel = checked.emotion_model
        self.detector_models: dict[str, ResolvedModel] = checked.detector_models
        self.sources = checked.sources
        self.labels = list(self.emotion_model.manifest.labels or [])
        self.device_id = device_id(cfg, self.state_dir)
        self.device_name = device_name(cfg)
        self.topics = Topics(f"{cfg.mqtt.topic_prefix}/{self.device_id}")
        self.publisher = Publisher(
            cfg.mqtt,
            self.topics,
            cfg.mqtt.client_id or f"edgeemo-{self.device_id}",
            credentials.mqtt_password(),
            self._discovery,
            Outbox(self.state_dir / "outbox.sqlite3", cfg.outbox.max_events, cfg.outbox.max_age_s),
        )
        self.health = Health(self.publisher)
        self.sink: Sink = self.publisher
        self.hub: LiveHub | None = None  # the web face's, when http is on
        self.web: WebServer | None = None
        self.published_configs = PublishedConfigs(self.state_dir / "discovery-published.json")

    def _discovery(self) -> list[tuple[str, dict | None]]:
        msgs = (
            discovery_messages(
                self.cfg.mqtt.discovery_prefix,
                self.topics,
                self.device_id,
                self.device_name,
                [c.name for c in self.cfg.cameras if c.enabled],
                self.labels,
            )
            if self.cfg.mqtt.discovery
            else []
        )
        # Plus removals of what an earlier run published and this one does not (ghost entities).
        return self.published_configs.with_removals(msgs)

    def _open_models(self) -> dict[str, FaceModels]:
        """Each model opened once per process and shared by the cameras that use it (one
        emotion model; one detector per distinct detector setting). A model serialises its
        own calls (a lock), which is also what a single Edge TPU needs; opening per camera
        cost ~40 MiB a camera."""
        enabled = [c for c in self.cfg.cameras if c.enabled]
        groups: dict[str, list[CameraConfig]] = {}
        for cam in enabled:
            groups.setdefault(self.cfg.detector_for(cam).model_dump_json(), []).append(cam)

        def who(cams: list[CameraConfig]) -> str:
            names = ", ".join(c.name for c in cams)
            return f"camera {names}" if len(cams) == 1 else f"cameras {names}"

        inf = self.cfg.inference
        classifier = open_classifier(self.emotion_model, self.cfg.emotion, inf, who(enabled))
        out: dict[str, FaceModels] = {}
        for cams in groups.values():
            first = cams[0]
            detector = open_detector(
                self.detector_models[first.name], self.cfg.detector_for(first), inf, who(cams)
            )
            out.update({c.name: FaceModels(detector, classifier) for c in cams})
        return out

    def _build_camera(self, cam: CameraConfig, models: FaceModels) -> Camera:
        # One frame waits, not two: while a camera waits for the shared detector the newest frame
        # is the one worth analysing, and 4 cameras' peak RSS fell 145 -> 141 MiB (scripts/soak.py).
        queue = FrameQueue(depth=1)
        # The reader's online/offline changes reach MQTT through the queue and the loop (in order).
        reader = CameraReader(cam.name, self.sources[cam.name], cam.detect_fps, queue)
        loop = CameraLoop(
            FrameAnalyzer(cam.name, models, self.cfg),
            queue,
            self.sink,
            self.cfg.mqtt.state_heartbeat_s,
            self.hub,
        )
        self.health.watch(cam.name, reader, loop)
        return Camera(cam, reader, loop)

    def stats(self) -> dict:
        return self.health.stats()

    def _start_web(self, models: dict[str, FaceModels]) -> None:
        """The web face: its socket is bound here, before any camera opens, so a taken port
        stops the daemon early; the server starts serving only once the cameras exist."""
        from edgeemo.web import check_access
        from edgeemo.web.hub import LiveHub
        from edgeemo.web.server import WebContext, WebServer

        token = check_access(self.cfg.http)
        names = [c.name for c in self.cfg.cameras if c.enabled]
        self.hub = LiveHub(self.publisher, names, self.cfg.http.snapshots)
        self.sink = self.hub
        predict = self._predict_models(models)
        self.web = WebServer(WebContext(self.cfg.http, self.health, self.hub, predict, token))

    def _predict_models(self, models: dict[str, FaceModels]) -> FaceModels:
        """/predict reads still images with the top-level detector setting, on the models the
        cameras already share; only if every camera overrides the detector is one more opened."""
        key = self.cfg.detector.model_dump_json()
        for cam in self.cfg.cameras:
            if cam.enabled and self.cfg.detector_for(cam).model_dump_json() == key:
                return models[cam.name]
        detector = open_detector(
            resolve_detector(self.cfg.detector, self.models_dir), self.cfg.detector, self.cfg.inference, "web"
        )
        return FaceModels(detector, next(iter(models.values())).classifier)

    def request_stop(self, *_: object) -> None:
        self.stop_event.set()

    def run(self, install_signals: bool = True) -> int:
        if install_signals:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        memory.tune_malloc()  # before any camera thread allocates
        models = self._open_models()
        if self.cfg.http.enabled:
            self._start_web(models)
        self.cameras = [self._build_camera(c, models[c.name]) for c in self.cfg.cameras if c.enabled]
        if self.web is not None:
            self.web.start()  # up while the broker is still being tried
        log.info(
            "device %s (%s): %d camera(s), topics under %s/, MQTT %s",
            self.device_id,
            self.device_name,
            len(self.cameras),
            self.topics.prefix,
            self.publisher.broker,
        )
        self.publisher.start()
        if not self.publisher.wait_connected(5.0):
            log.warning(
                "MQTT broker %s: not connected yet (%s); running anyway, events wait in the outbox",
                self.publisher.broker,
                self.publisher.last_error or "no answer",
            )
        for c in self.cameras:
            self.sink.camera_status(c.cfg.name, False)
            c.reader.start()
            c.loop.start()
        notify.notify("READY=1\nSTATUS=" + self.health.status_line())
        wd = notify.watchdog_interval()
        next_stats = time.monotonic() + min(5.0, self.cfg.mqtt.stats_interval_s)
        next_wd = next_status = time.monotonic()
        reported: list[str] = []
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            for c in self.cameras:
                # A live source can hang inside read(): the reader cannot always see its own stall.
                c.reader.mark_stalled(c.cfg.offline_after_s)
            if now >= next_status:
                notify.notify("STATUS=" + self.health.status_line())
                next_status = now + STATUS_EVERY_S
            if wd and now >= next_wd:
                stuck = self.health.stuck()
                if not stuck:
                    notify.notify("WATCHDOG=1")
                elif stuck != reported:
                    # No ping: systemd's watchdog restarts us, which is the cure for a hung loop.
                    log.error(
                        "%s made no progress for %d s; not pinging the watchdog, so systemd restarts edgeemo",
                        ", ".join(stuck), self.health.stuck_after_s,
                    )  # fmt: skip
                reported = stuck
                next_wd = now + wd
            if now >= next_stats:
                self.publisher.stats(self.stats())
                next_stats = now + self.cfg.mqtt.stats_interval_s
            if all(c.loop.finished() for c in self.cameras):
                log.info("all sources have ended; stopping")
                break
        return self.shutdown()

    def shutdown(self) -> int:
        notify.notify("STOPPING=1")
        # Readers first: each says offline and closes its queue, and its loop ends the visits
        # (face_left, faces 0) before passing the offline on. Only a loop whose reader hangs
        # in read() is told to stop; it ends its visits the same way. Then the publisher
        # flushes, so all of it reaches the broker before "offline".
        for c in self.cameras:
            c.reader.stop_event.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for c in self.cameras:
            c.loop.join(timeout=max(0.0, deadline - time.monotonic()))
        for c in self.cameras:
            if c.loop.is_alive():
                c.loop.stop_event.set()
                c.loop.join(timeout=2.0)
        for c in self.cameras:
            c.reader.join(timeout=0.5)
        if self.web is not None:
            self.web.stop()
        self.publisher.stats(self.stats())
        self.publisher.stop()
        log.info("stopped")
        return 0
