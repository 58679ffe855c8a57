"""Typed configuration: YAML in, validated model out, errors an operator can act on.

Unknown keys are rejected everywhere (``extra="forbid"``) so a typo never silently turns
into a default. Secrets are never read from the YAML: see :mod:`edgeemo.credentials`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeemo.backends import BACKENDS
from edgeemo.backends.onnxrt import PROVIDERS
from edgeemo.errors import ConfigError
from edgeemo.sources import SOURCES, guess_kind

# Choices derived from the plug-in tables, so a new backend or source kind is one row there.
BackendName = Literal[tuple(BACKENDS)]  # type: ignore[valid-type]
SourceType = Literal[("auto", *SOURCES)]  # type: ignore[valid-type]
ProviderName = Literal[tuple(PROVIDERS)]  # type: ignore[valid-type]

NAME_RE = r"^[A-Za-z0-9_-]{1,64}$"  # safe in MQTT topics and HA object ids
MAX_PREFIX_BYTES = 1024  # MQTT topics end at 65,535 bytes; device, camera and suffix come after
MAX_YAML_NODES = 100_000  # a config is a few hundred; aliases must not expand into millions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TLSConfig(_Strict):
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's")
    certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    keyfile: Path | None = Field(None, description="client key (mutual TLS)")
    insecure: bool = Field(False, description="skip hostname verification (testing only)")


class MQTTConfig(_Strict):
    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535, description="default 1883, or 8883 with TLS")
    username: str | None = Field(
        None, description="password comes from $EDGEEMO_MQTT_PASSWORD or credential mqtt_password"
    )
    tls: TLSConfig | None = None
    topic_prefix: str = Field("edgeemo", pattern=r"^[^#+]+$")  # and see _topic_prefixes
    client_id: str | None = Field(None, description="default: edgeemo-<device id>")
    keepalive_s: int = Field(30, ge=5, le=3600)
    discovery: bool = True
    discovery_prefix: str = Field("homeassistant", pattern=r"^[^#+]+$")
    stats_interval_s: float = Field(30.0, gt=0)
    state_heartbeat_s: float = Field(60.0, gt=0)
    max_queued_messages: int = Field(10000, ge=10, description="bound on unsent QoS 1 messages")

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic_prefixes(cls, v: str) -> str:
        # What the broker would take, silently drop ($SYS…) or refuse at the first publish.
        if v.startswith("$"):
            raise ValueError("must not start with $ (topics starting with $ are the broker's own)")
        if "\0" in v:
            raise ValueError("must not contain a NUL character")
        if len(v.encode()) > MAX_PREFIX_BYTES:
            raise ValueError(f"is longer than {MAX_PREFIX_BYTES} bytes")
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_password_in_yaml(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "the MQTT password is never read from the config file; set the environment "
                "variable EDGEEMO_MQTT_PASSWORD or a systemd credential named mqtt_password"
            )
        return data

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class DetectorConfig(_Strict):
    model: str = Field(
        "auto",
        description="auto (faces of every size: BlazeFace for near faces, YuNet for small ones), "
        "short_range, full_range, yunet, or a path to a model with a manifest beside it",
    )
    edgetpu_model: str | None = Field(
        None, description="Edge TPU compiled twin; default: <model>_edgetpu.tflite if present"
    )
    score_threshold: float | None = Field(
        None, gt=0, lt=1, description="default: the model's own (BlazeFace 0.6, YuNet 0.85)"
    )
    nms_iou: float = Field(0.3, gt=0, le=1)
    min_face_px: int = Field(16, ge=1, description="faces smaller than this (pixels) are ignored")
    full_frame_every_s: float = Field(
        5.0,
        gt=0,
        description="auto/yunet: how often the small-face detector scans the whole frame (up "
        "to 3x longer while only tracked near people moved); in between it looks only where the "
        "picture moved and around faces it tracks",
    )
    max_faces: int = Field(10, ge=1)
    tile_px: int = Field(
        320,
        description="YuNet reads pictures larger than this in tiles of this size (bounded memory, "
        "~7 MiB); 0: one pass over the whole picture (~3.5x faster at 1080p, ~150 MiB working memory) "
        "up to 2560x1440, tiles beyond",
    )

    @field_validator("tile_px")
    @classmethod
    def _tile(cls, v: int) -> int:
        if v != 0 and v < 256:
            raise ValueError("must be 0 (no tiles) or at least 256 (tiles overlap by 160 px)")
        return v


class EmotionConfig(_Strict):
    model: str = Field("edgeemo_fer_int8", description="built-in model name or .tflite path")
    edgetpu_model: str | None = None
    crop_margin: float = Field(0.1, ge=0, le=1, description="box margin added around the face")
    min_face_px: int = Field(
        32,
        ge=1,
        description="narrower faces are counted but their expression is not read (measured on "
        "muxspace: 68% at full size, 66% at 32 px, 56% at 20 px)",
    )
    early_exit: bool = Field(
        True,
        description="backend cpu, a model with member networks (the default's two): read a face "
        "with the first alone when it is sure, the second only otherwise (half the cost on most "
        "faces, the same accuracy); false: every network on every face",
    )


class InferenceConfig(_Strict):
    backend: BackendName = "cpu"  # type: ignore[valid-type]
    fallback: Literal["cpu", "none"] = Field(
        "cpu", description="when the Edge TPU or the GPU (onnx) cannot be used: run on the CPU or stop"
    )
    threads: int = Field(1, ge=1, le=64, description="CPU threads per model")
    cpu_onnx: Literal["opencv", "onnxruntime", "auto"] = Field(
        "opencv",
        description="backend cpu: what runs ONNX models (YuNet): OpenCV's DNN (comes with "
        "opencv-python; least memory), ONNX Runtime's CPU provider (pip install 'edgeemo[onnx]'; "
        "~2x faster at 1080p, ~28 MiB more), or auto (ONNX Runtime when installed, else OpenCV)",
    )
    edgetpu_device: str | None = Field(None, description="e.g. usb, usb:0, pci:0; default: any")
    providers: list[ProviderName] | None = Field(  # type: ignore[valid-type]
        None,
        min_length=1,
        description="backend onnx: ONNX Runtime execution providers in order of preference "
        "(tensorrt, cuda, cpu); default: the best present, in that order",
    )
    engine_cache_dir: Path | None = Field(
        None, description="backend onnx: TensorRT engine cache; default: <state_dir>/onnx-trt-cache"
    )

    @field_validator("providers")
    @classmethod
    def _providers_once(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("lists a provider twice")
        return v


class TrackerConfig(_Strict):
    iou_threshold: float = Field(0.3, gt=0, lt=1)
    min_hits: int = Field(2, ge=1, description="detections before a face counts as entered")
    max_age_s: float = Field(2.0, gt=0, description="unseen this long, a face has left")
    steady_every: int = Field(
        2, ge=1, le=10, description="while every tracked face is confirmed and still, analyse every Nth frame"
    )


class AggregatorConfig(_Strict):
    halflife_s: float = Field(1.0, gt=0, description="smoothing of per-frame probabilities")
    dwell_s: float = Field(2.0, ge=0, description="a new emotion must lead this long to count")
    margin: float = Field(0.1, ge=0, lt=1, description="lead over the current emotion needed")
    ref_face_px: int = Field(96, ge=1, description="faces this size or larger weigh fully")
    window_s: float = Field(10.0, gt=0, description="per-camera distribution window")


def _check_polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points [x, y], got {len(points)}")
    if any(x < 0 or y < 0 for x, y in points):
        raise ValueError("polygon points are frame pixels from the top-left corner: no negative x or y")
    area = 0.5 * abs(
        sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True))
    )
    if area < 1:
        raise ValueError("the polygon encloses no area (its points lie on one line)")
    return points


Polygon = Annotated[list[tuple[float, float]], AfterValidator(_check_polygon)]


class CameraConfig(_Strict):
    name: str = Field(pattern=NAME_RE)
    source: str = Field(description="rtsp://…, a video/image file, /dev/videoN or picamera2")
    type: SourceType = "auto"  # type: ignore[valid-type]
    enabled: bool = True
    detect_fps: float = Field(5.0, ge=0.1, le=120, description="frames analysed per second")
    loop: bool = Field(False, description="file sources: start again at the end")
    width: int | None = Field(None, ge=16, description="v4l2/picamera2 capture width")
    height: int | None = Field(None, ge=16)
    offline_after_s: float = Field(10.0, gt=0, description="no frame this long: offline")
    detector: DetectorConfig | None = Field(None, description="per-camera detector override")
    masks: list[Polygon] = Field(
        default_factory=list,
        description="polygons [[x, y], ...] in frame pixels: faces there are never analysed or "
        "counted, motion there is ignored (a TV, a neighbour's window)",
    )
    zones: dict[Annotated[str, Field(pattern=NAME_RE)], Polygon] = Field(
        default_factory=dict, description="name → polygon: events and states say which zones a face is in"
    )

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("camera source is empty")
        return v

    @property
    def kind(self) -> str:
        return self.type if self.type != "auto" else guess_kind(self.source)


class DeviceConfig(_Strict):
    id: str | None = Field(None, pattern=NAME_RE, description="default: from /etc/machine-id")
    name: str | None = Field(None, description="shown in Home Assistant; default: host name")


class MotionConfig(_Strict):
    enabled: bool = Field(True, description="skip analysis while neither scene nor tracked faces change")
    threshold: int = Field(12, ge=1, le=255, description="grey levels a thumbnail pixel must change by")
    min_area: float = Field(0.002, ge=0, le=1, description="share of thumbnail pixels that must change")
    min_face_area: float = Field(
        0.02, ge=0, le=1, description="share of a tracked face's pixels (at 24x24) that must change"
    )
    max_skip_s: float = Field(2.0, gt=0, description="analyse at least this often even when still")


class OutboxConfig(_Strict):
    max_events: int = Field(
        10000, ge=10, description="undelivered events kept on disk; oldest dropped beyond"
    )
    max_age_s: float = Field(7 * 86400, gt=0, description="undelivered events older than this are dropped")


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class HTTPConfig(_Strict):
    """The local web face (``edgeemo.web``): off unless asked for. Bound beyond loopback it needs
    a bearer token, from ``$EDGEEMO_HTTP_TOKEN`` or the systemd credential ``http_token``."""

    enabled: bool = Field(False, description="serve /health, /predict, /metrics, /api and the live view")
    host: str = Field("127.0.0.1", min_length=1, description="address to listen on; 0.0.0.0 for the LAN")
    port: int = Field(8780, ge=0, le=65535, description="0: any free port (tests)")
    snapshots: bool = Field(
        False, description="keep each camera's latest frame for /api/cameras/NAME/latest.jpg (privacy: off)"
    )
    max_body_mb: float = Field(8.0, gt=0, le=256, description="larger /predict bodies get 413")
    max_image_mpx: float = Field(
        24.0, gt=0, le=100, description="larger /predict images (megapixels) get 413 before decoding"
    )
    predict_workers: int = Field(1, ge=1, le=16, description="/predict requests analysed at once")
    predict_queue: int = Field(4, ge=0, le=256, description="more waiting than this: 429 at once")


class Config(_Strict):
    device: DeviceConfig = DeviceConfig()
    mqtt: MQTTConfig = MQTTConfig()
    inference: InferenceConfig = InferenceConfig()
    detector: DetectorConfig = DetectorConfig()
    emotion: EmotionConfig = EmotionConfig()
    tracker: TrackerConfig = TrackerConfig()
    aggregator: AggregatorConfig = AggregatorConfig()
    outbox: OutboxConfig = OutboxConfig()
    motion: MotionConfig = MotionConfig()
    cameras: Annotated[list[CameraConfig], Field(min_length=1)]
    models_dir: Path | None = Field(None, description="default: see edgeemo.modelstore")
    state_dir: Path | None = Field(None, description="default: $STATE_DIRECTORY or ~/.local/state")
    logging: LoggingConfig = LoggingConfig()
    http: HTTPConfig = HTTPConfig()

    @model_validator(mode="after")
    def _engine_cache_in_state_dir(self) -> Config:
        if self.inference.engine_cache_dir is None and self.state_dir is not None:
            self.inference.engine_cache_dir = self.state_dir / "onnx-trt-cache"
        return self

    @model_validator(mode="after")
    def _unique_camera_names(self) -> Config:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.name in seen:
                raise ValueError(f"camera name {cam.name!r} is used twice; names must be unique")
            seen.add(cam.name)
        return self

    def detector_for(self, cam: CameraConfig) -> DetectorConfig:
        return cam.detector or self.detector


_URL_START = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme://, userinfo or None, host and the rest)``. The userinfo ends at the *last* ``@``:
    a password typed raw may hold ``#``, ``?``, ``/`` or ``@``, which ``urlsplit`` would take for
    the end of the host part (and then show the password as a fragment or a path)."""
    m = _URL_START.match(url)
    if not m or "@" not in m.group(2):
        return (m.group(1) if m else ""), None, (m.group(2) if m else url)
    userinfo, _, rest = m.group(2).rpartition("@")
    return m.group(1), userinfo, rest


def strip_credentials(url: str) -> str:
    """The URL without its user and password (for names derived from it)."""
    scheme, userinfo, rest = _split_userinfo(url)
    return url if userinfo is None else scheme + rest


def redact_url(url: str) -> str:
    """Hide credentials of a URL for logs and errors: ``user:***@host``, or ``***@host``
    when the user part stands alone (some cameras take a bare token there). Any password,
    however written: percent-encoded or raw, with ``#``, ``?``, ``/``, ``@`` or ``:`` in it."""
    scheme, userinfo, rest = _split_userinfo(url)
    if userinfo is None:
        return url
    user = unquote(userinfo.split(":", 1)[0]) if ":" in userinfo else ""
    return f"{scheme}{user}:***@{rest}" if user else f"{scheme}***@{rest}"


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic error location as a key path, using camera names where known."""
    out: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            name = (
                node[part].get("name")
                if isinstance(node, list) and part < len(node) and isinstance(node[part], dict)
                else None
            )
            if not isinstance(name, str):  # a hostile name: a list, a mapping
                name = None
            elif len(name) > 64:  # longer than any valid name: a pasted blob must not drown the line
                name = f"{name[:20]}…"
            out[-1] = f"{out[-1]}[{part}]" + (f"({name})" if name else "") if out else f"[{part}]"
        else:
            out.append(str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(out) or "(top level)"


def format_validation_error(err: ValidationError, data: Any, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        path = _loc(loc, data)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(
                f"{origin}: {path}: unknown key (check the spelling; see config/edgeemo.example.yaml)"
            )
        elif e["type"] == "missing":
            lines.append(f"{origin}: {path}: required key is missing")
        else:
            value = e.get("input")
            shown = ""
            if isinstance(value, str | int | float | bool):  # containers: never str() them
                text = str(value)
                # Redact before cutting (a cut URL could lose its @ and show the password).
                text = redact_url(text) if len(text) <= 4096 else text[:20]
                if len(text) > 60 or len(str(value)) > 4096:  # a pasted blob must not drown it
                    text = f"{text[:60]}… ({len(str(value))} characters)"
                shown = f" (got {text!r})"
            lines.append(f"{origin}: {path}: {msg}{shown}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, data, origin)) from None


def load_yaml(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {e.start}; save the file as UTF-8") from None
    try:
        _check_size(yaml.compose(text, Loader=yaml.SafeLoader), path)
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a config") from None


def _check_size(root: yaml.Node | None, path: Path) -> None:
    """Refuse a document whose aliases expand beyond MAX_YAML_NODES (a "billion laughs" file:
    1.5 KB of nested aliases once took 59 s and 2.2 GB before failing). Counted on the node
    graph, where an alias is a shared node, so counting costs what the file costs."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = MAX_YAML_NODES + 1  # a node inside itself (a recursive alias)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_YAML_NODES:
                break
        sizes[id(node)] = total
        return total

    if root is not None and size(root) > MAX_YAML_NODES:
        raise ConfigError(
            f"{path}: the YAML expands to more than {MAX_YAML_NODES} values through its aliases "
            "(&anchor/*alias); a config never needs that many: write it out, or use fewer aliases"
        )


def load_config(path: Path) -> Config:
    return parse_config(load_yaml(path), str(path))
