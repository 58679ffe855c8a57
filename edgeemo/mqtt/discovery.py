"""Home Assistant MQTT discovery: one device for the appliance, one per camera.

Payloads use HA's full key names (no abbreviations) so they read like the documentation.
Camera entities are available only while both the appliance and the camera are online.
"""

from __future__ import annotations

from edgeemo import __version__
from edgeemo.aggregator import NO_FACE
from edgeemo.mqtt.topics import Topics

EVENT_TYPES = ["face_entered", "emotion_changed", "face_left"]


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

    for name, key, unit in (
        ("Detector inference", "detector_ms", "ms"),
        ("Emotion inference", "emotion_ms", "ms"),
        ("Memory", "rss_mb", "MB"),
        ("Undelivered events", "outbox_pending", "events"),  # the outbox backlog
    ):
        add(
            "sensor",
            key,
            {
                "name": name,
                "device": appliance,
                "state_topic": topics.stats,
                "value_template": f"{{{{ value_json.{key} }}}}",
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "availability": [dev_avail],
            },
        )

    for cam in cameras:
        cam_device = {
            "identifiers": [f"{node}_{cam}"],
            "name": f"{device_name} {cam}",
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
                "name": "Dominant emotion",
                "device": cam_device,
                "state_topic": topics.state(cam),
                "value_template": "{{ value_json.dominant_emotion }}",
                "json_attributes_topic": topics.state(cam),
                "json_attributes_template": "{{ value_json.distribution | tojson }}",
                "device_class": "enum",
                "options": [*labels, NO_FACE],
                "icon": "mdi:emoticon-outline",
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
                "unit_of_measurement": "faces",
                "icon": "mdi:face-recognition",
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
                **avail,
            },
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
                "availability": [dev_avail],
            },
        )
    return out
