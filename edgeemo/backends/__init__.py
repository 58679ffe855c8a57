"""Inference backends: the table of them, each one module, imported only when selected.

A missing optional dependency of one backend (the Edge TPU runtime, say) never breaks the
others, because nothing here imports a backend module until it is asked for. Adding a backend
is one module (``load(path, **options) -> Model`` and ``options(inference_config)``) plus one
row here; the config's ``inference.backend`` and the CLI's ``--backend`` choices come from
this table.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from edgeemo.backends.base import AcceleratorUnavailable, Model, ModelError, TensorSpec


@dataclass(frozen=True)
class Backend:
    module: str
    description: str
    # A separate model file this backend runs instead of the CPU one (found beside it by this
    # suffix, or named by the manifest's ``<backend>_file``); None: it runs the CPU file.
    twin_suffix: str | None = None
    # May be absent at run time (library, device): ``inference.fallback`` decides what then.
    accelerator: bool = False
    # How to make a model's twin for this backend (said when one is missing).
    make_twin: str = ""


BACKENDS: dict[str, Backend] = {
    "cpu": Backend("edgeemo.backends.cpu", "TFLite (LiteRT) on the CPU"),
    "edgetpu": Backend(
        "edgeemo.backends.edgetpu",
        "Coral Edge TPU (libedgetpu delegate; Edge TPU compiled model files)",
        twin_suffix="_edgetpu.tflite",
        accelerator=True,
        make_twin="compile it (edgetpu_compiler)",
    ),
    "onnx": Backend(
        "edgeemo.backends.onnxrt",
        "ONNX Runtime: TensorRT, CUDA or CPU execution provider (Jetson; ONNX model files)",
        twin_suffix=".onnx",
        accelerator=True,
        make_twin="export it to ONNX (python -m edgeemo.training.export --onnx for edgeemo's model), "
        "or use detector yunet (ONNX already)",
    ),
}

__all__ = [
    "BACKENDS",
    "AcceleratorUnavailable",
    "Backend",
    "Model",
    "ModelError",
    "TensorSpec",
    "backend_module",
    "load_model",
]


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ModelError(f"unknown inference backend {name!r}; choose one of {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name].module)


def load_model(path: Path, backend: str = "cpu", **options: Any) -> Model:
    return backend_module(backend).load(path, **options)
