"""What the TFLite backends share: an interpreter behind the :class:`Model` interface.

The CPU and Edge TPU backends differ only in how they build the interpreter (with or without
the delegate); quantising, batching and reading outputs is the same and lives here.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeemo.backends.base import Model, ModelError, TensorSpec

log = logging.getLogger(__name__)


def _spec(d: dict[str, Any]) -> TensorSpec:
    scale, zp = d.get("quantization", (0.0, 0))
    shape = tuple(int(x) for x in d["shape"])
    layout = "NHWC" if len(shape) == 4 else ""
    return TensorSpec(shape, np.dtype(d["dtype"]), layout, float(scale), int(zp), str(d.get("name", "")))


MAX_INTERPRETERS = 2  # interpreters of one model file at most: two camera aspects
BATCH_RESIZE = 8  # fewer items than this run one by one rather than resizing the input


class TFLiteModel(Model):
    """A loaded TFLite interpreter (CPU or delegate)."""

    def __init__(self, interpreter: Any, path: Path, make: Callable[[], Any] | None = None) -> None:
        self.path = path
        self._it = interpreter
        # A fresh interpreter of the same file, for :meth:`sized` (None: one size only).
        self._make = make
        # Sizes asked for through :meth:`sized`: a view of this interpreter (its home size),
        # an interpreter of its own, or None (cannot run at that size).
        self._sized: dict[tuple[int, int], Model | None] = {}
        # The interpreter is not thread-safe: calls are serialised here.
        self._lock = threading.Lock()
        try:
            with native_output_to_log():
                self._it.allocate_tensors()
        except RuntimeError as e:
            raise _explain_runtime_error(path, e) from None
        self._in = self._it.get_input_details()[0]
        self._outs = self._it.get_output_details()
        # What the file declares; never changes (a view of another size says its own).
        self.input = _spec(self._in)
        self.outputs = [_spec(o) for o in self._outs]
        self._batch = int(self.input.shape[0])
        image = len(self.input.shape) == 4
        self._hw: tuple[int, int] | None = self.input_hw if image else None  # as allocated now
        self._home = self._hw  # the size it serves between switches: its own, or a camera's
        # Batch sizes the model refused (reshapes baked in, e.g. the two-network emotion model):
        # such a batch goes one item at a time without asking again, as asking costs two
        # tensor re-allocations per call.
        self._refused: set[int] = set()

    def sized(self, height: int, width: int, create: bool = True) -> Model | None:
        """This model for pictures of another input size (a camera's aspect). The first size
        asked for becomes this interpreter's home (no second interpreter for a camera's
        frames): a view of it is returned, and its declared size stays available through
        :meth:`run`, switched to for the call (~0.7 ms each way: the rare crops that confirm a
        small face). A further size gets an interpreter of its own (~3.6 MiB for BlazeFace), at
        most MAX_INTERPRETERS in all. None: not at that size (the caller letterboxes), as for
        sizes not yet made when ``create`` is False (stills: they must not take a camera's)."""
        if (height, width) == self.input_hw:
            return self
        key = (height, width)
        with self._lock:
            if key in self._sized:
                return self._sized[key]
            if self._make is None or self._hw is None or not create:
                return None
            if self._home == self.input_hw:  # no home yet: this interpreter takes the size
                ok = self._switch(height, width, capture=True)
                if ok:
                    self._home = key
                self._sized[key] = _SizedView(self, height, width) if ok else None
                return self._sized[key]
            children = sum(isinstance(m, TFLiteModel) for m in self._sized.values())
            if 1 + children >= MAX_INTERPRETERS:
                return None
            self._sized[key] = self._new_sized(height, width)
            return self._sized[key]

    def _switch(self, height: int, width: int, capture: bool = False) -> bool:
        """Re-allocate this interpreter for another input size (under the lock); False, and
        as it was, where the graph cannot take that size. ``capture``: route what the runtime
        prints through logging (once per size; not on the per-frame path, where redirecting
        the process's stderr would catch other threads' lines)."""
        assert self._hw is not None
        if not self._allocate_at(self._it, height, width, capture):
            self._it.resize_tensor_input(self._in["index"], [self._batch, *self._hw, self.input.shape[3]])
            self._it.allocate_tensors()
            return False
        self._in = self._it.get_input_details()[0]
        self._outs = self._it.get_output_details()
        self._hw = (height, width)
        return True

    def _new_sized(self, height: int, width: int) -> TFLiteModel | None:
        assert self._make is not None
        it = self._make()
        return type(self)(it, self.path) if self._allocate_at(it, height, width, capture=True) else None

    def _allocate_at(self, it: Any, height: int, width: int, capture: bool) -> bool:
        """Resize ``it``'s input to ``height`` x ``width`` and allocate; False (said at INFO)
        where the graph cannot take that size."""
        redirect = native_output_to_log() if capture else contextlib.nullcontext()
        try:
            with redirect:
                it.resize_tensor_input(self._in["index"], [self._batch, height, width, self.input.shape[3]])
                it.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            log.info("%s cannot run at %dx%d (%s); it runs at its own size", self.path.name, width, height, e)
            return False
        return True

    def _resize(self, n: int) -> bool:
        if n == self._batch:
            return True
        if n in self._refused:
            return False
        rest = [int(v) for v in self._in["shape"][1:]]  # the size allocated now
        try:
            self._it.resize_tensor_input(self._in["index"], [n, *rest])
            self._it.allocate_tensors()
        except (RuntimeError, ValueError):
            # Models with a fixed batch (reshapes baked in): put the input back as it was.
            self._it.resize_tensor_input(self._in["index"], [self._batch, *rest])
            self._it.allocate_tensors()
            self._refused.add(n)
            return False
        self._in = self._it.get_input_details()[0]
        self._outs = self._it.get_output_details()
        self._batch = n
        return True

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        t = self.input
        if not t.quantized:
            return x.astype(t.dtype, copy=False)
        info = np.iinfo(t.dtype)
        q = np.round(x / t.scale + t.zero_point)
        return np.clip(q, info.min, info.max).astype(t.dtype)

    def _outputs(self) -> list[np.ndarray]:
        res = []
        for d in self._outs:
            y = self._it.get_tensor(d["index"])
            scale, zp = d.get("quantization", (0.0, 0))
            if y.dtype in (np.int8, np.uint8) and scale > 0:
                y = (y.astype(np.float32) - zp) * scale
            res.append(y)  # get_tensor returns a copy already
        return res

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run on a float32 NHWC batch; returns each output with the batch as first axis."""
        n = batch.shape[0]
        with self._lock:
            hw = (int(batch.shape[1]), int(batch.shape[2])) if batch.ndim == 4 and self._hw else self._hw
            # Its declared size while it serves a camera's aspect, or back to that aspect.
            if hw != self._hw and (hw not in (self.input_hw, self._home) or not self._switch(*hw)):  # type: ignore[misc]
                raise ModelError(f"{self.path.name} runs at {self._hw}, not {hw}")
            x = self._quantize(batch)
            # A frame's few faces go one at a time: one call for three faces costs what three
            # calls do here (1.69 against 1.68 ms), and re-allocating the tensors whenever the
            # count of faces changes would cost more. Large batches (eval) are resized for.
            if n == self._batch or (n >= BATCH_RESIZE and self._resize(n)):
                self._it.set_tensor(self._in["index"], x)
                self._it.invoke()
                return self._outputs()
            # A few items, or a fixed-batch model (e.g. compiled for the Edge TPU): one at a time.
            if not self._resize(1):
                raise ModelError(f"{self.path.name} accepts neither a batch of {n} nor single items")
            parts: list[list[np.ndarray]] = []
            for i in range(n):
                self._it.set_tensor(self._in["index"], x[i : i + 1])
                self._it.invoke()
                parts.append(self._outputs())
            return [np.concatenate(p, axis=0) for p in zip(*parts, strict=True)]


class _SizedView(Model):
    """A TFLiteModel's interpreter at its home size: the input and outputs that size has (the
    model's own stay what the file declares), runs through the model (which switches back
    from its declared size if a confirming crop left it there)."""

    def __init__(self, base: TFLiteModel, height: int, width: int) -> None:
        self.base, self.backend, self.path = base, base.backend, base.path
        shape = base.input.shape
        self.input = TensorSpec((shape[0], height, width, shape[3]), base.input.dtype, base.input.layout,
                                base.input.scale, base.input.zero_point, base.input.name)  # fmt: skip
        self.outputs = [_spec(o) for o in base._outs]  # made right after the switch, under the lock

    def describe(self) -> str:
        return self.base.describe()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.base.run(batch)


_NATIVE_LOCK = threading.Lock()
_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}


@contextlib.contextmanager
def native_output_to_log() -> Iterator[None]:
    """Route what the TFLite runtime prints on stderr itself ("INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU.", with neither time nor level in the journal) through logging,
    at the level it names. Only around model preparation, which happens at start-up."""
    with _NATIVE_LOCK, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip():
                    level, _, text = line.partition(": ")
                    if level in _LEVELS:
                        log.log(_LEVELS[level], "TFLite runtime: %s", text)
                    else:
                        log.warning("TFLite runtime: %s", line)


def _explain_runtime_error(path: Path, e: Exception) -> ModelError:
    text = str(e)
    if "edgetpu-custom-op" in text:
        return ModelError(
            f"{path.name} is compiled for the Coral Edge TPU and cannot run on the CPU: set "
            "inference.backend: edgetpu, or use the model's CPU version"
        )
    return ModelError(f"{path}: the TFLite runtime cannot prepare this model: {text.splitlines()[0]}")


def check_model_file(path: Path) -> None:
    """Cheap checks before handing a file to the runtime (whose errors are cryptic)."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; run `edgeemo models fetch` or fix the path")
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except PermissionError:
        raise ModelError(unreadable(path)) from None
    if size < 16 or head[4:8] != b"TFL3":
        raise ModelError(f"{path} is not a TFLite model (truncated or wrong file, {size} bytes)")


def unreadable(path: Path) -> str:
    """Why the service user cannot read a model file, and the fix (a config-class problem:
    restarting will not help, so it exits 78 like any other unusable model)."""
    st = path.stat()
    return (
        f"model file {path} is not readable by user {getpass.getuser()} (mode "
        f"{stat.filemode(st.st_mode)}, owner uid {st.st_uid}): as root run `chmod 0644 {path}`, "
        "or install it again with `edgeemo models fetch`, which installs model files 0644"
    )
