"""The local web face (opt-in): ``/health``, ``/predict``, ``/metrics``, ``/api`` and the live
view. This package's ``__init__`` stays light (the preflight imports it); the server and its
libraries (Starlette, uvicorn, Pillow, prometheus_client) load only when ``http`` is enabled."""

from __future__ import annotations

import ipaddress

from edgeemo import credentials
from edgeemo.config import HTTPConfig
from edgeemo.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as wide


def http_token() -> str | None:
    """The bearer token, never from the YAML: ``$EDGEEMO_HTTP_TOKEN`` or the credential
    ``http_token`` (systemd ``LoadCredential=``). Empty counts as unset."""
    token = credentials.lookup("EDGEEMO_HTTP_TOKEN") or credentials.lookup("http_token") or ""
    return token.strip() or None


def check_access(cfg: HTTPConfig) -> str | None:
    """The token to require, or None on loopback without one; wider without one: ConfigError."""
    token = http_token()
    if cfg.enabled and token is None and not is_loopback(cfg.host):
        raise ConfigError(
            f"http.host is {cfg.host}, beyond loopback, so the web face needs a bearer token: "
            "set EDGEEMO_HTTP_TOKEN or a systemd credential named http_token "
            "(or listen on 127.0.0.1)"
        )
    return token
