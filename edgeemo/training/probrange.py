"""Give an int8 model's probability outputs the full [0, 1] range.

The static quantizer sets each tensor's range from the calibration data. For the tensors after
the softmaxes (the ensemble's requantize, concatenation and mean) it found no probability
above ~0.65, so the int8 output could never say more than 0.648 (issue 16, defect 2): a face
that is surely happy read 0.648, and a face's scores added up to ~0.92. Softmax's own int8
output is fixed at scale 1/256, zero point -128 (exactly [0, 1)); this puts every tensor between
the last softmaxes and the output on that same grid, so the ops after them (QUANTIZE,
CONCATENATION, RESHAPE, MEAN: averaging and moving values, nothing else) keep the full range.
"""

from __future__ import annotations

from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

PROB_SCALE, PROB_ZERO = 1.0 / 256.0, -128  # TFLite's fixed int8 softmax output grid
# Ops that only move, join or average probabilities: the grid can pass through them.
PASS_THROUGH = {"QUANTIZE", "CONCATENATION", "RESHAPE", "MEAN", "AVERAGE_POOL_2D"}


def _op_names(model: schema.Model) -> list[str]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        out.append(names.get(builtin, str(builtin)))
    return out


def widen(path: Path, out: Path | None = None) -> list[str]:
    """Rewrite ``path`` (or write ``out``) so the tensors from the softmaxes to the outputs
    are on the [0, 1) grid. Returns the names of the tensors changed.

    The scales are patched in place in the file's bytes (same size, nothing else moves):
    models over 2 GB-style layouts keep their buffers after the flatbuffer, which a repack
    through the object API would lose."""
    data = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    op_names = _op_names(model)
    changed: list[str] = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        producer = {}
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            for o in op.OutputsAsNumpy():
                producer[int(o)] = op
        stack = [int(t) for t in graph.OutputsAsNumpy()]
        seen: set[int] = set()
        path_tensors: list[int] = []
        found_softmax = False
        while stack:
            t = stack.pop()
            if t in seen or t not in producer:
                continue
            seen.add(t)
            op = producer[t]
            name = op_names[op.OpcodeIndex()]
            if name == "SOFTMAX":
                found_softmax = True
                continue
            if name not in PASS_THROUGH:
                continue
            path_tensors.append(t)
            inputs = [int(i) for i in op.InputsAsNumpy() if i >= 0]
            # The data input only (MEAN's second input is its axes), all of a concatenation's.
            stack.extend(inputs if name == "CONCATENATION" else inputs[:1])
        if not found_softmax:
            continue
        for t in path_tensors:
            tensor = graph.Tensors(t)
            q = tensor.Quantization()
            if tensor.Type() != schema.TensorType.INT8 or q is None or q.ScaleLength() != 1:
                continue
            q.ScaleAsNumpy()[:] = PROB_SCALE  # views into ``data``: written in place
            q.ZeroPointAsNumpy()[:] = PROB_ZERO
            changed.append(tensor.Name().decode())
    (out or path).write_bytes(bytes(data))
    return changed


if __name__ == "__main__":
    import sys

    for name in widen(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None):
        print("on the [0, 1) grid:", name)
