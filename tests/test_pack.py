"""FER2013 packed to travel to an accelerator lease comes back byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeemo.training.pack import pack, unpack


def _split(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    np.savez(
        path,
        images=rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
        labels=rng.integers(0, 7, n),
        ferplus_votes=rng.integers(0, 10, (n, 10)),
        source_file=np.array(["x"] * n),  # not needed for training: left behind
    )


def test_pack_then_unpack_gives_what_training_reads(tmp_path: Path) -> None:
    src, packed, back = tmp_path / "src", tmp_path / "packed", tmp_path / "back"
    src.mkdir()
    _split(src / "train.npz", 40, 1)
    _split(src / "publictest.npz", 10, 2)
    pack(src, packed, preset=0)
    assert sorted(p.name for p in packed.iterdir()) == [
        "publictest.images.xz", "publictest.meta.npz", "train.images.xz", "train.meta.npz",
    ]  # fmt: skip
    unpack(packed, back)
    for split in ("train", "publictest"):
        with np.load(src / f"{split}.npz") as a, np.load(back / f"{split}.npz") as b:
            assert sorted(b.files) == ["ferplus_votes", "images", "labels"]
            for k in b.files:
                assert np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype


def test_unpack_names_a_truncated_file(tmp_path: Path) -> None:
    src, packed = tmp_path / "src", tmp_path / "packed"
    src.mkdir()
    _split(src / "train.npz", 8, 1)
    _split(src / "publictest.npz", 4, 2)
    pack(src, packed, preset=0)
    meta = dict(np.load(packed / "train.meta.npz"))
    meta["shape"] = np.array([9, 48, 48])  # one face more than the images hold
    np.savez(packed / "train.meta.npz", **meta)
    with pytest.raises(SystemExit, match=r"train\.images\.xz holds 18432 bytes"):
        unpack(packed, tmp_path / "back")
