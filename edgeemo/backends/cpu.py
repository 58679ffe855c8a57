"""CPU backend: LiteRT (``ai_edge_litert``), falling back to ``tflite_runtime``, for ``.tflite``
files; OpenCV's DNN module for ``.onnx`` files (YuNet), which opencv-python already brings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeemo.backends.base import Model, ModelError
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


class CPUModel(TFLiteModel):
    backend = "cpu"


def options(inference: Any) -> dict[str, Any]:
    """This backend's load options from the config's ``inference`` section."""
    return {"threads": inference.threads}


def load(path: Path, threads: int = 1, **_: Any) -> Model:
    if path.suffix.lower() == ".onnx":
        from edgeemo.backends.onnx_cv import load as load_onnx

        return load_onnx(path, threads=threads)
    check_model_file(path)
    interpreter_cls, _ = runtime()
    try:
        it = interpreter_cls(model_path=str(path), num_threads=threads)
    except ValueError as e:
        raise ModelError(f"{path} is not a valid TFLite model: {str(e).splitlines()[0]}") from None
    return CPUModel(it, path)
