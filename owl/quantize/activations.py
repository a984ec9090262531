"""What llama-imatrix collects while llama.cpp evaluates text: per weight, per input column,
the sum of squares of the activations that meet it, and how many rows (tokens) did.

`Collector.callback` is a `ggml_backend_sched_eval_callback`. llama.cpp's scheduler first
asks it about each graph node (`ask`); for the nodes it wants it stops the graph there and
calls again once the node is computed, with its inputs still in memory. The choices are
llama-imatrix's (tools/imatrix/imatrix.cpp, collect_imatrix): every MUL_MAT_ID (MoE
experts); a MUL_MAT only when its weight is a layer's ("blk.*", so not the output head),
its activations F32, and the micro-batch at least 16 rows. Sums are kept in float64 (llama-
imatrix's are float32), so long texts lose nothing to rounding; the file stores float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from owl.errors import QuantizationError
from owl.quantize.ggml_tensor import GGML_TYPE_F32, GGML_TYPE_I32, ggml, tensor_at, weight_name

MIN_ROWS = 16  # llama-imatrix skips smaller micro-batches


@dataclass
class Stats:
    """One weight's sums of squares, (matrices, columns), and rows seen per matrix."""

    sums: np.ndarray
    counts: np.ndarray


@dataclass
class Collector:
    """Accumulates Stats by weight name from llama.cpp's eval callback."""

    stats: dict[str, Stats] = field(default_factory=dict)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        from owl.engine.llama.context import eval_callback

        self._ggml = ggml()
        # ctypes must keep the C-callable wrapper alive as long as llama.cpp holds it.
        self.callback = eval_callback(self._on_eval)

    def _on_eval(self, address: int | None, ask: bool, _user_data: Any) -> bool:
        if self.error is not None or not address:
            return False
        try:  # nothing may unwind into C: a failure is kept, and the decode is stopped
            tensor = tensor_at(address)
            self._ggml.check_layout(address, tensor)
            if ask:
                return self._wanted(tensor)
            self._collect(tensor)
            return True
        except BaseException as err:
            self.error = err
            return False

    def _wanted(self, tensor: Any) -> bool:
        op = self._ggml.op_name(tensor.op)
        if op not in ("MUL_MAT", "MUL_MAT_ID"):
            return False
        src0, src1 = tensor.src[0], tensor.src[1]
        if not src0 or not src1:
            return False
        activations = tensor_at(src1)
        if activations.type != GGML_TYPE_F32:
            return False
        if op == "MUL_MAT_ID":
            return True
        return activations.ne[1] >= MIN_ROWS and weight_name(tensor_at(src0).name).startswith(
            "blk."
        )

    def _collect(self, tensor: Any) -> None:
        weight = tensor_at(tensor.src[0])
        src1 = tensor_at(tensor.src[1])
        x = self._ggml.read(src1, tensor.src[1], np.float32)  # (ne3, ne2, ne1, ne0)
        name = weight_name(weight.name)
        if self._ggml.op_name(tensor.op) == "MUL_MAT_ID":
            self._collect_experts(name, weight, tensor, x)
        else:
            self._collect_dense(name, weight, x)

    def _entry(self, name: str, matrices: int, columns: int) -> Stats:
        entry = self.stats.get(name)
        if entry is None:
            entry = self.stats[name] = Stats(
                np.zeros((matrices, columns), dtype=np.float64), np.zeros(matrices, dtype=np.int64)
            )
        elif entry.sums.shape != (matrices, columns):
            raise QuantizationError(
                f"llama.cpp multiplied {name} with inputs of two shapes ({entry.sums.shape} and "
                f"{(matrices, columns)}); owl cannot compute an importance matrix for this model"
            )
        return entry

    def _collect_dense(self, name: str, weight: Any, x: np.ndarray) -> None:
        w2, w3 = int(weight.ne[2]), int(weight.ne[3])
        ne3, ne2, ne1, ne0 = x.shape
        entry = self._entry(name, w2 * w3, ne0)
        wide = x.astype(np.float64)
        squares = np.einsum("abij,abij->abj", wide, wide)  # summed over the rows (tokens)
        for i3 in range(ne3):  # 3-D+ activations: llama-imatrix folds them onto the matrices
            for i2 in range(ne2):
                entry.sums[(i3 % w3) * w2 + (i2 % w2)] += squares[i3, i2]
        entry.counts += ne1 * ne2 * ne3 // (w2 * w3)
        _require_finite(entry.sums, name)

    def _collect_experts(self, name: str, weight: Any, tensor: Any, x: np.ndarray) -> None:
        # ids (n_tokens, n_used): the experts each token went to; x (1, n_tokens, ne1, cols).
        ids_tensor = tensor_at(tensor.src[2])
        if ids_tensor.type != GGML_TYPE_I32:
            raise QuantizationError(f"the expert ids of {name} are not int32")
        ids = self._ggml.read(ids_tensor, tensor.src[2], np.int32)[0, 0]
        experts = int(weight.ne[2])
        _, n_tokens, ne1, ne0 = x.shape
        if x.shape[0] != 1 or ids.shape[0] != n_tokens:
            raise QuantizationError(f"the activations of {name} have more than 3 dimensions")
        if ids.size and (ids.min() < 0 or ids.max() >= experts):
            raise QuantizationError(f"llama.cpp routed a token of {name} to no expert")
        entry = self._entry(name, experts, ne0)
        slots = np.arange(ids.shape[1]) % ne1  # a token's rows: one per chosen expert, or one
        rows = x[0][:, slots, :].astype(np.float64).reshape(-1, ne0)
        np.add.at(entry.sums, ids.reshape(-1), rows * rows)
        entry.counts += np.bincount(ids.reshape(-1), minlength=experts)
        _require_finite(entry.sums, name)


def _require_finite(sums: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(sums)):
        raise QuantizationError(
            f"the activations of {name} are not finite: the model overflows on this text; "
            "calibrate on a higher-precision file of the model (f16/f32)"
        )
