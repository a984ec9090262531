"""ggml's tensor struct through ctypes, as llama.cpp hands it to an eval callback.

llama-cpp-python exposes the callback type (`ggml_backend_sched_eval_callback`) but not the
struct it points to, so owl declares it from the ggml.h that llama-cpp-python 0.3.36 vendors.
A layout that drifted (another llama-cpp-python) would read garbage, so `check_layout`
compares it with what libggml-base itself reports, before owl trusts any field.
"""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from owl.errors import QuantizationError

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_OP_PARAMS = 64
GGML_MAX_NAME = 64
GGML_TYPE_F32 = 0
GGML_TYPE_I32 = 26
# sizeof(struct ggml_object): offs, size, next, type, padding[4]; ggml_tensor_overhead() is
# this plus sizeof(struct ggml_tensor).
GGML_OBJECT_SIZE = 32


class GGMLTensor(ctypes.Structure):
    """struct ggml_tensor (ggml/include/ggml.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


def _layout_error(why: str) -> QuantizationError:
    return QuantizationError(
        f"owl cannot read llama.cpp's tensors in this llama-cpp-python ({why}); computing an "
        "importance matrix needs the llama-cpp-python version owl pins (0.3.36): reinstall "
        "owl's dependencies, or compute one with llama.cpp's llama-imatrix and pass --imatrix"
    )


class GGML:
    """The few libggml-base functions owl calls on a tensor, with their C signatures."""

    def __init__(self) -> None:
        import llama_cpp

        folder = Path(llama_cpp.__file__).parent / "lib"
        try:
            lib = ctypes.CDLL(str(next(folder.glob("libggml-base.*"))))
        except (StopIteration, OSError) as err:
            raise _layout_error(f"no libggml-base in {folder}") from err
        signatures: dict[str, tuple[Any, list[Any]]] = {
            "ggml_op_name": (ctypes.c_char_p, [ctypes.c_int]),
            "ggml_get_name": (ctypes.c_void_p, [ctypes.c_void_p]),
            "ggml_nelements": (ctypes.c_int64, [ctypes.c_void_p]),
            "ggml_nbytes": (ctypes.c_size_t, [ctypes.c_void_p]),
            "ggml_tensor_overhead": (ctypes.c_size_t, []),
            "ggml_backend_buffer_is_host": (ctypes.c_bool, [ctypes.c_void_p]),
            "ggml_backend_tensor_get": (
                None,
                [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t],
            ),
        }
        for name, (restype, argtypes) in signatures.items():
            try:
                function = getattr(lib, name)
            except AttributeError as err:
                raise _layout_error(f"libggml-base has no {name}") from err
            function.restype, function.argtypes = restype, argtypes
        self.lib = lib
        self._op_names: dict[int, str] = {}
        size = lib.ggml_tensor_overhead() - GGML_OBJECT_SIZE
        if size != ctypes.sizeof(GGMLTensor):
            raise _layout_error(
                f"its ggml_tensor has {size} bytes, owl expects {ctypes.sizeof(GGMLTensor)}"
            )
        self._checked = False

    def op_name(self, op: int) -> str:
        """ggml's name of an op ("MUL_MAT"); only ever asked for ops of real tensors."""
        name = self._op_names.get(op)
        if name is None:
            name = self._op_names[op] = (self.lib.ggml_op_name(op) or b"").decode()
        return name

    def check_layout(self, address: int, tensor: GGMLTensor) -> None:
        """Once: the fields owl reads agree with what libggml-base says of the same tensor."""
        if self._checked:
            return
        name_at = self.lib.ggml_get_name(address)
        if name_at != address + GGMLTensor.name.offset:
            raise _layout_error("the tensor name is not where ggml.h puts it")
        if self.lib.ggml_nelements(address) != int(np.prod(tensor.ne[:], dtype=np.int64)):
            raise _layout_error("the element counts do not match")
        if tensor.type == GGML_TYPE_F32 and tensor.nb[0] != 4:
            raise _layout_error("the byte strides do not match")
        if not self.op_name(tensor.op):
            raise _layout_error(f"op {tensor.op} has no name")
        self._checked = True

    def read(self, tensor: GGMLTensor, address: int, dtype: type) -> np.ndarray:
        """The tensor's elements as a numpy view (host memory) or copy (device memory), in
        ggml's order reversed: shape (ne3, ne2, ne1, ne0), following its byte strides, so a
        non-contiguous view reads right."""
        nbytes = int(self.lib.ggml_nbytes(address))
        shape = tuple(int(n) for n in reversed(tensor.ne[:]))
        strides = tuple(int(n) for n in reversed(tensor.nb[:]))
        if tensor.buffer and self.lib.ggml_backend_buffer_is_host(tensor.buffer):
            if not tensor.data:
                raise _layout_error("a host tensor has no data")
            raw: Any = (ctypes.c_char * nbytes).from_address(tensor.data)
        else:
            raw = ctypes.create_string_buffer(nbytes)
            self.lib.ggml_backend_tensor_get(address, raw, 0, nbytes)
        # numpy checks that the shape and strides stay inside the nbytes it is given.
        return np.ndarray(shape, dtype=dtype, buffer=raw, strides=strides)


@cache
def ggml() -> GGML:
    """The process's one GGML handle (libggml-base is loaded once by llama_cpp anyway)."""
    return GGML()


def tensor_at(address: int) -> GGMLTensor:
    """The struct at `address` (no copy: fields read the live tensor)."""
    return GGMLTensor.from_address(address)


def weight_name(raw: bytes) -> str:
    """llama-imatrix's filter_tensor_name: CUDA0#blk.0.attn_k.weight#0 → blk.0.attn_k.weight."""
    name = raw.decode("utf-8", "replace")
    if "#" in name:
        name = name.split("#", 2)[1]
    return name
