"""Pack FER2013's npz files small enough to travel to an accelerator machine, and back.

A lease copies the working tree (at most 64 MiB) and nothing beside it, and train.npz is
61 MB: its images compress to 48 MB with xz, which with the public test (6 MB) and the
checkout fits. Only what training reads travels (images, labels, FER+ votes); unpacking gives
npz files that ``train`` and ``load_split`` read unchanged.

    python -m edgeemo.training.pack pack ../shared/data/fer2013 .devdata/fer2013
    python -m edgeemo.training.pack unpack .devdata/fer2013 /tmp/fer2013
"""

from __future__ import annotations

import argparse
import lzma
from pathlib import Path

import numpy as np

SPLITS = ("train", "publictest")
FIELDS = ("labels", "ferplus_votes")


def pack(src: Path, dest: Path, preset: int = 6) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with np.load(src / f"{split}.npz") as d:
            images = np.ascontiguousarray(d["images"], dtype=np.uint8)
            np.savez(dest / f"{split}.meta.npz", shape=np.array(images.shape), **{k: d[k] for k in FIELDS})
        (dest / f"{split}.images.xz").write_bytes(lzma.compress(images.tobytes(), preset=preset))


def unpack(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with np.load(src / f"{split}.meta.npz") as m:
            shape = tuple(int(v) for v in m["shape"])
            fields = {k: m[k] for k in FIELDS}
        images = np.frombuffer(lzma.decompress((src / f"{split}.images.xz").read_bytes()), dtype=np.uint8)
        if images.size != int(np.prod(shape)):
            raise SystemExit(f"unpack: {src}/{split}.images.xz holds {images.size} bytes, expected {shape}")
        np.savez(dest / f"{split}.npz", images=images.reshape(shape), **fields)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["pack", "unpack"])
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--preset", type=int, default=6, help="xz preset for pack (0 fast … 9 small)")
    a = p.parse_args(argv)
    if a.action == "pack":
        pack(a.src, a.dest, a.preset)
    else:
        unpack(a.src, a.dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
