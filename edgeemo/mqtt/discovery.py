"""Home Assistant MQTT discovery: one device for the appliance, one per camera.

Payloads use HA's full key names (no abbreviations) so they read like the documentation.
Camera entities are available only while both the appliance and the camera are online.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from edgeemo import __version__
from edgeemo.aggregator import NO_FACE
from edgeemo.mqtt.topics import Topics

EVENT_TYPES = ["face_entered", "emotion_changed", "face_left"]
log = logging.getLogger(__name__)


def _appliance(device_id: str, name: str) -> dict:
    return {
        "identifiers": [f"edgeemo_{device_id}"],
        "name": name,
        "manufacturer": "edgeemo",
        "model": "edgeemo appliance",
        "sw_version": __version__,
    }


def discovery_messages(
    discovery_prefix: str,
    topics: Topics,
    device_id: str,
    device_name: str,
    cameras: list[str],
    labels: list[str],
) -> list[tuple[str, dict]]:
    """All discovery (topic, payload) pairs; publish retained."""
    node = f"edgeemo_{device_id}"
    appliance = _appliance(device_id, device_name)
    origin = {"name": "edgeemo", "sw_version": __version__}
    dev_avail = {"topic": topics.availability}
    out: list[tuple[str, dict]] = []

    def add(component: str, object_id: str, payload: dict) -> None:
        uid = f"{node}_{object_id}"
        payload = {"unique_id": uid, "origin": origin, **payload}
        out.append((f"{discovery_prefix}/{component}/{node}/{object_id}/config", payload))

    # Appliance diagnostics: (name, stats key, unit, device class, icon, enabled by default).
    # Inference times change every 30 s and fill HA's recorder: off until a user wants them.
    for name, key, unit, device_class, icon, enabled in (
        ("Detector inference", "detector_ms", "ms", "duration", "mdi:timer-outline", False),
        ("Emotion inference", "emotion_ms", "ms", "duration", "mdi:timer-outline", False),
        ("Memory", "rss_mb", "MiB", "data_size", "mdi:memory", True),  # /proc VmRSS / 1024
        ("Undelivered events", "outbox_pending", None, None, "mdi:tray-full", True),  # outbox backlog
    ):
        add(
            "sensor",
            key,
            {
                "name": name,
                "device": appliance,
                "state_topic": topics.stats,
                "value_template": f"{{{{ value_json.{key} }}}}",
                **({"unit_of_measurement": unit} if unit else {}),
                **({"device_class": device_class} if device_class else {}),
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": icon,
                **({} if enabled else {"enabled_by_default": False}),
                "availability": [dev_avail],
            },
        )

    # What the emotion model runs on ("cpu", "edgetpu", "onnx (CUDAExecutionProvider)"): a GPU
    # or TPU that went missing at start shows here, not only in the journal.
    add(
        "sensor",
        "emotion_runtime",
        {
            "name": "Emotion runtime",
            "device": appliance,
            "state_topic": topics.stats,
            "value_template": "{{ value_json.emotion_runtime }}",
            "entity_category": "diagnostic",
            "icon": "mdi:chip",
            "availability": [dev_avail],
        },
    )

    # The state disk refusing writes (full, read-only): events still go out from memory while
    # the broker is up, but a restart would lose them; HA shows it as a problem to fix.
    add(
        "binary_sensor",
        "event_storage",
        {
            "name": "Event storage",
            "device": appliance,
            "state_topic": topics.stats,
            "value_template": "{{ 'ON' if value_json.outbox_error else 'OFF' }}",
            "json_attributes_topic": topics.stats,
            "json_attributes_template": "{{ {'error': value_json.outbox_error} | tojson }}",
            "device_class": "problem",
            "entity_category": "diagnostic",
            "icon": "mdi:database-alert",
            "availability": [dev_avail],
        },
    )

    for cam in cameras:
        cam_device = {
            "identifiers": [f"{node}_{cam}"],
            # HA names entities "<device> <entity>": sensor.porch_dominant_emotion.
            "name": camera_title(cam),
            "manufacturer": "edgeemo",
            "model": "camera",
            "via_device": f"edgeemo_{device_id}",
        }
        avail = {
            "availability": [dev_avail, {"topic": topics.status(cam)}],
            "availability_mode": "all",
        }
        add(
            "sensor",
            f"{cam}_emotion",
            {
                # The faces in view now; its attributes are those faces' mean scores.
                "name": "Dominant emotion",
                "device": cam_device,
                "state_topic": topics.state(cam),
                "value_template": "{{ value_json.dominant_emotion }}",
                "json_attributes_topic": topics.state(cam),
                "json_attributes_template": "{{ value_json.emotions | tojson }}",
                "device_class": "enum",
                "options": [*labels, NO_FACE],
                "icon": "mdi:emoticon-outline",
                "qos": 1,
                **avail,
            },
        )
        add(
            "sensor",
            f"{cam}_recent_emotion",
            {
                # The window (aggregator.window_s): its attributes are the window's distribution.
                "name": "Recent dominant emotion",
                "device": cam_device,
                "state_topic": topics.state(cam),
                "value_template": "{{ value_json.window_dominant_emotion }}",
                "json_attributes_topic": topics.state(cam),
                "json_attributes_template": "{{ value_json.distribution | tojson }}",
                "device_class": "enum",
                "options": [*labels, NO_FACE],
                "icon": "mdi:chart-bell-curve",
                "qos": 1,
                **avail,
            },
        )
        add(
            "sensor",
            f"{cam}_faces",
            {
                "name": "Faces in view",
                "device": cam_device,
                "state_topic": topics.state(cam),
                "value_template": "{{ value_json.faces }}",
                "state_class": "measurement",
                "icon": "mdi:face-recognition",
                "qos": 1,
                **avail,
            },
        )
        add(
            "event",
            f"{cam}_emotion_event",
            {
                "name": "Emotion event",
                "device": cam_device,
                "state_topic": topics.event(cam),
                "event_types": EVENT_TYPES,
                "icon": "mdi:account-eye",
                "qos": 1,  # the broker→HA leg too: events are not retained, a lost one is gone
                **avail,
            },
        )
        for kind in EVENT_TYPES:
            # Device triggers: "Porch: face_entered" in HA's automation editor.
            out.append(
                (
                    f"{discovery_prefix}/device_automation/{node}/{cam}_{kind}/config",
                    {
                        "automation_type": "trigger",
                        "topic": topics.event(cam),
                        "type": kind,
                        "subtype": cam,
                        "value_template": "{{ value_json.event_type }}",
                        "payload": kind,
                        "qos": 1,
                        "device": cam_device,
                        "origin": origin,
                    },
                )
            )
        add(
            "sensor",
            f"{cam}_fps",
            {
                "name": "Analysed fps",
                "device": cam_device,
                "state_topic": topics.stats,
                "value_template": f"{{{{ value_json.cameras['{cam}'].fps }}}}",
                "unit_of_measurement": "fps",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "icon": "mdi:speedometer",
                "enabled_by_default": False,
                **avail,
            },
        )
        add(
            "binary_sensor",
            f"{cam}_connected",
            {
                "name": "Camera connected",
                "device": cam_device,
                "state_topic": topics.status(cam),
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "qos": 1,
                "availability": [dev_avail],
            },
        )
    return out


def camera_title(camera: str) -> str:
    """The camera device's name in HA: ``front_door`` → ``Front door``."""
    words = camera.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else camera


class PublishedConfigs:
    """The discovery config topics published last time, kept in the state directory, so that
    entities of a removed or renamed camera, an old device id or ``discovery: false`` are
    removed from HA with an empty retained config (HA's removal signal), as zigbee2mqtt does."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as e:
            log.warning("%s unreadable (%s): entities removed from the config may stay in HA", self.path, e)
            return set()
        return {t for t in data if isinstance(t, str)} if isinstance(data, list) else set()

    def save(self, topics: set[str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(sorted(topics)), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot record the discovery topics in %s (%s)", self.path, e)

    def with_removals(self, messages: list[tuple[str, dict]]) -> list[tuple[str, dict | None]]:
        """``messages`` plus (topic, None) for every config published before and not now;
        records the current set. None: publish an empty retained payload."""
        current = {t for t, _ in messages}
        stale = sorted(self.load() - current)
        if stale:
            log.info("removing %d stale Home Assistant entities/triggers (%s …)", len(stale), stale[0])
        self.save(current)
        return [*messages, *((t, None) for t in stale)]
