"""owl.quantize.converter: the converter is the installed llama-cpp-python's, and unpacking its
sdist writes only the converter's files (no links, no paths out of the folder)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from owl.errors import ConversionError
from owl.quantize.converter import (
    SCRIPT,
    ensure_converter,
    extract_converter,
    llama_cpp_version,
    sdist_name,
)
from tests.quantize.test_convert import shared_tools


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tools(tmp_path_factory.getbasetemp())


@pytest.mark.slow
def test_the_converter_is_the_installed_llama_cpp_pythons(tools: Path) -> None:
    version = llama_cpp_version()
    converter = ensure_converter(tools)
    assert converter.version == version
    assert converter.root == tools / f"llama.cpp-converter-{version}"
    assert converter.script.is_file()
    assert (converter.root / "conversion" / "llama.py").is_file()
    assert (converter.gguf_py / "gguf" / "gguf_writer.py").is_file()
    source = json.loads((converter.root / "owl-source.json").read_text())
    assert source["sdist"] == sdist_name(version)
    assert len(source["sha256"]) == 64
    # Only the converter came out of the 77 MB sdist: no C++ sources, no sdist left behind.
    assert converter.lora_script.is_file() and converter.complete
    assert sorted(path.name for path in converter.root.iterdir()) == [
        "conversion",
        SCRIPT,
        "convert_lora_to_gguf.py",
        "gguf-py",
        "owl-source.json",
    ]
    assert not list(tools.glob("*.tar.gz"))
    assert ensure_converter(tools) == converter


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


VENDOR = "llama_cpp_python-9.9.9/vendor/llama.cpp"
CONVERTER_FILES = [
    (f"{VENDOR}/convert_hf_to_gguf.py", b"print('converter')\n"),
    (f"{VENDOR}/conversion/__init__.py", b""),
    (f"{VENDOR}/gguf-py/gguf/__init__.py", b""),
]


def test_extraction_writes_only_the_converters_files(tmp_path: Path) -> None:
    sdist = tmp_path / "evil.tar.gz"
    sdist.write_bytes(
        _tar(
            [
                *CONVERTER_FILES,
                (f"{VENDOR}/conversion/../../../../escape.py", b"x"),
                (f"{VENDOR}/gguf-py/gguf/../../../outside.py", b"x"),
                ("/abs/vendor/llama.cpp/conversion/abs.py", b"x"),
                (f"{VENDOR}/ggml/src/ggml.c", b"int x;"),
                (f"{VENDOR}/gguf-py/tests/test_x.py", b"x"),
                (f"{VENDOR}/setup.py", b"x"),
                _link(f"{VENDOR}/conversion/passwd.py", "/etc/passwd"),
                _link(f"{VENDOR}/conversion/hard.py", "/etc/passwd", tarfile.LNKTYPE),
            ]
        )
    )
    target = tmp_path / "out"
    target.mkdir()
    written = extract_converter(sdist, target)
    assert sorted(written) == [
        "conversion/__init__.py",
        SCRIPT,
        "gguf-py/gguf/__init__.py",
    ]
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert on_disk == [
        "evil.tar.gz",
        "out/conversion/__init__.py",
        f"out/{SCRIPT}",
        "out/gguf-py/gguf/__init__.py",
        "out/owl-source.json",
    ]
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


def test_an_sdist_without_the_converter_is_refused(tmp_path: Path) -> None:
    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    sdist.write_bytes(_tar([(f"{VENDOR}/README.md", b"no converter here")]))
    (tmp_path / "out").mkdir()
    with pytest.raises(ConversionError, match="has no llama.cpp converter"):
        extract_converter(sdist, tmp_path / "out")
    sdist.write_bytes(b"not a tar file")
    with pytest.raises(ConversionError, match="not a readable sdist"):
        extract_converter(sdist, tmp_path / "out")


def test_an_sdist_in_the_tools_folder_is_used_without_downloading(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    # 9.9.9 does not exist on any index: only the file put here can provide it.
    (tools / sdist_name("9.9.9")).write_bytes(_tar(CONVERTER_FILES))
    converter = ensure_converter(tools, version="9.9.9")
    assert converter.root == tools / "llama.cpp-converter-9.9.9"
    assert converter.script.read_text() == "print('converter')\n"
    assert (tools / sdist_name("9.9.9")).is_file()  # someone else's file: left alone


@pytest.mark.slow
def test_a_version_that_pip_cannot_find_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"could not download .*0\.0\.0.*put it in"):
        ensure_converter(tmp_path / "tools", version="0.0.0")
    assert not list((tmp_path / "tools").glob("llama.cpp-converter-*"))
