"""MQTT: topic layout, Home Assistant discovery and the non-blocking publisher."""
