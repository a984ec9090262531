"""Untrusted audio files to 16 kHz mono float32 samples, the input Whisper wants.

The decode is faster-whisper's own (PyAV, in-process: FFmpeg's demuxers and decoders, s16
mono resampling, invalid frames skipped), written out here rather than called because
faster_whisper.decode_audio decodes a whole file before anyone can look at its length: an
upload is refused by its size first, then by the duration its container declares, and
otherwise while it decodes, at `max_seconds`, so a small file that expands to hours of
audio (silence compresses to almost nothing) never reaches memory whole. The samples equal
faster_whisper.decode_audio's (tests/engine/test_audio.py compares them).

PyAV is imported when audio is decoded: importing owl.engine loads no library.
"""

from __future__ import annotations

import gc
import io
import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from owl.errors import InvalidAudio

SAMPLE_RATE = 16_000
FORMATS = "wav, flac, mp3, ogg, webm, m4a, mp4 or mkv"
# The demuxers FFmpeg may pick (names as FFmpeg spells them; "matroska,webm" and
# "mov,mp4,m4a,3gp,3g2,mj2" are one demuxer each): the formats above and raw AAC. Others
# stay out because some open further files named inside the upload (hls, concat, image2)
# and each one more is more parser for a hostile file to aim at.
DEMUXERS = "wav,flac,mp3,ogg,matroska,webm,mov,mp4,m4a,aac"
# faster-whisper resamples in groups of this many samples; so does owl, to match it exactly.
GROUP_SAMPLES = 500_000


def decode_audio(data: bytes | Path, *, max_seconds: float, max_bytes: int) -> np.ndarray:
    """The audio of `data` (an upload's bytes, or a file) as 16 kHz mono float32 in [-1, 1).

    Raises InvalidAudio, saying what is wrong and what to do, for anything that is not
    audio owl can decode (wav, flac, mp3, ogg, webm, m4a, a video's audio track), that is
    empty, larger than `max_bytes` or longer than `max_seconds`.
    """
    source = _opened(data, max_bytes)
    try:
        return _decoded(source, max_seconds)
    finally:
        source.close()


def _opened(data: bytes | Path, max_bytes: int) -> BinaryIO:
    if isinstance(data, Path):
        # A file object, never the path's string: FFmpeg reads a string as a URL, and a
        # name such as "concat:a|b" or "subfile,,start,…" would open other files.
        try:
            size = data.stat().st_size
            _check_size(size, max_bytes, f"{data.name} is")
            return data.open("rb")
        except OSError as err:
            raise InvalidAudio(f"cannot read {data}: {err.strerror or err}") from None
    _check_size(len(data), max_bytes, "the upload is")
    return io.BytesIO(data)


def _check_size(size: int, max_bytes: int, subject: str) -> None:
    if size == 0:
        raise InvalidAudio(f"{subject} empty; send an audio file ({FORMATS})")
    if size > max_bytes:
        raise InvalidAudio(
            f"{subject} {_megabytes(size)}, more than the {_megabytes(max_bytes)} limit; "
            "send a shorter recording or split it"
        )


def _decoded(source: BinaryIO, max_seconds: float) -> np.ndarray:
    import av

    not_audio = f"the upload is not audio owl can decode ({FORMATS}); check the file"
    try:
        container = av.open(
            source, mode="r", metadata_errors="ignore", options={"format_whitelist": DEMUXERS}
        )
    except (av.error.FFmpegError, ValueError, OSError, EOFError):
        raise InvalidAudio(not_audio) from None
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    try:
        with container:
            if not container.streams.audio:
                raise InvalidAudio(
                    f"the upload has no audio track ({container.format.long_name}); "
                    "send a recording with sound"
                )
            stream = container.streams.audio[0]
            _check_declared(container, stream, max_seconds)
            chunks = _resampled(container, stream, resampler, max_seconds)
    except InvalidAudio:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError, IndexError):
        raise InvalidAudio(not_audio) from None
    finally:
        # faster-whisper's workaround for resampler objects that are freed only by the
        # cycle collector (SYSTRAN/faster-whisper#390).
        del resampler
        gc.collect()
    if not chunks:
        raise InvalidAudio(
            "the upload holds no audio samples (a header with nothing after it, or a file "
            "cut short); send the whole recording"
        )
    samples = np.concatenate(chunks).astype(np.float32)
    samples /= 32768.0  # in place: an hour of audio is 230 MB of float32 already
    return samples


def _check_declared(container: Any, stream: Any, max_seconds: float) -> None:
    """Refuse, before decoding, audio whose container says it is too long (where it says)."""
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    if seconds is not None and math.isfinite(seconds) and seconds > max_seconds:
        raise InvalidAudio(_too_long(max_seconds, seconds))


def _resampled(container: Any, stream: Any, resampler: Any, max_seconds: float) -> list[np.ndarray]:
    """The s16 samples at 16 kHz, decoding no further than `max_seconds` of input."""
    import av

    chunks: list[np.ndarray] = []
    fifo = av.audio.fifo.AudioFifo()
    seconds = 0.0
    decoding = container.decode(stream)
    while True:
        try:
            frame = next(decoding)
        except StopIteration:
            break
        except av.error.InvalidDataError:  # a damaged frame: skipped, as faster-whisper does
            continue
        if frame.sample_rate <= 0:
            raise InvalidAudio("the upload's audio has no sample rate; check the file")
        seconds += frame.samples / frame.sample_rate
        if seconds > max_seconds:
            raise InvalidAudio(_too_long(max_seconds, None))
        frame.pts = None  # as faster-whisper: the fifo would refuse a gap in timestamps
        fifo.write(frame)
        if fifo.samples >= GROUP_SAMPLES:
            chunks.extend(_to_s16(resampler.resample(fifo.read())))
    if fifo.samples > 0:
        chunks.extend(_to_s16(resampler.resample(fifo.read())))
    chunks.extend(_to_s16(resampler.resample(None)))  # flush what the resampler holds
    return [chunk for chunk in chunks if chunk.size]


def _to_s16(frames: list[Any]) -> list[np.ndarray]:
    return [frame.to_ndarray().reshape(-1) for frame in frames]


def _too_long(max_seconds: float, declared: float | None) -> str:
    length = f"is {_clock(declared)} long, more" if declared is not None else "is longer"
    return (
        f"the upload {length} than the {_clock(max_seconds)} owl transcribes at once; "
        "split it into shorter parts"
    )


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def samples_of(
    audio: np.ndarray | bytes | Path, *, max_seconds: float, max_bytes: int
) -> np.ndarray:
    """`audio` as 16 kHz mono float32 samples: decoded when it is a file's bytes or path,
    checked when it is already samples (one channel of finite floats, under `max_seconds`)."""
    if not isinstance(audio, np.ndarray):
        return decode_audio(audio, max_seconds=max_seconds, max_bytes=max_bytes)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise InvalidAudio(
            f"audio samples must be one channel of floats at {SAMPLE_RATE} Hz, "
            f"not an array of {audio.dtype} shaped {audio.shape}"
        )
    if audio.size == 0:
        raise InvalidAudio("the audio holds no samples; send a recording")
    if audio.size > max_seconds * SAMPLE_RATE:
        raise InvalidAudio(
            f"the audio is {audio.size / SAMPLE_RATE:.1f} s long, more than the "
            f"{max_seconds:g} s owl transcribes at once; split it into shorter parts"
        )
    if not np.isfinite(audio).all():
        raise InvalidAudio("the audio samples include NaN or infinity; check how they were made")
    return audio.astype(np.float32, copy=False)
