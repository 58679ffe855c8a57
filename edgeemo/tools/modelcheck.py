"""What is inside a .tflite: op types, tensor types, and whether the Edge TPU can take all of it.

Used by ``edgeemo models inspect`` and by the tests that guard the shipped int8 model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgeemo.backends.tflite import check_model_file

# Ops the Edge TPU compiler maps (coral.ai/docs/edgetpu/models-intro, supported operations),
# under the names the TFLite runtime reports. DELEGATE is XNNPACK's own node on the CPU.
EDGETPU_OPS = frozenset(
    {
        "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
        "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D", "MEAN",
        "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU",
        "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT",
        "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
        "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
    }
)  # fmt: skip


def inspect_tflite(path: Path) -> dict:
    """Ops and tensor dtypes of a model, as the runtime sees it before any delegate."""
    check_model_file(path)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - tflite_runtime hosts
        from tflite_runtime.interpreter import Interpreter

    # No delegates: XNNPACK would fold the graph into one DELEGATE node and hide the ops.
    it = Interpreter(
        model_path=str(path),
        num_threads=1,
        experimental_op_resolver_type=_builtin_without_default_delegates(),
    )
    it.allocate_tensors()
    ops = Counter(op["op_name"] for op in it._get_ops_details())
    tensors = it.get_tensor_details()
    floats = [t["name"] for t in tensors if np.dtype(t["dtype"]).kind == "f"]
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "ops": dict(sorted(ops.items())),
        "input": {"shape": [int(v) for v in inp["shape"]], "dtype": np.dtype(inp["dtype"]).name},
        "output": {"shape": [int(v) for v in out["shape"]], "dtype": np.dtype(out["dtype"]).name},
        "float_tensors": len(floats),
        "tensor_dtypes": dict(Counter(np.dtype(t["dtype"]).name for t in tensors)),
        "non_edgetpu_ops": sorted(set(ops) - EDGETPU_OPS),
    }


def _builtin_without_default_delegates():
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:  # pragma: no cover
        from tflite_runtime.interpreter import OpResolverType
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
