"""ONNX models on the CPU through OpenCV's DNN module (the ``cpu`` backend's runtime for .onnx).

opencv-python is a dependency anyway, so small ONNX detectors (YuNet) need nothing more.
Inputs may have a free height and width: the shape of each batch decides.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeemo.backends.base import Model, ModelError, TensorSpec

ONNX_MAGIC = b"\x08"  # an ONNX ModelProto starts with field 1 (ir_version), varint


class OpenCVDNNModel(Model):
    backend = "cpu"

    def __init__(self, net: Any, path: Path) -> None:
        self.path = path
        self._net = net
        self._lock = threading.Lock()  # a Net is not safe to run from two threads at once
        self._names = list(net.getUnconnectedOutLayersNames())
        self.input = TensorSpec((1, 3, -1, -1), np.dtype(np.float32), "NCHW", name="input")
        self.outputs = [TensorSpec((), np.dtype(np.float32), name=n) for n in self._names]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        # The float NCHW copy is made under the lock, so cameras waiting for the net hold only
        # their uint8 frames: four cameras' whole-frame scans met at start-up, each holding two
        # 3.7 MiB float copies of a 640x480 frame while it waited (scripts/soak.py).
        with self._lock:
            if batch.dtype == np.uint8:
                blob = cv2.dnn.blobFromImages(list(batch))  # one pass: uint8 NHWC -> float NCHW
            else:
                blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
            self._net.setInput(blob)
            del blob  # the net keeps its own reference until the next input
            outs = self._net.forward(self._names)
            return [np.array(o, copy=True) for o in outs]


def load(path: Path, threads: int = 1, **_: Any) -> OpenCVDNNModel:
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; run `edgeemo models fetch` or fix the path")
    with path.open("rb") as f:
        head = f.read(1)
    if head != ONNX_MAGIC:
        raise ModelError(f"{path} is not an ONNX model (truncated or wrong file)")
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as e:
        raise ModelError(
            f"{path}: OpenCV cannot read this ONNX model: {str(e).strip().splitlines()[-1]}"
        ) from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    del threads  # OpenCV's thread count is process-wide (cv2.setNumThreads), not per model
    return OpenCVDNNModel(net, path)
