"""A vision-language folder → its two GGUFs: the language model and its projector (mmproj).

llama.cpp's converter writes each in its own run (`--mmproj` for the projector). A folder is
vision-language when its config.json has a `vision_config`. Its projector is written at the
same type as the model, except q8_0, which keeps the projector at f16: ggml-org's own
releases ship f16 projectors, and the image encoder is small beside the language model.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from owl.formats.hf_folder import model_class_of, read_folder_config
from owl.quantize.converter import Converter, run_converter

PROJECTOR_OUTTYPE = {"q8_0": "f16"}


@dataclass(frozen=True)
class VisionFiles:
    model: Path
    projector: Path


def is_vision_folder(folder: Path) -> bool:
    """Whether the Hugging Face folder's config.json describes a vision-language model."""
    return isinstance(read_folder_config(folder).get("vision_config"), dict)


def convert_vision_folder(
    converter: Converter, folder: Path, work: Path, *, stem: str, outtype: str
) -> tuple[VisionFiles, str]:
    """Both GGUFs of the vision-language `folder`, written under `work`; the converter's log."""
    files = VisionFiles(
        work / f"{stem}-{outtype.upper()}.gguf",
        work / f"mmproj-{stem}-{PROJECTOR_OUTTYPE.get(outtype, outtype).upper()}.gguf",
    )
    logs = run_converter(
        converter,
        folder,
        files.projector,
        outtype=PROJECTOR_OUTTYPE.get(outtype, outtype),
        mmproj=True,
    )
    logs += run_converter(converter, _text_view(folder, work), files.model, outtype=outtype)
    return files, logs


def _text_view(folder: Path, work: Path) -> Path:
    """`folder` as the converter reads its language model: itself, or, for a class the
    converter registers for the projector only, links to its files beside a config.json
    that names the text class (vision_classes.toml)."""
    config = read_folder_config(folder)
    model_class = model_class_of(config)
    text_class = _text_classes().get(model_class) if model_class else None
    if text_class is None:
        return folder
    # Named as the folder is: the converter takes the model's general.name from it.
    view = work / "text-model" / folder.name
    view.mkdir(parents=True)
    for path in folder.iterdir():
        if path.name != "config.json" and path.is_file():
            (view / path.name).symlink_to(path.resolve())
    (view / "config.json").write_text(json.dumps(config | {"architectures": [text_class]}))
    return view


@cache
def _text_classes() -> dict[str, str]:
    with (Path(__file__).parent / "vision_classes.toml").open("rb") as table:
        return dict(tomllib.load(table)["text_class"])
