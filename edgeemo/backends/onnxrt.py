"""ONNX Runtime backend (``backend: onnx``): TensorRT, CUDA or CPU execution providers.

Built for Jetson gateways, whose GPU the TFLite backends leave idle. Each model gets an
``InferenceSession`` on the best provider present, in the order TensorRT, CUDA, CPU, or the
order ``inference.providers`` gives. A GPU provider that was asked for (or, with the default
order, no GPU provider at all) but is not there follows ``inference.fallback`` like the Edge
TPU: the CPU provider with a warning, or :class:`AcceleratorUnavailable` with ``none``.
What each model really runs on is ``session.get_providers()[0]``, logged at open and kept as
:attr:`ONNXRuntimeModel.provider` (``describe()``).

TensorRT builds an engine per model the first time (minutes on a Jetson); engines and timing
caches are kept under the state directory (``<state>/onnx-trt-cache``, or
``inference.engine_cache_dir``) so a restart reuses them.

ONNX Runtime is an optional dependency (``pip install 'edgeemo[onnx]'``); on Jetson its GPU
build comes from NVIDIA's wheels for the installed JetPack, not from PyPI.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeemo.backends.base import AcceleratorUnavailable, Model, ModelError, TensorSpec

log = logging.getLogger(__name__)

# Config names → ONNX Runtime's; the config validates against these keys.
PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
DEFAULT_ORDER = ("tensorrt", "cuda", "cpu")
GPU = ("tensorrt", "cuda")
ONNX_MAGIC = b"\x08"  # an ONNX ModelProto starts with field 1 (ir_version), varint
# TensorRT shape profile for models that run at the frame's own size (YuNet): up to 1080p
# padded to a multiple of 32, so one engine serves every frame and region.
NATIVE_MIN, NATIVE_OPT, NATIVE_MAX = (32, 32), (480, 640), (1088, 1920)
INSTALL = (
    "pip install 'edgeemo[onnx]' (CPU); on a Jetson install NVIDIA's onnxruntime-gpu wheel for "
    "its JetPack (not PyPI's)"
)


def ort_module() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise AcceleratorUnavailable(f"ONNX Runtime is not installed: {INSTALL}") from None
    return onnxruntime


def missing_packages(native_size: bool) -> list[str]:
    """What :func:`load` would need and cannot import: onnxruntime, and onnx for a model run at
    each frame's own size (:func:`free_image_size`). Checked without importing either."""
    import importlib.util

    needed = ("onnxruntime", "onnx") if native_size else ("onnxruntime",)
    return [name for name in needed if importlib.util.find_spec(name) is None]


def default_cache_dir() -> Path:
    """``<state directory>/onnx-trt-cache``: the daemon's state directory rule (systemd's
    ``$STATE_DIRECTORY``, else ``$XDG_STATE_HOME/edgeemo`` or ``~/.local/state/edgeemo``)."""
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        state = Path(env.split(":")[0])
    else:
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edgeemo"
    return state / "onnx-trt-cache"


def _gpu_unavailable(problem: str, fallback: str) -> None:
    """The Edge TPU's rule for a GPU that is not there: stop (``none``) or warn and go on."""
    if fallback != "cpu":
        raise AcceleratorUnavailable(f"{problem}; inference.fallback is none, so edgeemo stops")
    log.warning("%s; running on its CPU provider (inference.fallback: cpu)", problem)


def choose_providers(
    wanted: list[str] | None, available: list[str], fallback: str
) -> tuple[list[str], list[str]]:
    """``(config names to ask ONNX Runtime for, in order; GPU providers asked for but absent)``.

    Raises :class:`AcceleratorUnavailable` when no GPU provider is left and ``fallback`` is
    ``none`` (explicit ``providers: [cpu]`` asks for the CPU and is never a fallback)."""
    order = list(wanted or DEFAULT_ORDER)
    present = [p for p in order if PROVIDERS[p] in available or p == "cpu"]
    missing = [p for p in order if p not in present]
    asked_gpu = [p for p in order if p in GPU]
    if asked_gpu and not any(p in GPU for p in present):
        what = " and ".join(PROVIDERS[p] for p in asked_gpu)
        problem = (
            f"ONNX Runtime here has no {what} (it has {', '.join(available) or 'none'}): "
            "install the GPU build of onnxruntime (Jetson: NVIDIA's wheel for its JetPack; "
            "x86: onnxruntime-gpu with CUDA/cuDNN/TensorRT), or set inference.providers: [cpu]"
        )
        _gpu_unavailable(problem, fallback)
        if "cpu" not in present:
            present.append("cpu")
    return present, missing


def provider_options(name: str, cache_dir: Path, native: bool, input_name: str = "input") -> dict:
    if name == "tensorrt":
        opts: dict[str, Any] = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir),
            "trt_fp16_enable": True,  # float layers; QDQ (int8) models run their int8 as given
        }
        if native:
            (h0, w0), (h1, w1), (h2, w2) = NATIVE_MIN, NATIVE_OPT, NATIVE_MAX
            opts |= {
                "trt_profile_min_shapes": f"{input_name}:1x3x{h0}x{w0}",
                "trt_profile_opt_shapes": f"{input_name}:1x3x{h1}x{w1}",
                "trt_profile_max_shapes": f"{input_name}:1x3x{h2}x{w2}",
            }
        return opts
    return {}


def free_image_size(data: bytes) -> tuple[bytes, str]:
    """The model with its image input's height and width (and its outputs' inner sizes)
    made symbolic, for models that run at the frame's own size but were exported at one fixed
    size (YuNet's 640x640; OpenCV's DNN ignores the fixed size, ONNX Runtime enforces it).
    Needs the ``onnx`` package (in the ``onnx`` extra). Returns ``(model bytes, input name)``."""
    try:
        import onnx
    except ImportError:
        # A missing part of this backend's runtime, like ONNX Runtime itself: fallback decides.
        raise AcceleratorUnavailable(
            f"the onnx package is not installed (models run at each frame's size need it): {INSTALL}"
        ) from None
    m = onnx.load_from_string(data)
    init = {i.name for i in m.graph.initializer}
    inp = next(i for i in m.graph.input if i.name not in init)
    dims = inp.type.tensor_type.shape.dim
    if len(dims) == 4:
        hw = (2, 3) if dims[1].dim_value in (1, 3) else (1, 2)
        for k, name in zip(hw, ("height", "width"), strict=True):
            dims[k].dim_param = name
    for out in m.graph.output:
        for k, d in enumerate(out.type.tensor_type.shape.dim):
            if 0 < k < len(out.type.tensor_type.shape.dim) - 1:
                d.dim_param = f"{out.name}_{k}"
    del m.graph.value_info[:]  # shapes inferred for 640x640 inside the graph
    return m.SerializeToString(), inp.name


def _layout(shape: list[Any]) -> str:
    if len(shape) != 4:
        return ""
    channels = (1, 3, 4)
    return "NHWC" if shape[3] in channels and shape[1] not in channels else "NCHW"


def _dim(d: Any) -> int:
    return d if isinstance(d, int) else -1


_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class ONNXRuntimeModel(Model):
    backend = "onnx"

    def __init__(self, session: Any, path: Path) -> None:
        self.path = path
        self._session = session
        # InferenceSession.run is thread-safe, but one model's calls are serialised like the
        # other backends' (a single GPU context; predictable latency per camera).
        self._lock = threading.Lock()
        i = session.get_inputs()[0]
        self._in_name = i.name
        self._in_dtype = np.dtype(_TYPES.get(i.type, np.float32))
        layout = _layout(list(i.shape))
        self.input = TensorSpec(tuple(_dim(d) for d in i.shape), self._in_dtype, layout, name=i.name)
        self.outputs = [
            TensorSpec(tuple(_dim(d) for d in o.shape), np.dtype(np.float32), name=o.name)
            for o in session.get_outputs()
        ]
        self.providers: list[str] = list(session.get_providers())
        self.provider = self.providers[0]

    def describe(self) -> str:
        return f"onnx ({self.provider})"

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        x = batch if self.input.layout != "NCHW" else batch.transpose(0, 3, 1, 2)
        with self._lock:  # converted under the lock: waiting cameras hold no float copies
            outs = self._session.run(None, {self._in_name: np.ascontiguousarray(x, dtype=self._in_dtype)})
        return [np.asarray(o, dtype=np.float32) for o in outs]


def options(inference: Any) -> dict[str, Any]:
    """This backend's load options from the config's ``inference`` section."""
    return {
        "threads": inference.threads,
        "providers": inference.providers,
        "fallback": inference.fallback,
        "cache_dir": inference.engine_cache_dir,
    }


def load(
    path: Path,
    threads: int = 1,
    providers: list[str] | None = None,
    fallback: str = "cpu",
    cache_dir: Path | None = None,
    native_size: bool = False,
    **_: Any,
) -> ONNXRuntimeModel:
    ort = ort_module()
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; run `edgeemo models fetch` or fix the path")
    try:
        data = path.read_bytes()
    except PermissionError:
        from edgeemo.backends.tflite import unreadable

        raise ModelError(unreadable(path)) from None
    if data[:1] != ONNX_MAGIC:
        raise ModelError(f"{path} is not an ONNX model (truncated or wrong file, {len(data)} bytes)")
    input_name = "input"
    if native_size:
        data, input_name = free_image_size(data)
    chosen, missing = choose_providers(providers, list(ort.get_available_providers()), fallback)
    if missing and any(p in GPU for p in chosen):
        log.info("%s: %s not in this ONNX Runtime; using %s", path.name, missing, PROVIDERS[chosen[0]])
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if "tensorrt" in chosen:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning(
                "TensorRT engine cache %s cannot be made (%s): engines are rebuilt each start", cache, e
            )
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: its warnings have neither time nor level in the journal
    requested = [(PROVIDERS[p], provider_options(p, cache, native_size, input_name)) for p in chosen]
    try:
        session = ort.InferenceSession(data, sess_options=so, providers=requested)
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, …)
        text = str(e).strip().splitlines()
        raise ModelError(f"{path}: ONNX Runtime cannot load this model: {text[0] if text else e}") from None
    got = session.get_providers()
    # A GPU provider can be present in the build yet fail to start (no libcudart, no device):
    # ONNX Runtime then drops it silently and runs on the CPU. That is the same case as absent.
    gpu_asked = [PROVIDERS[p] for p in chosen if p in GPU]
    if gpu_asked and not any(p in got for p in gpu_asked):
        problem = (
            f"{', '.join(gpu_asked)} did not start (ONNX Runtime runs {path.name} on {got[0]}): "
            "check the CUDA/TensorRT libraries of the JetPack and that the edgeemo user may open "
            "the GPU devices (/dev/nvhost-*, /dev/nvmap; group video)"
        )
        _gpu_unavailable(problem, fallback)
    return ONNXRuntimeModel(session, path)
