"""Who this appliance is: a stable device id (for topics and client id) and a display name."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from pathlib import Path

from edgeemo.config import Config


def _machine_id(state_dir: Path | None) -> str:
    for p in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        try:
            text = p.read_text().strip()
        except OSError:
            continue
        if text:
            return text
    # No machine id (some containers): keep a random one in the state directory.
    if state_dir is not None:
        p = state_dir / "device-id"
        try:
            return p.read_text().strip()
        except OSError:
            value = uuid.uuid4().hex
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # private, as the outbox
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            return value
    return socket.gethostname()


def device_id(cfg: Config, state_dir: Path | None) -> str:
    if cfg.device.id:
        return cfg.device.id
    # Hashed, so the machine id itself (a secret-ish value) never reaches the broker.
    digest = hashlib.sha256(b"edgeemo:" + _machine_id(state_dir).encode()).hexdigest()
    return digest[:10]


def device_name(cfg: Config) -> str:
    return cfg.device.name or f"edgeemo {re.sub(r'[^A-Za-z0-9_-]', '-', socket.gethostname())}"
