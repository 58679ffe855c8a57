"""Stand-ins for NVIDIA's Jetson `onnxruntime_gpu` wheel, for the deploy tests.

The real wheel is built for one JetPack (aarch64, CUDA, TensorRT) and cannot run on this x86
machine, and it is not on PyPI. What the role must do with it is the same for any wheel: take
the file (or the index) it is given, on the controller, and install that instead of PyPI's
`onnxruntime`. So the tests hand the role wheels named and tagged as NVIDIA names and tags
theirs (`onnxruntime_gpu-X.Y.Z-cp310-cp310-linux_aarch64.whl`):

- `empty_wheel`: a tiny wheel with the real one's dependency list, for the wheelhouse check
  (pip, told it is a Jetson, resolves and "installs" it, nothing runs);
- `renamed_wheel`: PyPI's real `onnxruntime` wheel for the test host, renamed
  `onnxruntime_gpu`, so the daemon on a real systemd host runs on the installed file (CPU
  provider only: the CUDA and TensorRT providers it asks for are absent, and `fallback: cpu`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

# What NVIDIA's onnxruntime_gpu wheels (and PyPI's onnxruntime) depend on.
ORT_REQUIRES = ["coloredlogs", "flatbuffers", "numpy>=1.21.6", "packaging", "protobuf", "sympy"]


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _write(path: Path, files: dict[str, bytes], dist_info: str) -> Path:
    record = f"{dist_info}/RECORD"
    lines = [_record_line(n, d) for n, d in files.items()] + [f"{record},,"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(record, "\n".join(lines) + "\n")
    return path


def empty_wheel(dest: Path, version: str, python: str, machine: str, name: str = "onnxruntime_gpu") -> Path:
    """`{name}-{version}-cpXY-cpXY-linux_{machine}.whl` with a marker module and ORT's requirements."""
    py = "cp" + python.replace(".", "")
    tag = f"{py}-{py}-linux_{machine}"
    dist_info = f"{name}-{version}.dist-info"
    meta = [
        "Metadata-Version: 2.1",
        f"Name: {name.replace('_', '-')}",
        f"Version: {version}",
        *[f"Requires-Dist: {r}" for r in ORT_REQUIRES],
    ]
    files = {
        "onnxruntime/__init__.py": b'__version__ = "%s"\nEDGEEMO_TEST_STAND_IN = True\n' % version.encode(),
        f"{dist_info}/METADATA": ("\n".join(meta) + "\n").encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: edgeemo-tests\nRoot-Is-Purelib: false\nTag: {tag}\n"
        ).encode(),
    }
    dest.mkdir(parents=True, exist_ok=True)
    return _write(dest / f"{name}-{version}-{tag}.whl", files, dist_info)


def renamed_wheel(src: Path, dest: Path, name: str = "onnxruntime_gpu") -> Path:
    """PyPI's onnxruntime wheel `src` as `{name}`, tagged linux_<machine> as NVIDIA tags theirs."""
    m = re.match(r"^onnxruntime-([^-]+)-(cp\d+)-(cp\d+)-.*_(x86_64|aarch64)\.whl$", src.name)
    assert m, src.name
    version, py, abi, machine = m.groups()
    tag = f"{py}-{abi}-linux_{machine}"
    old_info, new_info = f"onnxruntime-{version}.dist-info", f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(src) as z:
        for n in z.namelist():
            if n == f"{old_info}/RECORD":
                continue
            data = z.read(n)
            if n == f"{old_info}/METADATA":
                data = re.sub(rb"(?m)^Name: .*$", f"Name: {name.replace('_', '-')}".encode(), data, count=1)
            elif n == f"{old_info}/WHEEL":
                data = re.sub(rb"(?m)^Tag: .*\n", b"", data) + f"Tag: {tag}\n".encode()
            files[n.replace(old_info + "/", new_info + "/", 1)] = data
    dest.mkdir(parents=True, exist_ok=True)
    return _write(dest / f"{name}-{version}-{tag}.whl", files, new_info)
