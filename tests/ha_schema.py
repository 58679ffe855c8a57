"""What Home Assistant accepts in MQTT discovery payloads, for the components we publish.

Key sets follow HA's MQTT sensor, binary_sensor and event documentation; the rules below are
the ones HA enforces at load time (it logs an ERROR naming the key and drops the entity).
Templates are rendered with Jinja2 against sample payloads, as HA would render them.
"""

from __future__ import annotations

import json

import jinja2

COMMON = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "default_entity_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "qos",
    "state_topic",
    "unique_id",
    "value_template",
    "platform",
}
ALLOWED = {
    "sensor": COMMON
    | {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "options",
        "state_class",
        "suggested_display_precision",
        "unit_of_measurement",
    },
    "binary_sensor": COMMON
    | {"device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on"},
    "event": COMMON | {"device_class", "event_types"},
}
# MQTT device triggers (device_automation): HA's TRIGGER_DISCOVERY_SCHEMA. Not an entity: no
# unique_id, name or availability; HA drops unknown keys silently, so they are errors here.
TRIGGER_KEYS = {
    "automation_type",
    "device",
    "encoding",
    "origin",
    "payload",
    "platform",
    "qos",
    "subtype",
    "topic",
    "type",
    "value_template",
}
TRIGGER_REQUIRED = {"automation_type", "device", "subtype", "topic", "type"}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
# Units HA accepts for the device classes we use (HA's DEVICE_CLASS_UNITS).
DEVICE_CLASS_UNITS = {
    "duration": {"d", "h", "min", "s", "ms", "µs"},
    "data_size": {"bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
                  "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"},
}  # fmt: skip
ENV = jinja2.Environment(undefined=jinja2.StrictUndefined)
ENV.filters["tojson"] = ENV.filters["to_json"] = json.dumps


def render(template: str, payload: str) -> str:
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None
    return ENV.from_string(template).render(value=payload, value_json=value_json)


def validate(topic: str, payload: dict, discovery_prefix: str = "homeassistant") -> list[str]:
    """Problems HA would report for one discovery message (empty list: accepted)."""
    problems = []
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != discovery_prefix or parts[-1] != "config":
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = parts[1]
    if component == "device_automation":
        return validate_trigger(topic, payload)
    if component not in ALLOWED:
        return [f"{topic}: component {component} not checked"]
    unknown = set(payload) - ALLOWED[component]
    if unknown:
        problems.append(f"{topic}: unknown keys {sorted(unknown)}")
    if "state_topic" not in payload:
        problems.append(f"{topic}: state_topic is required")
    dev = payload.get("device")
    if dev is not None:
        if not payload.get("unique_id"):
            problems.append(f"{topic}: a device needs a unique_id")
        if set(dev) - DEVICE_KEYS:
            problems.append(f"{topic}: unknown device keys {sorted(set(dev) - DEVICE_KEYS)}")
        if not (dev.get("identifiers") or dev.get("connections")):
            problems.append(f"{topic}: device needs identifiers or connections")
    for a in payload.get("availability", []):
        if "topic" not in a:
            problems.append(f"{topic}: availability entries need a topic")
    if payload.get("availability_mode", "latest") not in ("all", "any", "latest"):
        problems.append(f"{topic}: bad availability_mode")
    if payload.get("entity_category") not in (None, "diagnostic", "config"):
        problems.append(f"{topic}: bad entity_category")
    if component == "sensor":
        if payload.get("entity_category") == "config":
            problems.append(f"{topic}: sensors cannot have entity_category config")
        if payload.get("device_class") == "enum":
            if not payload.get("options"):
                problems.append(f"{topic}: enum sensor needs options")
            if "state_class" in payload or "unit_of_measurement" in payload:
                problems.append(f"{topic}: enum sensor cannot have state_class or unit_of_measurement")
        if payload.get("state_class") not in (None, "measurement", "total", "total_increasing"):
            problems.append(f"{topic}: bad state_class")
        units = DEVICE_CLASS_UNITS.get(payload.get("device_class", ""))
        if units is not None and payload.get("unit_of_measurement") not in units:
            problems.append(
                f"{topic}: unit {payload.get('unit_of_measurement')!r} is not one of "
                f"device class {payload['device_class']}'s units"
            )
    if component == "event" and not payload.get("event_types"):
        problems.append(f"{topic}: event needs event_types")
    for key in ("value_template", "json_attributes_template"):
        if key in payload:
            try:
                ENV.parse(payload[key])
            except jinja2.TemplateSyntaxError as e:
                problems.append(f"{topic}: {key} does not parse: {e}")
    return problems


def validate_trigger(topic: str, payload: dict) -> list[str]:
    """Problems HA would report for one MQTT device trigger's discovery message."""
    problems = []
    if set(payload) - TRIGGER_KEYS:
        problems.append(f"{topic}: unknown keys {sorted(set(payload) - TRIGGER_KEYS)}")
    if TRIGGER_REQUIRED - set(payload):
        problems.append(f"{topic}: missing {sorted(TRIGGER_REQUIRED - set(payload))}")
    if payload.get("automation_type") != "trigger":
        problems.append(f"{topic}: automation_type must be trigger")
    for key in ("type", "subtype", "topic"):
        if not isinstance(payload.get(key), str) or not payload.get(key):
            problems.append(f"{topic}: {key} must be a non-empty string")
    if any(c in str(payload.get("topic", "")) for c in "#+"):
        problems.append(f"{topic}: a trigger topic must not contain wildcards")
    if payload.get("qos", 0) not in (0, 1, 2):
        problems.append(f"{topic}: bad qos")
    dev = payload.get("device") or {}
    if set(dev) - DEVICE_KEYS:
        problems.append(f"{topic}: unknown device keys {sorted(set(dev) - DEVICE_KEYS)}")
    if not (dev.get("identifiers") or dev.get("connections")):
        problems.append(f"{topic}: device needs identifiers or connections")
    if "value_template" in payload:
        try:
            ENV.parse(payload["value_template"])
        except jinja2.TemplateSyntaxError as e:
            problems.append(f"{topic}: value_template does not parse: {e}")
    return problems


def trigger_fires(payload: dict, message: str) -> bool:
    """Whether HA would fire this device trigger for an MQTT message on its topic."""
    value = render(payload["value_template"], message) if "value_template" in payload else message
    return payload.get("payload") in (None, value)
