"""Non-blocking MQTT publisher on paho-mqtt 2.x.

paho's network thread does the I/O; callers only enqueue. Events go through the durable
outbox: a delivery thread hands them to paho in ``seq`` order, a bounded window at a time,
and deletes each from the outbox when its PUBACK arrives; paho itself re-sends what is in
flight after a reconnect.

Retained messages follow one rule on every (re)connect: availability ``online`` first, then
discovery, then the *latest* state and status of each topic, and only then events. States and
statuses are never queued while the broker is away (only the latest is remembered), so a long
outage cannot fill paho's queue and crowd out ``online``, and no stale state is replayed after
the current one. They go at QoS 0 while connected: what a broken connection loses is superseded
by the re-send of the latest on the next connect. Home Assistant's birth message re-sends
discovery and states, at most once per ``REDISCOVER_MIN_S``; after discovery is sent, events
wait ``SETTLE_S`` so that Home Assistant has subscribed to a new camera's topics before its
first event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo.config import MQTTConfig
from edgeemo.mqtt.topics import Topics
from edgeemo.outbox import Outbox

log = logging.getLogger(__name__)
IN_FLIGHT = 50  # events handed to paho and not yet acknowledged; the rest wait on disk
STALE_S = 60  # while connected, an event unacknowledged this long is sent again
REDISCOVER_MIN_S = 5.0  # a storm of HA birth messages costs one discovery re-send per this
# HA subscribes to a new entity's topics 0.3-1 s after its discovery config arrives; an event
# sent before that is lost to it (events are not retained), so events wait this long.
SETTLE_S = 2.0
HANDOVER_WAIT_S = 2.0  # a state or a camera's offline waits at most this long for its events


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
        self._wake = threading.Event()
        self._deliverer = threading.Thread(target=self._deliver_loop, name="mqtt-outbox", daemon=True)
        self.delivered = 0
        self.progress_at = 0.0  # monotonic time the delivery loop last went round (watchdog)
        self._connected_at = 0.0
        self.topics = topics
        self._discovery = discovery
        self._retained: dict[str, str] = {}  # topic → last payload, replayed on reconnect
        self._last_stats: str | None = None  # re-sent after discovery (HA's birth, a reconnect)
        self._last_added = 0  # highest seq this process stored (states and offline wait for it)
        self._lock = threading.Lock()
        self._live = False  # under _lock: connected and announced, states may go straight out
        self._announce: deque[tuple[str, str]] = deque()  # retained QoS 1 still to hand to paho
        self._need_announce = False  # set by on_connect, done by the delivery thread
        self._announcing = False  # until done, states wait and no event is handed to paho
        self._ha_births = 0  # HA birth messages not yet answered
        self._discovery_at = -REDISCOVER_MIN_S  # monotonic time discovery was last sent
        self._hold_until = 0.0  # no events before this (HA is subscribing after discovery)
        self.last_error: str | None = None  # why the last connection attempt failed, for logs
        self._errors_logged: set[str] = set()
        # Two appliances with one device id (a cloned SD card keeps /etc/machine-id) share a
        # client id and kick each other off the broker. Each process claims the id with a
        # retained nonce; a foreign claim arriving after our own came back names the clash.
        self._nonce = uuid.uuid4().hex
        self._claim = json.dumps(
            {
                "nonce": self._nonce,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": round(time.time()),
            }
        )
        self._claim_echoed = False
        self.duplicate: dict | None = None  # the other claimant, once seen
        self.connected = threading.Event()
        self.dropped = 0  # messages paho refused (queue full)
        self.connects = 0  # successful connections, for the reconnect count in /metrics
        self._auth_warned = False
        self._stopping = False
        self._client_id = client_id
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
        reconnect = c.reconnect

        def reconnect_noting_why() -> Any:
            # paho swallows why a connection attempt failed (TLS refusals included); keep it.
            try:
                return reconnect()
            except OSError as e:
                self._connect_failed(e)
                raise

        c.reconnect = reconnect_noting_why  # type: ignore[method-assign]
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

    def outbox_error(self) -> str | None:
        return self.outbox.storage_error

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

    def _connect_failed(self, e: OSError) -> None:
        if isinstance(e, ssl.SSLCertVerificationError):
            why = (
                f"TLS: the broker's certificate was refused ({e.verify_message}); an unknown CA "
                "needs mqtt.tls.ca_file, a hostname mismatch needs mqtt.host to be a name the "
                "certificate carries"
            )
        elif isinstance(e, ssl.SSLError):
            why = f"TLS handshake failed ({e.reason or e}); check mqtt.tls and the broker's TLS listener"
        elif isinstance(e, ConnectionRefusedError):
            why = "connection refused: nothing listens on that port (is the broker running? mqtt.port?)"
        else:
            why = f"{type(e).__name__}: {e}"
        self.last_error = why
        if why not in self._errors_logged:  # each distinct cause once, until connected again
            self._errors_logged.add(why)
            # A certificate problem never heals by itself; a broker that is down usually does.
            level = logging.ERROR if isinstance(e, ssl.SSLError) else logging.WARNING
            log.log(level, "MQTT broker %s: cannot connect: %s; retrying", self.broker, why)

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
        self.connects += 1
        self._connected_at = time.monotonic()
        self._auth_warned = False
        self.last_error = None
        self._errors_logged.clear()
        client.subscribe([(f"{self.cfg.discovery_prefix}/status", 1), (self.topics.claim, 1)])
        # The delivery thread announces (online, discovery, latest states) before any event:
        # paho's queue may still be full of in-flight events here, so it retries until taken.
        self._need_announce = True
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self._live = False
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
        if msg.topic == self.topics.claim:
            self._on_claim(msg.payload)
        elif msg.topic == f"{self.cfg.discovery_prefix}/status" and msg.payload == b"online":
            self._ha_births += 1  # answered by the delivery thread, coalesced
            self._wake.set()

    def _on_claim(self, payload: bytes) -> None:
        try:
            claim = json.loads(payload)
            nonce = claim["nonce"]
        except (ValueError, TypeError, KeyError):
            return
        if nonce == self._nonce:
            self._claim_echoed = True
        elif self._claim_echoed and self.duplicate is None:
            # Not a previous run of ours: the broker sends that before our own claim comes back.
            self.duplicate = claim if isinstance(claim, dict) else {}
            log.error(
                "another edgeemo (host %s, pid %s) uses this device id and MQTT client id %s: the "
                "broker disconnects each of you when the other connects, and your event seq numbers "
                "collide. A cloned SD card keeps /etc/machine-id: on one of the two, run "
                "'rm /etc/machine-id && systemd-machine-id-setup' and restart edgeemo, or give each "
                "appliance its own device.id (and mqtt.client_id) in its config",
                claim.get("host"), claim.get("pid"), self._client_id,
            )  # fmt: skip

    # --- announcing: availability, discovery, latest states (the delivery thread) -----------

    def _start_announce(self, availability: bool) -> None:
        self._announce.clear()
        if availability:
            self._announce.append((self.topics.availability, "online"))
            self._announce.append((self.topics.claim, self._claim))
        # The callback honours mqtt.discovery itself (it may still remove what was published
        # before); a None payload is an empty retained config, HA's signal to remove an entity.
        self._announce.extend((t, "" if p is None else json.dumps(p)) for t, p in self._discovery())
        self._discovery_at = time.monotonic()
        self._announcing = True

    def _announce_step(self) -> bool:
        """Hand the announcement to paho; True when done (states out, events may follow)."""
        if self._need_announce:
            self._need_announce = False
            self._ha_births = 0  # a fresh connect re-sends discovery anyway
            self._start_announce(availability=True)
        elif (
            self._ha_births
            and not self._announcing
            and time.monotonic() - self._discovery_at >= REDISCOVER_MIN_S
        ):
            log.info(
                "Home Assistant came online (%d birth message(s)): re-sending discovery and states",
                self._ha_births,
            )
            self._ha_births = 0
            self._start_announce(availability=False)
        if not self._announcing:
            return True
        while self._announce:
            topic, payload = self._announce[0]
            info = self._client.publish(topic, payload, qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                return False  # in-flight events from before a drop fill it; acks free it soon
            self._announce.popleft()
        if self.cfg.discovery:
            self._hold_until = time.monotonic() + SETTLE_S
        with self._lock:  # the latest of each state and status, then live publishing
            for topic, payload in self._retained.items():
                self._client.publish(topic, payload, qos=0, retain=True)
            self._live = self.connected.is_set()
            if self._last_stats is not None:  # not "unknown" in HA until the next interval
                self._client.publish(self.topics.stats, self._last_stats, qos=0, retain=False)
        self._announcing = False
        return True

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
        failures: set[str] = set()
        while not self._stopping:
            self.progress_at = time.monotonic()
            self._wake.wait(min(1.0, max(0.05, self._hold_until - time.monotonic())))
            self._wake.clear()
            try:
                self._flush_acks()
                ready = self.connected.is_set() and self._announce_step()
                if ready and time.monotonic() >= self._hold_until:
                    self._hand_over()
            except Exception as e:  # this thread must outlive anything; it is all delivery
                if repr(e) not in failures:
                    failures.add(repr(e))
                    log.exception("MQTT delivery: unexpected error (%s); carrying on", e)
                time.sleep(1)

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
        # Leave half of paho's queue to availability and discovery after a reconnect.
        room = min(IN_FLIGHT, self.cfg.max_queued_messages // 2) - len(self._in_flight)
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

    def _send(self, topic: str, payload: str, retain: bool) -> None:
        with self._lock:
            if retain:
                self._retained[topic] = payload
            if not self._live:
                return  # never queued: the latest is sent after availability on the next connect
            info = self._client.publish(topic, payload, qos=0, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "MQTT queue full (%d messages): dropped %d so far",
                    self.cfg.max_queued_messages,
                    self.dropped,
                )

    def event(self, camera: str, event: dict) -> int:
        """Store durably (assigning ``seq``, returned); the delivery thread sends it."""
        # Never raises: memory backs the disk.
        self._last_added = self.outbox.add(self.topics.event(camera), event)
        self._wake.set()
        return self._last_added

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
        in order), bounded. No wait while events cannot go anyway: disconnected, announcing,
        or held while Home Assistant subscribes after discovery."""
        target, deadline = self._last_added, time.monotonic() + timeout
        while (
            self._last_handed < target
            and self._live
            and not self._stopping
            and time.monotonic() >= self._hold_until
            and time.monotonic() < deadline
        ):
            self._wake.set()
            time.sleep(0.01)

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def stats(self, stats: dict) -> None:
        self._last_stats = json.dumps(stats)
        self._send(self.topics.stats, self._last_stats, retain=False)
