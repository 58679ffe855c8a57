"""The backend-neutral model interface every inference backend implements.

A backend loads one model file and runs it on a batch of float32 tensors already normalised
as the model's manifest says, always given channels-last (NHWC); it quantises inputs,
dequantises outputs and transposes to its own layout itself, so callers never care whether a
model is float or int8, TFLite or ONNX, on the CPU or an accelerator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeemo.errors import AcceleratorUnavailable, ModelError

__all__ = ["AcceleratorUnavailable", "Model", "ModelError", "TensorSpec"]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the model file declares it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    layout: str = ""  # "NHWC" or "NCHW" for image tensors, "" where it does not apply
    scale: float = 0.0  # affine int quantisation (real = (q - zero_point) * scale); 0: none
    zero_point: int = 0
    name: str = ""  # the model's own name for it (outputs are matched by name where they have one)

    @property
    def quantized(self) -> bool:
        return self.dtype in (np.int8, np.uint8) and self.scale > 0


class Model(ABC):
    """A loaded model on one backend."""

    backend: str = "?"
    path: Path
    input: TensorSpec
    outputs: list[TensorSpec]

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the image input, whatever the layout."""
        s = self.input.shape
        return (s[2], s[3]) if self.input.layout == "NCHW" else (s[1], s[2])

    def sized(self, height: int, width: int, create: bool = True) -> Model | None:
        """This model with an image input of another size, or None where it cannot be had.

        A fully convolutional detector (BlazeFace) run at the frame's own aspect reads no
        letterbox padding: 128x96 for a 4:3 frame is a quarter less work than 128x128. The
        backend decides whether it can (an Edge TPU model is compiled for one size: None); the
        caller checks that the outputs still fit its decoding. ``create`` False: only a size
        made already (a still picture must not take the size a camera would need)."""
        return self if (height, width) == self.input_hw else None

    def describe(self) -> str:
        """What it runs on, for logs and diagnostics ("cpu", "edgetpu", "onnx (CUDAExecutionProvider)")."""
        return self.backend

    @abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a float32 NHWC batch; returns each output, dequantised, batch first.

        A model whose normalisation is the identity (YuNet: scale 1, offset 0) may be given
        the uint8 frame itself; the backend converts it under its lock, so threads waiting
        for the model hold no float copies.

        Thread-safe: calls are serialised per model."""
