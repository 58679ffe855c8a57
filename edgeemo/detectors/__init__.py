"""Face detectors: one decoder module per model family, chosen by the manifest's ``decoder``.

Adding a detector (YuNet, SCRFD, …) is one module here with a :class:`FaceDetector` subclass
named ``Detector``, one row in ``DECODERS``, and a catalog entry (``edgeemo/catalog/``) whose
manifest names the decoder. Decoder modules are imported only when a model needs them.
"""

from __future__ import annotations

import importlib

from edgeemo.backends import Model, ModelError
from edgeemo.config import DetectorConfig
from edgeemo.detectors.base import Detection, FaceDetector, iou_matrix
from edgeemo.modelstore import Manifest

DECODERS: dict[str, str] = {
    "blazeface": "edgeemo.detectors.blazeface",
    "yunet": "edgeemo.detectors.yunet",
}
DEFAULT_DECODER = "blazeface"  # manifests written before ``decoder`` existed are BlazeFace's

__all__ = ["DECODERS", "Detection", "FaceDetector", "iou_matrix", "make_detector"]


def make_detector(model: Model, manifest: Manifest, cfg: DetectorConfig) -> FaceDetector:
    name = manifest.decoder or DEFAULT_DECODER
    if name not in DECODERS:
        raise ModelError(
            f"manifest {manifest.name!r} names decoder {name!r}, which edgeemo does not have "
            f"(it has: {', '.join(sorted(DECODERS))})"
        )
    return importlib.import_module(DECODERS[name]).Detector(model, manifest, cfg)
