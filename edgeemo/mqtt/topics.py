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
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def state(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/state"

    def event(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/event"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"
