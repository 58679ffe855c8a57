"""The MQTT topic layout (documented in the README; change both together)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str  # <topic_prefix>/<device id>

    @property
    def availability(self) -> str:
        return f"{self.prefix}/availability"

    @property
    def claim(self) -> str:
        """Retained: which running process uses this device id (finds cloned appliances)."""
        return f"{self.prefix}/claim"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/state"

    def event(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/event"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"
