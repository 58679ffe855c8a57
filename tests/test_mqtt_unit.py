"""Fast unit tests of the MQTT layer: the discovery payloads, and the publisher's state machine
driven through a fake paho client (the real-broker tests in test_daemon_mqtt.py stay; these
pin down each transition in milliseconds and without a broker)."""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edgeemo.config import MQTTConfig
from edgeemo.mqtt import publisher as publisher_module
from edgeemo.mqtt.discovery import EVENT_TYPES, discovery_messages
from edgeemo.mqtt.publisher import Publisher
from edgeemo.mqtt.topics import Topics
from edgeemo.outbox import Outbox
from tests.ha_schema import render as ha_schema_render
from tests.ha_schema import trigger_fires as ha_trigger_fires
from tests.ha_schema import validate

LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
TOPICS = Topics("edgeemo/dev1")


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_covers_every_camera_with_valid_unique_entities() -> None:
    msgs = discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", ["porch", "hall"], LABELS)
    uids = [p["unique_id"] for _, p in msgs if "unique_id" in p]  # device triggers have none
    assert len(uids) == len(set(uids))  # HA ignores a second entity with the same unique_id
    for topic, payload in msgs:
        assert validate(topic, payload) == [], topic
        assert topic.startswith("homeassistant/") and topic.endswith("/config")
        json.dumps(payload)  # publishable as is
    by_uid = {p["unique_id"]: p for _, p in msgs if "unique_id" in p}
    for cam in ("porch", "hall"):
        emotion = by_uid[f"edgeemo_dev1_{cam}_emotion"]
        assert emotion["options"] == [*LABELS, "none"]
        assert emotion["state_topic"] == f"edgeemo/dev1/{cam}/state"
        # Camera entities need both the appliance and that camera online.
        avail = [a["topic"] for a in emotion["availability"]]
        assert avail == ["edgeemo/dev1/availability", f"edgeemo/dev1/{cam}/status"]
        assert emotion["availability_mode"] == "all"
        assert emotion["device"]["via_device"] == "edgeemo_dev1"
        assert by_uid[f"edgeemo_dev1_{cam}_emotion_event"]["event_types"] == EVENT_TYPES
    # Diagnostics of the appliance itself depend only on its own availability.
    assert [a["topic"] for a in by_uid["edgeemo_dev1_rss_mb"]["availability"]] == [
        "edgeemo/dev1/availability"
    ]


def test_discovery_reads_like_an_integration() -> None:
    """Device triggers, camera devices named by camera, units and classes HA knows, quiet defaults."""
    msgs = discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", ["front_door"], LABELS)
    for topic, payload in msgs:
        assert validate(topic, payload) == [], (topic, validate(topic, payload))
    by_topic = dict(msgs)
    by_uid = {p["unique_id"]: p for _, p in msgs if "unique_id" in p}
    triggers = [p for t, p in msgs if t.startswith("homeassistant/device_automation/")]
    assert sorted(p["type"] for p in triggers) == sorted(EVENT_TYPES)
    event_entity = by_uid["edgeemo_dev1_front_door_emotion_event"]
    for trig in triggers:
        assert trig["topic"] == "edgeemo/dev1/front_door/event" and trig["qos"] == 1
        assert trig["device"]["identifiers"] == event_entity["device"]["identifiers"]
        # Fires for its own event type only, on the payload the daemon really sends.
        for kind in EVENT_TYPES:
            msg = json.dumps({"event_type": kind, "type": kind, "emotion": "happy"})
            assert ha_trigger_fires(trig, msg) == (kind == trig["type"])
    assert "homeassistant/device_automation/edgeemo_dev1/front_door_face_left/config" in by_topic
    assert event_entity["device"]["name"] == "Front door"  # entity ids: sensor.front_door_…
    assert event_entity["qos"] == 1
    faces = by_uid["edgeemo_dev1_front_door_faces"]
    assert "unit_of_measurement" not in faces  # not "1 faces"
    mem = by_uid["edgeemo_dev1_rss_mb"]
    assert (mem["unit_of_measurement"], mem["device_class"]) == ("MiB", "data_size")
    for key in ("detector_ms", "emotion_ms"):
        p = by_uid[f"edgeemo_dev1_{key}"]
        assert (p["unit_of_measurement"], p["device_class"]) == ("ms", "duration")
        assert p["enabled_by_default"] is False and p["icon"].startswith("mdi:")
    assert by_uid["edgeemo_dev1_front_door_fps"]["enabled_by_default"] is False
    for p in by_uid.values():
        if p.get("entity_category") == "diagnostic" and p.get("device_class") != "connectivity":
            assert p.get("icon", "").startswith("mdi:"), p["name"]


def test_dominant_emotion_entities_each_show_their_own_scores() -> None:
    """Defect 8: the state and its attributes come from the same figures, for both entities."""
    from edgeemo.aggregator import CameraAggregator, Observation
    from edgeemo.config import AggregatorConfig, TrackerConfig
    from edgeemo.detectors import Detection
    from edgeemo.tracker import IoUTracker
    from tests.ha_schema import render

    msgs = discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", ["porch"], LABELS)
    by_uid = {p["unique_id"]: p for _, p in msgs if "unique_id" in p}
    tracker, agg = IoUTracker(TrackerConfig()), CameraAggregator("porch", LABELS, AggregatorConfig())
    angry, happy = np.full(7, 0.02, np.float32), np.full(7, 0.02, np.float32)
    angry[0], happy[3] = 0.88, 0.88
    ts = 1000.0
    for p, n in ((angry, 40), (happy, 15), (None, 20)):
        for _ in range(n):
            ts += 0.2
            dets = [Detection(np.array([50, 50, 100, 100], np.float32), 0.9)] if p is not None else []
            matched, ended = tracker.match(ts, dets)
            agg.observe(ts, [Observation(t, p, 0.9, 100.0) for t, _ in matched], ended)
            payload = json.dumps(agg.state(ts))
            for uid in ("edgeemo_dev1_porch_emotion", "edgeemo_dev1_porch_recent_emotion"):
                cfg = by_uid[uid]
                state = ha_schema_render(cfg["value_template"], payload)
                attrs = json.loads(render(cfg["json_attributes_template"], payload))
                if state == "none":
                    assert not any(attrs.values()), (uid, attrs)
                else:
                    assert state == max(attrs, key=attrs.get), (uid, state, attrs)


def test_a_refusing_state_disk_shows_as_a_problem_in_home_assistant() -> None:
    msgs = dict(discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", [], LABELS))
    topic = "homeassistant/binary_sensor/edgeemo_dev1/event_storage/config"
    payload = msgs[topic]
    assert validate(topic, payload) == [] and payload["device_class"] == "problem"
    ok = json.dumps({"outbox_error": None})
    full = json.dumps({"outbox_error": "database or disk is full"})
    assert ha_schema_render(payload["value_template"], ok) == "OFF"
    assert ha_schema_render(payload["value_template"], full) == "ON"
    assert json.loads(ha_schema_render(payload["json_attributes_template"], full)) == {
        "error": "database or disk is full"
    }


def test_discovery_prefix_and_no_cameras() -> None:
    msgs = discovery_messages("ha", TOPICS, "dev1", "Gateway", [], LABELS)
    assert msgs and all(t.startswith("ha/") and "/edgeemo_dev1/" in t for t, _ in msgs)


# --- the publisher against a fake paho client -------------------------------------------------


@dataclass
class Info:
    rc: int
    mid: int

    def wait_for_publish(self, timeout: float | None = None) -> None:
        pass


@dataclass
class Reason:
    failure: bool
    text: str = "Success"

    @property
    def is_failure(self) -> bool:
        return self.failure

    def __str__(self) -> str:
        return self.text


class FakeClient:
    """Records what the publisher asks of paho; the test plays the network's part."""

    def __init__(self, *_: object, **kw: object) -> None:
        self.published: list[tuple[str, str, int, bool]] = []
        self.times: list[float] = []  # monotonic time of each publish, by index
        self.subscribed: list[str] = []
        self.next_mid = 0
        self.queue_full = False
        self.connected = False
        self.will: tuple | None = None
        self._raise: OSError | None = None
        self.on_connect = self.on_disconnect = self.on_message = self.on_publish = None

    # paho's API as the publisher uses it
    def max_queued_messages_set(self, n: int) -> None: ...
    def reconnect_delay_set(self, lo: int, hi: int) -> None: ...
    def username_pw_set(self, user: str, password: str | None) -> None: ...
    def will_set(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        self.will = (topic, payload, qos, retain)

    def connect_async(self, host: str, port: int, keepalive: int) -> None: ...
    def reconnect(self) -> int:
        if self._raise is not None:
            raise self._raise
        return 0

    def loop_start(self) -> None: ...
    def loop_stop(self) -> None: ...
    def disconnect(self) -> None:
        self.connected = False

    def subscribe(self, topic: str | list[tuple[str, int]], qos: int = 0) -> None:
        self.subscribed += [t for t, _q in topic] if isinstance(topic, list) else [topic]

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> Info:
        if self.queue_full:
            return Info(mqtt.MQTT_ERR_QUEUE_SIZE, 0)
        self.next_mid += 1
        self.published.append((topic, payload, qos, retain))
        self.times.append(time.monotonic())
        return Info(mqtt.MQTT_ERR_SUCCESS if self.connected else mqtt.MQTT_ERR_NO_CONN, self.next_mid)

    # the network's part
    def accept(self) -> None:
        self.connected = True
        self.on_connect(self, None, None, Reason(False), None)  # type: ignore[misc]

    def refuse(self, text: str) -> None:
        self.on_connect(self, None, None, Reason(True, text), None)  # type: ignore[misc]

    def drop(self) -> None:
        self.connected = False
        self.on_disconnect(self, None, None, Reason(True, "network lost"), None)  # type: ignore[misc]

    def ack(self, mid: int) -> None:
        self.on_publish(self, None, mid, Reason(False), None)  # type: ignore[misc]

    def receive(self, topic: str, payload: bytes) -> None:
        msg = mqtt.MQTTMessage(topic=topic.encode())
        msg.payload = payload
        self.on_message(self, None, msg)  # type: ignore[misc]

    def topics(self) -> list[str]:
        return [p[0] for p in self.published]


@pytest.fixture
def pub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Publisher, FakeClient]]:
    monkeypatch.setattr(publisher_module.mqtt, "Client", FakeClient)
    cfg = MQTTConfig(username="bob")
    discovery = discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", ["porch"], LABELS)
    p = Publisher(cfg, TOPICS, "edgeemo-dev1", "pw", lambda: discovery, Outbox(tmp_path / "o.sqlite3"))
    client = p._client
    assert isinstance(client, FakeClient)
    p.start()
    yield p, client
    p.stop(timeout=0.1)


def _until(cond, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def _announced(p: Publisher) -> bool:
    return p._live


def test_last_will_and_connect_sends_availability_discovery_and_retained_states(pub) -> None:  # type: ignore[no-untyped-def]
    p, c = pub
    assert c.will == ("edgeemo/dev1/availability", "offline", 1, True)
    p.state("porch", {"faces": 1})  # before the broker answers: kept for the connect
    assert c.published == []  # never queued in paho while not connected
    c.accept()
    assert p.is_connected()
    assert _until(lambda: _announced(p))
    assert c.subscribed == ["homeassistant/status", "edgeemo/dev1/claim"]
    assert c.published[0] == ("edgeemo/dev1/availability", "online", 1, True)
    configs = [t for t in c.topics() if t.endswith("/config")]
    assert len(configs) == len(discovery_messages("homeassistant", TOPICS, "d", "n", ["porch"], LABELS))
    # States after discovery, at QoS 0: the latest is re-sent on every connect instead.
    assert c.published[-1] == ("edgeemo/dev1/porch/state", json.dumps({"faces": 1}), 0, True)


def test_after_an_outage_only_the_latest_state_is_sent_after_availability(pub) -> None:  # type: ignore[no-untyped-def]
    """Issue 16.4 and 17.2: states of an outage are not replayed, and cannot crowd out online."""
    p, c = pub
    c.accept()
    assert _until(lambda: _announced(p))
    c.drop()
    c.published.clear()
    for i in range(500):  # a long outage with faces coming and going
        p.state("porch", {"faces": i % 2, "n": i})
        p.camera_status("porch", i % 3 == 0)
    assert c.published == []  # before: 1000 messages queued in paho (and its queue full)
    c.accept()
    assert _until(lambda: _announced(p))
    assert c.published[0] == ("edgeemo/dev1/availability", "online", 1, True)
    states = [x for x in c.published if x[0] == "edgeemo/dev1/porch/state"]
    assert states == [("edgeemo/dev1/porch/state", json.dumps({"faces": 1, "n": 499}), 0, True)]
    statuses = [x[1] for x in c.published if x[0] == "edgeemo/dev1/porch/status"]
    assert statuses == ["offline"]  # the last one (499 % 3 != 0)
    p.state("porch", {"faces": 0, "n": 500})  # live again: straight out
    assert c.published[-1][1] == json.dumps({"faces": 0, "n": 500})


def test_a_full_paho_queue_delays_online_but_never_loses_it(pub) -> None:  # type: ignore[no-untyped-def]
    """Issue 17.2: paho's queue still full of in-flight events when the broker comes back."""
    p, c = pub
    p.state("porch", {"faces": 1})
    c.queue_full = True
    c.accept()
    time.sleep(0.3)
    assert "edgeemo/dev1/availability" not in c.topics() and not _announced(p)
    c.queue_full = False  # the in-flight messages are acknowledged
    p._wake.set()
    assert _until(lambda: _announced(p))
    assert c.published[0] == ("edgeemo/dev1/availability", "online", 1, True)
    assert c.published[-1][0] == "edgeemo/dev1/porch/state"


def test_events_wait_until_home_assistant_can_have_subscribed(pub, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 16.6: the first face_entered must not race HA's subscription to a new camera."""
    monkeypatch.setattr(publisher_module, "SETTLE_S", 0.5)
    p, c = pub
    p.event("porch", {"type": "face_entered", "track_id": 1})  # a face in view at start
    c.accept()
    assert _until(lambda: any(t.endswith("/event") for t in c.topics()))
    last_config = max(i for i, t in enumerate(c.topics()) if t.endswith("/config"))
    first_event = c.topics().index("edgeemo/dev1/porch/event")
    assert first_event > last_config
    assert c.times[first_event] - c.times[last_config] >= 0.5  # before: handed over at once


def test_home_assistant_birth_storms_are_coalesced(
    pub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """Issue 17.8: 3000 births gave 7824 discovery publishes and 4001 log lines."""
    monkeypatch.setattr(publisher_module, "REDISCOVER_MIN_S", 0.5)
    p, c = pub
    c.accept()
    assert _until(lambda: _announced(p))
    per_send = sum(t.endswith("/config") for t in c.topics())
    c.published.clear()
    with caplog.at_level(logging.INFO):
        for _ in range(3000):
            c.receive("homeassistant/status", b"online")
        assert _until(lambda: any(t.endswith("/config") for t in c.topics()))
        time.sleep(1.0)
    assert sum(t.endswith("/config") for t in c.topics()) == per_send  # one re-send, not 3000
    lines = [r.getMessage() for r in caplog.records if "Home Assistant came online" in r.getMessage()]
    assert len(lines) == 1 and "3000 birth message(s)" in lines[0]


def test_events_wait_in_the_outbox_until_acknowledged(pub) -> None:  # type: ignore[no-untyped-def]
    p, c = pub
    p.event("porch", {"type": "face_entered", "track_id": 1})
    time.sleep(0.1)
    assert "edgeemo/dev1/porch/event" not in c.topics()  # not connected: nothing handed to paho
    assert p.outbox_pending() == 1
    c.accept()
    p._wake.set()
    assert _until(lambda: "edgeemo/dev1/porch/event" in c.topics())
    mid = c.next_mid if c.published[-1][0].endswith("/event") else None
    assert mid is not None and p.outbox_pending() == 1  # handed over, not yet acknowledged
    c.ack(mid)
    assert _until(lambda: p.outbox_pending() == 0 and p.delivered == 1)
    body = json.loads(c.published[-1][1])
    assert body["seq"] == 1 and body["track_id"] == 1


def test_a_lost_connection_keeps_events_and_reconnect_sends_them(pub) -> None:  # type: ignore[no-untyped-def]
    p, c = pub
    c.accept()
    c.drop()
    assert not p.is_connected()
    for i in range(3):
        p.event("porch", {"type": "face_entered", "track_id": i})
    time.sleep(0.1)
    assert not any(t.endswith("/event") for t in c.topics())
    c.accept()
    p._wake.set()
    assert _until(lambda: sum(t.endswith("/event") for t in c.topics()) == 3)
    seqs = [json.loads(x[1])["seq"] for x in c.published if x[0].endswith("/event")]
    assert seqs == [1, 2, 3]  # in order


def test_home_assistant_birth_resends_discovery(pub, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(publisher_module, "REDISCOVER_MIN_S", 0.1)
    p, c = pub
    c.accept()
    assert _until(lambda: _announced(p))
    c.published.clear()
    c.receive("homeassistant/status", b"offline")
    time.sleep(0.2)
    assert c.published == []
    c.receive("homeassistant/status", b"online")
    assert _until(lambda: any(t.endswith("/config") for t in c.topics()))


def test_refused_credentials_are_logged_once_without_the_password(
    pub,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    p, c = pub
    with caplog.at_level(logging.ERROR):
        c.refuse("Not authorized")
        c.refuse("Not authorized")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "refused the credentials" in errors[0] and "'bob'" in errors[0]
    assert "pw" not in errors[0].replace("password", "")
    assert not p.is_connected()


def test_tls_refusals_are_named(pub, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Issue 17.7: paho swallows why a connection failed; the publisher names it, once."""
    p, c = pub
    err = ssl.SSLCertVerificationError(1, "certificate verify failed")
    err.verify_message = "unable to get local issuer certificate"
    c._raise = err
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            with pytest.raises(OSError):
                c.reconnect()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "certificate was refused" in errors[0] and "ca_file" in errors[0]
    assert p.last_error and "unable to get local issuer certificate" in p.last_error


def test_a_second_appliance_with_the_same_device_id_is_named(pub, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """Issue 17.6: a cloned SD card keeps /etc/machine-id; the two kick each other off."""
    p, c = pub
    previous_run = json.dumps({"nonce": "old", "host": "gw", "pid": 1})
    with caplog.at_level(logging.ERROR):
        c.accept()
        c.receive("edgeemo/dev1/claim", previous_run.encode())  # retained, from our last run
        assert _until(lambda: _announced(p))
        ours = next(x[1] for x in c.published if x[0] == "edgeemo/dev1/claim")
        c.receive("edgeemo/dev1/claim", ours.encode())  # our own claim comes back
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a restart is no clash
        c.drop()
        c.accept()  # the twin connected meanwhile and claimed the id
        for _ in range(3):
            c.receive("edgeemo/dev1/claim", json.dumps({"nonce": "twin", "host": "gw", "pid": 7}).encode())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "another edgeemo (host gw, pid 7)" in errors[0]
    assert "machine-id" in errors[0] and "device.id" in errors[0]


def test_home_assistant_birth_resends_the_last_stats(pub, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    p, c = pub
    monkeypatch.setattr(publisher_module, "REDISCOVER_MIN_S", 0.0)
    c.accept()
    assert _until(lambda: _announced(p))
    p.stats({"rss_mb": 80.0})
    c.published.clear()
    c.receive("homeassistant/status", b"online")
    assert _until(lambda: ("edgeemo/dev1/stats", json.dumps({"rss_mb": 80.0}), 0, False) in c.published)


def test_stale_discovery_is_removed_with_empty_retained_configs(tmp_path: Path) -> None:
    from edgeemo.mqtt.discovery import PublishedConfigs

    memory = PublishedConfigs(tmp_path / "discovery-published.json")
    first = discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", ["porch", "hall"], LABELS)
    assert all(payload is not None for _, payload in memory.with_removals(first))  # nothing before
    # hall removed from the config: its entities and triggers get an empty config, porch's stay.
    second = discovery_messages("homeassistant", TOPICS, "dev1", "Gateway", ["porch"], LABELS)
    out = memory.with_removals(second)
    removed = {t for t, payload in out if payload is None}
    assert removed == {t for t, _ in first} - {t for t, _ in second}
    assert removed and all("/edgeemo_dev1/hall_" in t for t in removed)
    assert any("/device_automation/" in t for t in removed)
    # A new device id: everything under the old node goes.
    third = discovery_messages("homeassistant", Topics("edgeemo/dev2"), "dev2", "Gateway", ["porch"], LABELS)
    removed = {t for t, payload in memory.with_removals(third) if payload is None}
    assert removed == {t for t, _ in second}
    # discovery: false publishes nothing but removes what is there.
    assert {t for t, payload in memory.with_removals([]) if payload is None} == {t for t, _ in third}
    assert memory.with_removals([]) == []


def test_publisher_sends_removals_as_empty_retained_payloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module.mqtt, "Client", FakeClient)
    gone = "homeassistant/sensor/edgeemo_dev1/hall_faces/config"
    p = Publisher(MQTTConfig(), TOPICS, "c", None, lambda: [(gone, None)], Outbox(tmp_path / "o.sqlite3"))
    c = p._client
    p.start()
    try:
        c.accept()
        p._wake.set()
        assert _until(lambda: (gone, "", 1, True) in c.published)
    finally:
        p.stop(timeout=0.1)
