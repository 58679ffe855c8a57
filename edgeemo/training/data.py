"""FER2013 (+ FER+ votes) as in-memory tensors, and the training targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeemo.ferdata import FER2013_CLASSES, FERPLUS_NOT_A_FACE, ferplus_distribution


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,), FER2013
    targets: np.ndarray  # float32 (N, 7), what the loss is computed against


def load_split(path: Path, ferplus_weight: float = 0.0, drop_not_a_face: bool = False) -> Split:
    """Load an npz; targets mix the FER2013 one-hot with the FER+ vote shares.

    ``ferplus_weight`` of 0 gives plain one-hot targets. Images whose FER+ majority is
    "not a face" are dropped from training when asked: they are noise, not a class.
    """
    with np.load(path) as d:
        images, labels = d["images"], d["labels"].astype(np.int64)
        votes = d["ferplus_votes"] if "ferplus_votes" in d.files else None
    onehot = np.eye(len(FER2013_CLASSES), dtype=np.float32)[labels]
    targets = onehot
    keep = np.ones(len(labels), dtype=bool)
    if votes is not None:
        if drop_not_a_face:
            keep = votes.argmax(axis=1) != FERPLUS_NOT_A_FACE
        if ferplus_weight > 0:
            dist, ok = ferplus_distribution(votes)
            mixed = (1 - ferplus_weight) * onehot + ferplus_weight * dist
            targets = np.where(ok[:, None], mixed, onehot).astype(np.float32)
    return Split(images[keep], labels[keep], targets[keep])
