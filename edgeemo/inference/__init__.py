"""Inference backends, one module each, imported only when selected.

A missing optional dependency of one backend (the Edge TPU runtime, say) never breaks the
others, because nothing here imports a backend module until it is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgeemo.inference.base import AcceleratorUnavailable, ModelError, TFLiteModel

BACKENDS = {"cpu": "edgeemo.inference.cpu", "edgetpu": "edgeemo.inference.edgetpu"}

__all__ = ["BACKENDS", "AcceleratorUnavailable", "ModelError", "TFLiteModel", "load_model"]


def load_model(path: Path, backend: str = "cpu", **options: Any) -> TFLiteModel:
    if backend not in BACKENDS:
        raise ModelError(f"unknown inference backend {backend!r}; choose one of {sorted(BACKENDS)}")
    module = importlib.import_module(BACKENDS[backend])
    return module.load(path, **options)
