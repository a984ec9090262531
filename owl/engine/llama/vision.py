"""llama.cpp's multimodal library (mtmd) over a loaded llama model: its projector (mmproj)
turns images into embeddings that are prefilled into a context sequence beside the text.

A prompt is text with one `MARKER` where each image goes (mtmd's default marker: the chat
template writes it for each image part). `Projector.prefill` splits it into text and image
chunks, encodes each image with the projector and decodes every chunk into one sequence of a
generation context; what comes after is ordinary token-by-token decoding from the position it
returns. Images reach mtmd only as the RGB pixels owl.engine.images decoded (never a file).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp
from llama_cpp._internals import LlamaModel

from owl.engine.images import IMAGE_MARKER, Pixels
from owl.engine.llama.context import Context
from owl.engine.llama.log import LOG_ERROR, quiet
from owl.engine.yielding import yielding_executor
from owl.errors import EngineError, InvalidImage

MARKER = mtmd_cpp.mtmd_default_marker().decode()
assert MARKER == IMAGE_MARKER, MARKER  # a new llama.cpp changed its marker
IMAGE_CHUNK = 1  # MTMD_INPUT_CHUNK_TYPE_IMAGE


def _only_errors(level: int, text: bytes | None, _user_data: object) -> None:
    # mtmd logs every encode at info level, through its own callback (not llama.cpp's).
    if level == LOG_ERROR and text:
        sys.stderr.write(text.decode("utf-8", "replace"))


_LOG_CALLBACK = llama_cpp.llama_log_callback(_only_errors)  # alive as long as the module
_NO_CALLBACK = mtmd_cpp.mtmd_helper_post_decode_callback()  # a NULL function pointer


@dataclass(frozen=True)
class Prefilled:
    """A prompt prefilled into a sequence: the next position, and its tokens (image ones too)."""

    n_past: int
    prompt_tokens: int
    image_tokens: int


class Projector:
    """A model's projector, loaded once; prefills are serialized by the caller (one decode
    thread per context, as for text)."""

    def __init__(
        self, model: LlamaModel, path: Path, *, threads: int | None = None, name: str = ""
    ) -> None:
        self._encoding = threading.Lock()  # mtmd keeps one encode's output at a time
        self._encoder = yielding_executor("owl-image-encoder")  # text decoding comes first
        quiet()
        mtmd_cpp.mtmd_log_set(_LOG_CALLBACK, None)
        mtmd_cpp.mtmd_helper_log_set(_LOG_CALLBACK, None)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = llama_cpp.llama_supports_gpu_offload()
        params.print_timings = False
        params.n_threads = threads or os.cpu_count() or 1
        params.warmup = False
        self._ctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), model.model, params)
        if not self._ctx:
            raise EngineError(
                f"llama.cpp could not load the projector {path.name} for {name or 'the model'}; "
                "it may be damaged or made for another model: pull the model's own mmproj "
                "(owl pull MODEL --mmproj PROJ.gguf)"
            )
        if not mtmd_cpp.mtmd_support_vision(self._ctx):
            self.close()
            raise EngineError(f"the projector {path.name} takes no images (an audio projector?)")
        self._width = int(llama_cpp.llama_model_n_embd_inp(model.model))

    def encode(self, chunks: _Chunks) -> None:
        """Run the image encoder over `chunks`' images now, and keep their embeddings in
        `chunks`: a prefill then only decodes them, so the engine thread (every slot's
        decoding) does not wait for the encoder. The caller waits; the encoder runs on a
        thread that yields the CPU to the engine thread's decoding."""
        try:
            encoding = self._encoder.submit(self._encode, chunks)
        except RuntimeError:  # shut down by close()
            raise EngineError("the projector was unloaded; load the model again") from None
        encoding.result()

    def _encode(self, chunks: _Chunks) -> None:
        for index, chunk in chunks.images():
            with self._encoding:
                if not self._ctx:
                    raise EngineError("the projector was unloaded; load the model again")
                status = mtmd_cpp.mtmd_encode_chunk(self._ctx, chunk)
                if status != 0:
                    raise EngineError(f"llama.cpp could not encode an image (status {status})")
                size = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)) * self._width
                output = mtmd_cpp.mtmd_get_output_embd(self._ctx)
                # A copy: the next encode overwrites mtmd's buffer.
                chunks.encoded[index] = np.ctypeslib.as_array(output, shape=(size,)).copy()

    def chunks(self, prompt: str, images: Sequence[Pixels], *, add_special: bool = True) -> _Chunks:
        """The prompt's text and image chunks (images encoded later, at prefill)."""
        if prompt.count(MARKER) != len(images):
            raise InvalidImage(
                f"the prompt has {prompt.count(MARKER)} image place(s) for {len(images)} image(s)"
            )
        return _Chunks(self._ctx, prompt, images, add_special=add_special)

    def prefill(
        self,
        context: Context,
        chunks: _Chunks,
        *,
        seq: int,
        n_past: int = 0,
        n_batch: int,
        logits_last: bool = True,
    ) -> Prefilled:
        """Decode every chunk into sequence `seq` from `n_past`, logits for the last token
        (images encode here unless `encode` did it already)."""
        if chunks.encoded:
            return self._prefill_encoded(
                context, chunks, seq=seq, n_past=n_past, n_batch=n_batch, logits_last=logits_last
            )
        new_past = llama_cpp.llama_pos(0)
        status = mtmd_cpp.mtmd_helper_eval_chunks(
            self._ctx,
            context.ctx,
            chunks.raw,
            n_past,
            seq,
            n_batch,
            logits_last,
            ctypes.byref(new_past),
        )
        _check_prefill(status)
        return chunks.prefilled(int(new_past.value))

    def _prefill_encoded(
        self,
        context: Context,
        chunks: _Chunks,
        *,
        seq: int,
        n_past: int,
        n_batch: int,
        logits_last: bool,
    ) -> Prefilled:
        position = llama_cpp.llama_pos(n_past)
        count = mtmd_cpp.mtmd_input_chunks_size(chunks.raw)
        for index in range(count):
            chunk = mtmd_cpp.mtmd_input_chunks_get(chunks.raw, index)
            start = position.value
            if index in chunks.encoded:
                embd = chunks.encoded[index].ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                status = mtmd_cpp.mtmd_helper_decode_image_chunk(
                    self._ctx, context.ctx, chunk, embd, start, seq, n_batch,
                    ctypes.byref(position), _NO_CALLBACK, None,
                )  # fmt: skip
            else:
                status = mtmd_cpp.mtmd_helper_eval_chunk_single(
                    self._ctx, context.ctx, chunk, start, seq, n_batch,
                    logits_last and index == count - 1, ctypes.byref(position),
                )  # fmt: skip
            _check_prefill(status)
        return chunks.prefilled(int(position.value))

    def close(self) -> None:
        self._encoder.shutdown(wait=False)  # an encode under way holds _encoding: waited for below
        with self._encoding:
            if self._ctx:
                mtmd_cpp.mtmd_free(self._ctx)
                self._ctx = None


class _Chunks:
    """mtmd's tokenized prompt; owns the bitmaps until freed (close, or garbage collection)."""

    def __init__(
        self, ctx: object, prompt: str, images: Sequence[Pixels], *, add_special: bool = True
    ) -> None:
        self._bitmaps = [_bitmap(pixels) for pixels in images]
        self.raw = mtmd_cpp.mtmd_input_chunks_init()
        text = prompt.encode()
        part = mtmd_cpp.mtmd_input_text()
        part.text, part.text_len = text, len(text)
        part.add_special, part.parse_special = add_special, True
        array = (mtmd_cpp.mtmd_bitmap_p_ctypes * max(1, len(self._bitmaps)))(*self._bitmaps)
        status = mtmd_cpp.mtmd_tokenize(
            ctx, self.raw, ctypes.byref(part), array, len(self._bitmaps)
        )
        if status != 0:
            self.close()
            raise InvalidImage(f"mtmd could not tokenize the prompt with its images ({status})")
        self.n_tokens = int(mtmd_cpp.mtmd_helper_get_n_tokens(self.raw))
        self.n_pos = int(mtmd_cpp.mtmd_helper_get_n_pos(self.raw))
        self.encoded: dict[int, np.ndarray] = {}  # chunk index → its image's embeddings
        self.image_tokens = sum(
            int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)) for _, chunk in self.images()
        )

    def prefilled(self, n_past: int) -> Prefilled:
        return Prefilled(n_past=n_past, prompt_tokens=self.n_tokens, image_tokens=self.image_tokens)

    def images(self) -> list[tuple[int, object]]:
        """(index, chunk) of each image chunk."""
        found = []
        for index in range(mtmd_cpp.mtmd_input_chunks_size(self.raw)):
            chunk = mtmd_cpp.mtmd_input_chunks_get(self.raw, index)
            if mtmd_cpp.mtmd_input_chunk_get_type(chunk) == IMAGE_CHUNK:
                found.append((index, chunk))
        return found

    def close(self) -> None:
        if self.raw:
            mtmd_cpp.mtmd_input_chunks_free(self.raw)
            self.raw = None
        for bitmap in self._bitmaps:
            mtmd_cpp.mtmd_bitmap_free(bitmap)
        self._bitmaps = []

    def __del__(self) -> None:
        self.close()


def _check_prefill(status: int) -> None:
    if status != 0:
        raise EngineError(
            f"llama.cpp could not prefill a prompt with images (status {status}); "
            "try a larger --ctx, or fewer or smaller images"
        )


def _bitmap(pixels: Pixels) -> object:
    # mtmd copies the bytes into the bitmap, so the buffer need not outlive this call.
    data = (ctypes.c_uint8 * len(pixels.rgb)).from_buffer_copy(pixels.rgb)
    bitmap = mtmd_cpp.mtmd_bitmap_init(pixels.width, pixels.height, data)
    if not bitmap:
        raise InvalidImage(f"mtmd refused a {pixels.width}×{pixels.height} image")
    return bitmap
