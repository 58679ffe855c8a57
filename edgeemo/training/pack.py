"""Pack FER2013's npz files small enough to travel to an accelerator machine, and back.

A lease copies the working tree (at most 64 MiB) and nothing beside it, and train.npz is
61 MB: its images compress to 48 MB with xz, which with the public test (6 MB) and the
checkout fits. Only what training reads travels (images, labels, FER+ votes); unpacking gives
npz files that ``train`` and ``load_split`` read unchanged.

    python -m edgeemo.training.pack pack ../shared/data/fer2013 .devdata/fer2013
    python -m edgeemo.training.pack unpack .devdata/fer2013 /tmp/fer2013

Trained teachers travel too (to distil again without training them again): ``pack-teacher``
stores each weight tensor as int8 with one scale per output channel (a VGG teacher: 9.4 MB
in bf16 → 4.7 MB), ``unpack-teacher`` gives back an fp32 checkpoint ``train --teacher``
reads. Per-channel int8 moves a teacher's softmax by well under 1% (measured in the note).
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
            meta = {k: d[k] for k in FIELDS}
            np.savez_compressed(dest / f"{split}.meta.npz", shape=np.array(images.shape), **meta)
        (dest / f"{split}.images.xz").write_bytes(lzma.compress(images.tobytes(), preset=preset))


def unpack(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        if split != "train" and not (src / f"{split}.images.xz").is_file():
            continue  # a lease short of room may leave the public test behind
        with np.load(src / f"{split}.meta.npz") as m:
            shape = tuple(int(v) for v in m["shape"])
            fields = {k: m[k] for k in FIELDS}
        images = np.frombuffer(lzma.decompress((src / f"{split}.images.xz").read_bytes()), dtype=np.uint8)
        if images.size != int(np.prod(shape)):
            raise SystemExit(f"unpack: {src}/{split}.images.xz holds {images.size} bytes, expected {shape}")
        np.savez(dest / f"{split}.npz", images=images.reshape(shape), **fields)


def pack_teacher(src: Path, dest: Path) -> None:
    import torch

    ck = torch.load(src, map_location="cpu", weights_only=False)
    packed = {}
    for k, v in ck["state_dict"].items():
        if v.is_floating_point() and v.ndim >= 2:
            w = v.float().reshape(len(v), -1)
            scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127
            packed[k] = {"q": torch.round(w / scale[:, None]).to(torch.int8).reshape(v.shape), "scale": scale}
        else:
            packed[k] = v.bfloat16() if v.is_floating_point() else v
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"packed_state_dict": packed, "args": ck["args"], "epoch": ck.get("epoch")}, dest)


def unpack_teacher(src: Path, dest: Path) -> None:
    import torch

    ck = torch.load(src, map_location="cpu", weights_only=False)
    state = {}
    for k, v in ck["packed_state_dict"].items():
        if isinstance(v, dict):
            q = v["q"].float()
            state[k] = (q.reshape(len(q), -1) * v["scale"][:, None]).reshape(q.shape)
        else:
            state[k] = v.float() if v.is_floating_point() else v
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "args": ck["args"], "epoch": ck.get("epoch")}, dest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["pack", "unpack", "pack-teacher", "unpack-teacher"])
    p.add_argument("src", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--preset", type=int, default=6, help="xz preset for pack (0 fast … 9 small)")
    a = p.parse_args(argv)
    if a.action == "pack":
        pack(a.src, a.dest, a.preset)
    elif a.action == "unpack":
        unpack(a.src, a.dest)
    elif a.action == "pack-teacher":
        pack_teacher(a.src, a.dest)
    else:
        unpack_teacher(a.src, a.dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
