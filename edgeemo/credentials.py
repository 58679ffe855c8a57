"""Secrets from the environment or systemd credentials, never from the YAML file.

Lookup order for a name: the environment variable ``NAME``, then the file
``$CREDENTIALS_DIRECTORY/<name lower-cased>`` (systemd ``LoadCredential=``).
Values are never logged; callers log only the name that was missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgeemo.errors import ConfigError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def lookup(name: str) -> str | None:
    if name in os.environ:
        return os.environ[name]
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        for candidate in (name, name.lower()):
            p = Path(cred_dir) / candidate
            if p.is_file():
                return p.read_text(encoding="utf-8").rstrip("\r\n")
    return None


def expand(text: str, where: str) -> str:
    """Replace ``${NAME}`` references (e.g. RTSP passwords in camera URLs)."""

    def repl(m: re.Match[str]) -> str:
        value = lookup(m.group(1))
        if value is None:
            raise ConfigError(
                f"{where}: ${{{m.group(1)}}} is not set; export {m.group(1)} or provide a "
                f"systemd credential named {m.group(1).lower()}"
            )
        return value

    return _REF.sub(repl, text)


def mqtt_password() -> str | None:
    return lookup("EDGEEMO_MQTT_PASSWORD") or lookup("mqtt_password")


def references(text: str) -> list[str]:
    """The ``${NAME}`` secrets a string needs, in order, without looking any up."""
    return list(dict.fromkeys(m.group(1) for m in _REF.finditer(text)))


def fill(text: str, value: str) -> str:
    """``text`` with every ``${NAME}`` replaced by ``value`` (checks that must not read secrets)."""
    return _REF.sub(value, text)
