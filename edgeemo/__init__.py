"""edgeemo: facial emotion recognition on the edge, published over MQTT."""

__version__ = "0.1.0"
