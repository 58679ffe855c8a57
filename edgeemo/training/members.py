"""Cut the exported two-network ensemble into one file per network, for the early exit.

The ensemble file (``edgeemo_fer_int8.tflite``) runs both networks on every face and averages
their softmaxes. The daemon's classifier on the CPU instead runs the first network alone and
the second only when the first is unsure (``emotion.early_exit``). Each member file is the
ensemble's own subgraph up to that network's softmax: the same int8 weights and ops, so a
member's output is bit for bit the tensor it gives inside the ensemble.

    python -m edgeemo.training.members models/edgeemo_fer_int8.tflite

writes ``edgeemo_fer_int8.m1.tflite`` and ``.m2.tflite`` beside it and prints their sha256s
(``export`` does this and puts them in the catalog entry).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _schema():  # type: ignore[no-untyped-def]
    from ai_edge_litert import schema_py_generated as schema

    return schema


def split(ensemble: bytes) -> list[bytes]:
    """One TFLite model per SOFTMAX in the ensemble: the ops that softmax depends on, with the
    ensemble's input as input and the softmax's output (int8, scale 1/256) as output."""
    s = _schema()
    src = s.ModelT.InitFromObj(s.Model.GetRootAsModel(ensemble, 0))
    if len(src.subgraphs) != 1:
        raise ValueError(f"expected one subgraph, found {len(src.subgraphs)}")
    for b in src.buffers:
        # Data stored after the flatbuffer (offset/size) is copied in, as the cut files are rebuilt.
        if b.offset and b.offset > 1:
            b.data = np.frombuffer(ensemble[b.offset : b.offset + b.size], np.uint8)
            b.offset = b.size = 0
    g = src.subgraphs[0]
    code_of = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in src.operatorCodes]
    producer = {int(t): i for i, op in enumerate(g.operators) for t in op.outputs}
    softmaxes = [
        int(op.outputs[0]) for op in g.operators if code_of[op.opcodeIndex] == s.BuiltinOperator.SOFTMAX
    ]
    if len(softmaxes) < 2:
        raise ValueError(
            f"expected an ensemble of networks (two or more SOFTMAX ops), found {len(softmaxes)}"
        )
    out = []
    for head in softmaxes:
        needed: set[int] = set()
        todo = [head]
        while todo:
            t = todo.pop()
            if t in producer and producer[t] not in needed:
                needed.add(producer[t])
                todo += [int(i) for i in g.operators[producer[t]].inputs if i >= 0]
        out.append(_subset(src, sorted(needed), [int(i) for i in g.inputs], [head]))
    return out


def _subset(src, ops: list[int], inputs: list[int], outputs: list[int]) -> bytes:  # type: ignore[no-untyped-def]
    """A copy of ``src`` with only these operators (in order), their tensors and buffers."""
    import copy

    import flatbuffers

    m = copy.deepcopy(src)
    g = m.subgraphs[0]
    kept_ops = [g.operators[i] for i in ops]
    tensors = sorted(
        {int(t) for op in kept_ops for t in [*op.inputs, *op.outputs] if t >= 0} | set(inputs) | set(outputs)
    )
    t_new = {t: k for k, t in enumerate(tensors)}
    # Buffer 0 is the empty sentinel every tensor without data points at; keep it first.
    buffers = sorted({0} | {int(g.tensors[t].buffer) for t in tensors})
    b_new = {b: k for k, b in enumerate(buffers)}
    codes = sorted({op.opcodeIndex for op in kept_ops})
    c_new = {c: k for k, c in enumerate(codes)}
    for op in kept_ops:
        op.inputs = np.array([t_new[int(t)] if t >= 0 else -1 for t in op.inputs], np.int32)
        op.outputs = np.array([t_new[int(t)] for t in op.outputs], np.int32)
        op.opcodeIndex = c_new[op.opcodeIndex]
    g.tensors = [g.tensors[t] for t in tensors]
    for t in g.tensors:
        t.buffer = b_new[int(t.buffer)]
    g.operators = kept_ops
    g.inputs = np.array([t_new[t] for t in inputs], np.int32)
    g.outputs = np.array([t_new[t] for t in outputs], np.int32)
    m.buffers = [m.buffers[b] for b in buffers]
    m.operatorCodes = [m.operatorCodes[c] for c in codes]
    m.signatureDefs = None  # they name the ensemble's output tensor
    m.metadata = None  # may point at buffers no longer present
    m.metadataBuffer = None
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_members(ensemble: Path) -> list[Path]:
    """``<stem>.m1.tflite``, ``.m2.tflite``… beside the ensemble file."""
    parts = split(ensemble.read_bytes())
    paths = [ensemble.with_name(f"{ensemble.stem}.m{k + 1}.tflite") for k in range(len(parts))]
    for path, data in zip(paths, parts, strict=True):
        path.write_bytes(data)
    return paths


def main(argv: list[str] | None = None) -> int:
    from edgeemo.modelstore import sha256_of

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ensemble", type=Path)
    a = p.parse_args(argv)
    for path in write_members(a.ensemble):
        print(f"{path} {path.stat().st_size} bytes sha256 {sha256_of(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
