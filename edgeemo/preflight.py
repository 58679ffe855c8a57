"""Everything ``run`` checks before it opens a camera, in one place that ``check-config`` shares.

``edgeemo run`` and ``edgeemo check-config`` both call :func:`check`, so a config that passes
check-config (the Ansible role's ``validate:``, the unit's ``ExecStartPre``) is one that
``run`` accepts, and a typo never replaces a working config. Every problem is collected and
reported together, one line each, naming the key path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from edgeemo import credentials
from edgeemo.analyzer import DetectorModels, resolve_detector, resolve_emotion
from edgeemo.config import CameraConfig, Config
from edgeemo.errors import ConfigError, EdgeemoError
from edgeemo.modelstore import ResolvedModel
from edgeemo.sources import Source, guess_kind, make_source

# Source kinds whose ``source:`` is a network URL; any other type given a URL is a mistake
# (OpenCV would try, e.g., to open "rtsp://…" as a V4L2 device name, forever).
URL_KINDS = ("rtsp",)
PLACEHOLDER = "unchecked-secret"  # stands in for ${NAME} when secrets are not looked up


class PreflightError(ConfigError):
    """Several problems, each line already prefixed with its kind (config/model error)."""

    prefix = ""


@dataclass
class Checked:
    """What the checks built, for the daemon to use (never built twice)."""

    emotion_model: ResolvedModel | None = None
    detector_models: dict[str, DetectorModels] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    # ${NAME} references not looked up (secrets=False): name → where it is used
    unchecked_secrets: dict[str, str] = field(default_factory=dict)


def _cpu_onnx_problem(cfg: Config, detectors: Iterable[DetectorModels]) -> str | None:
    """``inference.cpu_onnx: onnxruntime`` names a runtime the daemon would fail to find when it
    opens an ONNX model (YuNet) on the CPU: say so here, before any camera is opened."""
    if cfg.inference.cpu_onnx != "onnxruntime":
        return None
    from edgeemo.backends import onnxrt

    for m in (m for d in detectors for m in (d.near, d.small) if m is not None):
        if m.cpu_file.suffix != ".onnx":
            continue
        missing = onnxrt.missing_packages(m.manifest.input.resize == "native")
        if missing:
            return (
                f"inference.cpu_onnx: onnxruntime, but {' and '.join(missing)} is not installed (needed "
                f"for {m.cpu_file.name}): pip install 'edgeemo[onnx]', or set cpu_onnx to auto or opencv"
            )
    return None


def _kind_problem(cam: CameraConfig) -> str | None:
    if cam.type == "auto":
        return None
    guessed = guess_kind(cam.source)
    if guessed in URL_KINDS and cam.type not in URL_KINDS:
        return (
            f"cameras.{cam.name}.type: {cam.type}, but the source is a network URL: "
            f"set type: {guessed}, or leave type out"
        )
    if cam.type in URL_KINDS and guessed not in URL_KINDS:
        return (
            f"cameras.{cam.name}.type: {cam.type}, but the source is not an rtsp://, rtsps://, "
            "http:// or https:// URL: fix the source, or leave type out"
        )
    return None


def check(cfg: Config, models_dir: Path, secrets: bool = True) -> Checked:
    """Resolve models, check camera sources and (unless ``secrets`` is False) look up every
    ``${NAME}`` secret; raise one error listing every problem."""
    out = Checked()
    problems: list[str] = []

    def note(e: EdgeemoError, where: str = "") -> None:
        line = f"{e.prefix}{where}{e}"
        if line not in problems:  # one shared detector: one line, not one per camera
            problems.append(line)

    try:
        out.emotion_model = resolve_emotion(cfg.emotion, models_dir)
    except EdgeemoError as e:
        note(e, "emotion.model: ")
    for cam in cfg.cameras:
        where = f"cameras.{cam.name}.detector.model: " if cam.detector else "detector.model: "
        try:
            out.detector_models[cam.name] = resolve_detector(cfg.detector_for(cam), models_dir)
        except EdgeemoError as e:
            note(e, where)
    problem = _cpu_onnx_problem(cfg, out.detector_models.values())
    if problem:
        note(ConfigError(problem))
    if cfg.inference.backend != "cpu":
        # Compiled twins named in the config are used only on that backend; check them there.
        for key, path in [("emotion.edgetpu_model", cfg.emotion.edgetpu_model)] + [
            (f"cameras.{c.name}.detector.edgetpu_model" if c.detector else "detector.edgetpu_model",
             cfg.detector_for(c).edgetpu_model)
            for c in cfg.cameras
        ]:  # fmt: skip
            if path and not Path(path).expanduser().is_file():
                note(ConfigError(f"{key}: {path} does not exist"))
    for cam in cfg.cameras:
        problem = _kind_problem(cam)
        if problem:
            note(ConfigError(problem))
            continue
        if not cam.enabled:
            continue
        checked = cam
        if not secrets:
            for name in credentials.references(cam.source):
                out.unchecked_secrets.setdefault(name, f"cameras.{cam.name}.source")
            checked = cam.model_copy(update={"source": credentials.fill(cam.source, PLACEHOLDER)})
        try:
            out.sources[cam.name] = make_source(checked)
        except EdgeemoError as e:
            note(e)
    if secrets and cfg.http.enabled:
        from edgeemo.web import check_access

        try:
            check_access(cfg.http)
        except EdgeemoError as e:
            note(e)
    if len(problems) == 1:
        raise PreflightError(problems[0])
    if problems:
        raise PreflightError("\n".join(problems))
    return out
