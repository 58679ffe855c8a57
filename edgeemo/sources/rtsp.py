"""RTSP (and HTTP) network cameras through OpenCV's FFmpeg backend, over TCP."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import socket
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from edgeemo.config import redact_url, strip_credentials
from edgeemo.credentials import expand
from edgeemo.sources.base import Source, SourceError

if TYPE_CHECKING:
    from edgeemo.config import CameraConfig

# UDP through NAT and Wi-Fi loses packets and smears frames; TCP is what users expect.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")


def claims(source: str) -> bool:
    return urlsplit(source).scheme.lower() in SCHEMES


def from_config(cam: CameraConfig) -> RTSPSource:
    # ${NAME} references (passwords) are filled in only now, from the environment or credentials.
    return RTSPSource(expand(cam.source, f"cameras.{cam.name}.source"))


def default_name(source: str) -> str:
    p = urlsplit(strip_credentials(source))  # a raw password may hold / or #: never in a name
    return f"{p.hostname or 'camera'}{p.path}"


class RTSPSource(Source):
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_ms = int(timeout_s * 1000)
        self._cap: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return redact_url(self.url)

    def open(self) -> None:
        cap = cv2.VideoCapture(
            self.url,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                self.timeout_ms,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                self.timeout_ms,
            ],
        )
        if not cap.isOpened():
            cap.release()
            # OpenCV only says it failed; ask the camera ourselves why.
            try:
                why = diagnose(self.url, self.timeout_ms / 1000)
            except Exception:  # a diagnosis must never take the camera's reader down
                why = "no stream; check the URL (path, credentials) and that the camera is reachable"
            raise SourceError(f"cannot open {self.describe()}: {why}")
        self._cap = cap

    def read(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, img = self._cap.read()
        if not ok:
            raise SourceError(f"stream {self.describe()} stopped delivering frames")
        return img

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# --- why an RTSP URL does not open -----------------------------------------------------------


def diagnose(url: str, timeout_s: float) -> str:
    """The reason an RTSP stream does not open, in an operator's words: name resolution,
    refused or unanswered connection, credentials (401) or path (404). Never shows the password."""
    # Credentials end at the last "@": a raw "#", "?", "/" or "@" in a password would make
    # urlsplit read part of it as the host, port or fragment.
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    p = urlsplit(f"{scheme}{sep}{hostpart}")
    if p.scheme.lower() != "rtsp" or not p.hostname:
        return (
            f"no stream within {timeout_s:.0f} s; check the URL (path, credentials) and that the "
            "camera is reachable"
        )
    host, port = p.hostname, p.port or 554
    try:
        sock = socket.create_connection((host, port), timeout_s)
    except socket.gaierror:
        return f"the host name {host!r} does not resolve; check the URL or the DNS"
    except ConnectionRefusedError:
        return (
            f"{host}:{port} refused the connection: nothing listens there (wrong port, or the "
            "camera's RTSP service is off)"
        )
    except TimeoutError:
        return (
            f"no answer from {host}:{port} within {timeout_s:.0f} s: the camera is off or "
            "unreachable, the address is wrong, or a firewall drops the connection"
        )
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or e}"
    # The request URI without credentials; they go in an Authorization header.
    uri = p._replace(netloc=f"{host}:{port}" if p.port else host).geturl()
    user = unquote(userinfo.partition(":")[0]) if at else None
    password = unquote(userinfo.partition(":")[2]) if at else ""
    try:
        with sock:
            status, headers = _describe(sock, uri, 1, None)
        if status == 401 and user is not None:
            # A fresh connection: some cameras hang up after a 401.
            with socket.create_connection((host, port), timeout_s) as sock2:
                auth = _authorization(headers.get("www-authenticate", ""), user, password, uri)
                status, headers = _describe(sock2, uri, 2, auth)
    except TimeoutError:
        return f"{host}:{port} accepted the connection but gave no RTSP answer within {timeout_s:.0f} s"
    except (OSError, ValueError) as e:
        return f"{host}:{port} did not answer as an RTSP server ({e})"
    path = p.path or "/"
    if status == 401:
        if user is None:
            return (
                "the camera wants a user name and password (RTSP 401): give them in the URL, "
                "rtsp://user:${PASSWORD}@host/path"
            )
        return f"the camera refused the user name {user!r} or its password (RTSP 401): check both"
    if status == 404:
        return f"the camera has no stream at {path} (RTSP 404): check the path (camera manual or settings)"
    if status == 200:
        return (
            f"the camera offers {path}, but FFmpeg could not open the stream (an unsupported codec "
            "or transport?)"
        )
    return f"the camera answered RTSP {status} to {path}"


def _describe(sock: socket.socket, uri: str, cseq: int, auth: str | None) -> tuple[int, dict[str, str]]:
    request = f"DESCRIBE {uri} RTSP/1.0\r\nCSeq: {cseq}\r\nAccept: application/sdp\r\n"
    if auth:
        request += f"Authorization: {auth}\r\n"
    sock.sendall((request + "User-Agent: edgeemo\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("RTSP/") or not parts[1].isdigit():
        raise ValueError(f"unexpected answer {head[0][:40]!r}")
    headers = {}
    for line in head[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _authorization(challenge: str, user: str, password: str, uri: str) -> str:
    """Basic or Digest (RFC 2617, MD5) credentials for one DESCRIBE."""
    scheme, _, rest = challenge.partition(" ")
    if scheme.lower() != "digest":
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', rest))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"DESCRIBE:{uri}")
    out = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if "auth" in fields.get("qop", "").split(","):
        cnonce = secrets.token_hex(8)
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        return f'{out}, qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}"'
    return f'{out}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
