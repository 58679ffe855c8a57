"""CPU backend: LiteRT (``ai_edge_litert``), falling back to ``tflite_runtime``, for ``.tflite``
files; for ``.onnx`` files (YuNet) ONNX Runtime's CPU provider where it is installed (the onnx
extra), else OpenCV's DNN module, which opencv-python already brings."""

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


def _onnxruntime_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def load(path: Path, threads: int = 1, **_: Any) -> Model:
    if path.suffix.lower() == ".onnx":
        if _onnxruntime_installed():
            from edgeemo.backends.onnxrt import load as load_ort

            # Measured on one core: YuNet on a 1080p frame 64 ms here against 143-172 ms on
            # OpenCV's DNN. The image size is left free, as OpenCV leaves it.
            return load_ort(path, threads=threads, providers=["cpu"], native_size=True)
        from edgeemo.backends.onnx_cv import load as load_onnx

        return load_onnx(path, threads=threads)
    check_model_file(path)
    interpreter_cls, _ = runtime()
    try:
        it = interpreter_cls(model_path=str(path), num_threads=threads)
    except ValueError as e:
        raise ModelError(f"{path} is not a valid TFLite model: {str(e).splitlines()[0]}") from None
    return CPUModel(it, path)
