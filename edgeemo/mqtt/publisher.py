"""Non-blocking MQTT publisher on paho-mqtt 2.x.

paho's network thread does the I/O; callers only enqueue. Events go out at QoS 1 and are
queued by paho while the broker is away (bounded by ``max_queued_messages``); retained
availability, camera status and states are re-published on every (re)connect, and
discovery again whenever Home Assistant announces ``online`` on its status topic.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo.config import MQTTConfig
from edgeemo.mqtt.topics import Topics

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self,
        cfg: MQTTConfig,
        topics: Topics,
        client_id: str,
        password: str | None,
        discovery: Callable[[], list[tuple[str, dict]]],
    ) -> None:
        self.cfg = cfg
        self.topics = topics
        self._discovery = discovery
        self._retained: dict[str, str] = {}  # topic → last payload, replayed on reconnect
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.dropped = 0  # messages paho refused (queue full)
        self._auth_warned = False
        self._stopping = False
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            reconnect_on_failure=True,
        )
        c.max_queued_messages_set(cfg.max_queued_messages)
        c.reconnect_delay_set(1, 30)
        if cfg.username:
            c.username_pw_set(cfg.username, password)
        if cfg.tls:
            c.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.certfile) if cfg.tls.certfile else None,
                keyfile=str(cfg.tls.keyfile) if cfg.tls.keyfile else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            c.tls_insecure_set(cfg.tls.insecure)
        # A crash or network loss publishes offline for us; a clean stop does it itself.
        c.will_set(topics.availability, "offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.effective_port}"

    def start(self) -> None:
        self._client.connect_async(self.cfg.host, self.cfg.effective_port, self.cfg.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Say offline (a clean disconnect never fires the last will), then disconnect."""
        self._stopping = True
        if self.connected.is_set():
            info = self._client.publish(self.topics.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    # --- callbacks (paho's thread) ----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            if "authori" in str(reason).lower() or "password" in str(reason).lower():
                if not self._auth_warned:
                    log.error(
                        "MQTT broker %s refused the credentials (%s) for user %r: check "
                        "mqtt.username and EDGEEMO_MQTT_PASSWORD / credential mqtt_password",
                        self.where,
                        reason,
                        self.cfg.username,
                    )
                    self._auth_warned = True
            else:
                log.warning("MQTT broker %s refused the connection: %s", self.where, reason)
            return
        log.info("MQTT connected to %s", self.where)
        self._auth_warned = False
        client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        self._republish()
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning(
                "MQTT connection to %s lost (%s); reconnecting, events are queued", self.where, reason
            )
        self.connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload == b"online":
            log.info("Home Assistant came online: re-sending discovery and states")
            self._republish()

    def _republish(self) -> None:
        """Discovery, then the last retained states and camera statuses (broker may have lost them)."""
        if self.cfg.discovery:
            for topic, payload in self._discovery():
                self._client.publish(topic, json.dumps(payload), qos=1, retain=True)
        with self._lock:
            replay = list(self._retained.items())
        for topic, payload in replay:
            self._client.publish(topic, payload, qos=1, retain=True)

    # --- API for the pipeline (any thread, never blocks) ------------------------------------

    def _send(self, topic: str, payload: str, retain: bool, qos: int = 1) -> None:
        if retain:
            with self._lock:
                self._retained[topic] = payload
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "MQTT queue full (%d messages): dropped %d so far",
                    self.cfg.max_queued_messages,
                    self.dropped,
                )

    def event(self, camera: str, event: dict) -> None:
        self._send(self.topics.event(camera), json.dumps(event), retain=False)

    def state(self, camera: str, state: dict) -> None:
        self._send(self.topics.state(camera), json.dumps(state), retain=True)

    def camera_status(self, camera: str, online: bool) -> None:
        self._send(self.topics.status(camera), "online" if online else "offline", retain=True)

    def stats(self, stats: dict) -> None:
        self._send(self.topics.stats, json.dumps(stats), retain=False, qos=0)
