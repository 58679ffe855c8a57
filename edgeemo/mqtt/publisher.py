"""Non-blocking MQTT publisher on paho-mqtt 2.x.

paho's network thread does the I/O; callers only enqueue. Events go through the durable
outbox: a delivery thread hands them to paho in ``seq`` order, a bounded window at a time,
and deletes each from the outbox when its PUBACK arrives; paho itself re-sends what is in
flight after a reconnect. Retained availability, camera status and states are re-published
on every (re)connect, and discovery again whenever Home Assistant announces ``online``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo.config import MQTTConfig
from edgeemo.mqtt.topics import Topics
from edgeemo.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)
IN_FLIGHT = 50  # events handed to paho and not yet acknowledged; the rest wait on disk
STALE_S = 60  # while connected, an event unacknowledged this long is sent again
HANDOVER_WAIT_S = 2.0  # a camera's offline waits at most this long for its events to go first


class Publisher:
    def __init__(
        self,
        cfg: MQTTConfig,
        topics: Topics,
        client_id: str,
        password: str | None,
        discovery: Callable[[], list[tuple[str, dict | None]]],
        outbox: Outbox,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        # Only the delivery thread touches _in_flight; paho's thread only appends acked mids.
        # (paho calls on_publish holding its own message lock, so taking a lock of ours there
        # while another thread publishes would deadlock.)
        self._in_flight: dict[int, tuple[int, float]] = {}  # paho mid → (outbox seq, handed at)
        self._acked_mids: deque[int] = deque()
        self._last_handed = 0  # highest seq handed to paho by this process
        self._last_added = 0  # highest seq this process stored (camera_status waits for it)
        self._wake = threading.Event()
        self._deliverer = threading.Thread(target=self._deliver_loop, name="mqtt-outbox", daemon=True)
        self.delivered = 0
        self.progress_at = 0.0  # monotonic time the delivery loop last went round (watchdog)
        self._connected_at = 0.0
        self.topics = topics
        self._discovery = discovery
        self._retained: dict[str, str] = {}  # topic → last payload, replayed on reconnect
        self._last_stats: str | None = None  # re-sent when Home Assistant comes online
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
        c.on_publish = self._on_publish
        self._client = c

    @property
    def broker(self) -> str:
        """host:port, for logs."""
        return f"{self.cfg.host}:{self.cfg.effective_port}"

    def is_connected(self) -> bool:
        return self.connected.is_set()

    def outbox_pending(self) -> int:
        return self.outbox.count()

    def outbox_dropped(self) -> int:
        return self.outbox.dropped

    def start(self) -> None:
        self._client.connect_async(self.cfg.host, self.cfg.effective_port, self.cfg.keepalive_s)
        self._client.loop_start()
        self._deliverer.start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Flush what the broker will take quickly, say offline, disconnect. The rest stays on disk."""
        deadline = time.monotonic() + timeout
        while self.connected.is_set() and self.outbox.count() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stopping = True
        self._wake.set()
        if self._deliverer.is_alive():
            self._deliverer.join(timeout=2.0)
        if self.connected.is_set():
            info = self._client.publish(self.topics.availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._flush_acks()
        left = self.outbox.count()
        if left:
            log.info("%d undelivered event(s) kept in %s for the next start", left, self.outbox.path)
        self.outbox.close()

    # --- callbacks (paho's thread) ----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            if "authori" in str(reason).lower() or "password" in str(reason).lower():
                if not self._auth_warned:
                    log.error(
                        "MQTT broker %s refused the credentials (%s) for user %r: check "
                        "mqtt.username and EDGEEMO_MQTT_PASSWORD / credential mqtt_password",
                        self.broker,
                        reason,
                        self.cfg.username,
                    )
                    self._auth_warned = True
            else:
                log.warning("MQTT broker %s refused the connection: %s", self.broker, reason)
            return
        log.info("MQTT connected to %s", self.broker)
        self._connected_at = time.monotonic()
        self._auth_warned = False
        client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        self._republish()
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self.connected.is_set() and not self._stopping:
            log.warning(
                "MQTT connection to %s lost (%s); reconnecting, events wait in the outbox",
                self.broker,
                reason,
            )
        self.connected.clear()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        self._acked_mids.append(mid)
        self._wake.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload == b"online":
            log.info("Home Assistant came online: re-sending discovery, states and stats")
            self._republish()
            if self._last_stats is not None:  # not "unknown" in HA until the next interval
                self._client.publish(self.topics.stats, self._last_stats, qos=0, retain=False)

    def _republish(self) -> None:
        """Discovery, then the last retained states and camera statuses (broker may have lost them)."""
        # The callback honours mqtt.discovery itself (it may still remove what was published
        # before); a None payload is an empty retained config, HA's signal to remove an entity.
        for topic, payload in self._discovery():
            body = "" if payload is None else json.dumps(payload)
            self._client.publish(topic, body, qos=1, retain=True)
        with self._lock:
            replay = list(self._retained.items())
        for topic, payload in replay:
            self._client.publish(topic, payload, qos=1, retain=True)

    # --- delivery of the outbox (its own thread) ---------------------------------------------

    def _flush_acks(self) -> None:
        done = []
        while self._acked_mids:
            entry = self._in_flight.pop(self._acked_mids.popleft(), None)
            if entry is not None:  # acks of retained states and statuses are not ours to count
                done.append(entry[0])
        if done:
            self.outbox.ack(done)
            self.delivered += len(done)

    def _deliver_loop(self) -> None:
        while not self._stopping:
            self.progress_at = time.monotonic()
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._flush_acks()
                if self.connected.is_set():
                    self._hand_over()
            except OutboxError as e:
                log.error("%s", e)
                time.sleep(5)

    def _hand_over(self) -> None:
        now = time.monotonic()
        oldest = min((t for _s, t in self._in_flight.values()), default=now)
        if now - max(oldest, self._connected_at) > STALE_S:
            # paho re-sends in-flight messages after a reconnect; if an ack still has not come,
            # send again from the outbox rather than stall (a consumer may see a duplicate seq).
            first = min(s for s, _t in self._in_flight.values())
            log.warning("MQTT: no acknowledgement for event seq %d after %d s; re-sending", first, STALE_S)
            self._in_flight.clear()
            self._last_handed = first - 1
        room = IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return
        for item in self.outbox.pending(self._last_handed, room):
            info = self._client.publish(item.topic, item.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                return  # paho's queue is full: try again on the next round
            # The PUBACK may already be in _acked_mids; it is matched on the next flush.
            self._in_flight[info.mid] = (item.seq, now)
            self._last_handed = item.seq

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
        """Store durably (assigning ``seq``); the delivery thread sends it."""
        try:
            self._last_added = self.outbox.add(self.topics.event(camera), event)
        except OutboxError as e:
            log.error("camera %s: event %s not stored: %s", camera, event.get("type"), e)
            return
        self._wake.set()

    def state(self, camera: str, state: dict) -> None:
        # The events that changed the state go first (face_left before faces 0); this waits
        # only when an event was just stored and is not yet handed to paho.
        self._wait_handed_over(HANDOVER_WAIT_S)
        self._send(self.topics.state(camera), json.dumps(state), retain=True)

    def camera_status(self, camera: str, online: bool) -> None:
        if not online:
            # A camera's last events (face_left) must reach the broker before its offline:
            # HA drops events of an entity that is already unavailable.
            self._wait_handed_over(HANDOVER_WAIT_S)
        self._send(self.topics.status(camera), "online" if online else "offline", retain=True)

    def _wait_handed_over(self, timeout: float) -> None:
        """Until the delivery thread has handed every event stored so far to paho (which sends
        in order), bounded: while disconnected the events wait in the outbox anyway."""
        target, deadline = self._last_added, time.monotonic() + timeout
        while (
            self._last_handed < target
            and self.connected.is_set()
            and not self._stopping
            and time.monotonic() < deadline
        ):
            self._wake.set()
            time.sleep(0.01)

    def stats(self, stats: dict) -> None:
        self._last_stats = json.dumps(stats)
        self._send(self.topics.stats, self._last_stats, retain=False, qos=0)
