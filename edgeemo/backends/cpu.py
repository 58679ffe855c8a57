"""CPU backend: LiteRT (``ai_edge_litert``), falling back to ``tflite_runtime``, for ``.tflite``
files; for ``.onnx`` files (YuNet) OpenCV's DNN module, which opencv-python already brings, or
ONNX Runtime's CPU provider (``inference.cpu_onnx``: about twice as fast on a 1080p frame, for
~28 MiB more memory, so the daemon's default stays OpenCV)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeemo.backends.base import AcceleratorUnavailable, Model, ModelError
from edgeemo.backends.tflite import TFLiteModel, check_model_file


def runtime() -> tuple[Any, Any]:
    """Return ``(Interpreter, load_delegate)`` from whichever TFLite runtime is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, load_delegate
        except ImportError:
            raise ModelError(
                "no TFLite runtime is installed: pip install ai-edge-litert "
                "(or tflite-runtime on platforms without LiteRT wheels)"
            ) from None
    return Interpreter, load_delegate


log = logging.getLogger(__name__)


class CPUModel(TFLiteModel):
    backend = "cpu"


def options(inference: Any) -> dict[str, Any]:
    """This backend's load options from the config's ``inference`` section."""
    return {"threads": inference.threads, "onnx": inference.cpu_onnx}


def load(path: Path, threads: int = 1, onnx: str = "opencv", native_size: bool = False, **_: Any) -> Model:
    if path.suffix.lower() == ".onnx":
        if onnx != "opencv":
            from edgeemo.backends import onnxrt

            try:
                return onnxrt.load(path, threads=threads, providers=["cpu"], native_size=native_size)
            except AcceleratorUnavailable as e:
                if onnx == "onnxruntime":  # asked for by name: say what is missing, run nothing
                    raise ModelError(f"inference.cpu_onnx is onnxruntime, but {e}") from None
                log.info("%s: %s; OpenCV's DNN runs it (inference.cpu_onnx: auto)", path.name, e)
            except ModelError as e:
                if onnx == "onnxruntime":
                    raise
                # Installed but unable to read this file (too old a runtime, say): OpenCV may.
                log.warning("%s; OpenCV's DNN runs it instead (inference.cpu_onnx: auto)", e)
        from edgeemo.backends.onnx_cv import load as load_onnx

        return load_onnx(path, threads=threads)
    check_model_file(path)
    interpreter_cls, _ = runtime()

    def make() -> Any:
        return interpreter_cls(model_path=str(path), num_threads=threads)

    try:
        it = make()
    except ValueError as e:
        raise ModelError(f"{path} is not a valid TFLite model: {str(e).splitlines()[0]}") from None
    return CPUModel(it, path, make)
