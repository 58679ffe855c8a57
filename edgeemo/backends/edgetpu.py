"""Coral Edge TPU backend: the ``libedgetpu.so.1`` delegate loaded through the TFLite runtime.

Google's pycoral stops at Python 3.9 (and the PyPI package called ``pycoral`` is an unrelated
project), so the delegate is loaded directly. ``EDGEEMO_EDGETPU_LIB`` overrides the library
name (tests use it to stand in a library that loads but finds no device).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from edgeemo.backends.base import AcceleratorUnavailable
from edgeemo.backends.cpu import runtime
from edgeemo.backends.tflite import TFLiteModel, check_model_file

DEFAULT_LIB = "libedgetpu.so.1"
CHECK = (
    "check that the Coral is plugged in (lsusb lists 1a6e:089a or 18d1:9302; PCIe: /dev/apex_0 "
    "exists) and that the edgeemo user may open it (group plugdev or apex)"
)


class EdgeTPUModel(TFLiteModel):
    backend = "edgetpu"


def load_delegate_or_explain(device: str | None = None) -> Any:
    lib = os.environ.get("EDGEEMO_EDGETPU_LIB", DEFAULT_LIB)
    _, load_delegate = runtime()
    options = {"device": device} if device else {}
    try:
        # Probe first: a failed load_delegate leaves a half-built Delegate whose destructor
        # prints a stray traceback to stderr, which operators would take for a crash.
        ctypes.CDLL(lib)
        return load_delegate(lib, options)
    except OSError:
        raise AcceleratorUnavailable(
            f"Edge TPU runtime {lib} is not installed: install libedgetpu1-std from Coral's apt "
            f"repository, then {CHECK}"
        ) from None
    except ValueError:
        raise AcceleratorUnavailable(
            f"Edge TPU runtime {lib} loaded but no Edge TPU device answered"
            f"{f' (device {device!r})' if device else ''}: {CHECK}"
        ) from None
    except AttributeError:
        raise AcceleratorUnavailable(
            f"{lib} is not an Edge TPU runtime (no tflite_plugin_create_delegate): reinstall libedgetpu1-std"
        ) from None


def options(inference: Any) -> dict[str, Any]:
    """This backend's load options from the config's ``inference`` section."""
    return {"threads": inference.threads, "device": inference.edgetpu_device}


def load(path: Path, threads: int = 1, device: str | None = None, **_: Any) -> EdgeTPUModel:
    check_model_file(path)
    delegate = load_delegate_or_explain(device)
    interpreter_cls, _ = runtime()
    it = interpreter_cls(model_path=str(path), experimental_delegates=[delegate], num_threads=threads)
    return EdgeTPUModel(it, path)
