"""LoRA adapters at run time: which stored models are adapters, the base each was made for,
and whether an adapter fits a base — checked before llama.cpp is asked to apply it.

An adapter is a GGUF whose `general.type` is "adapter" (llama.cpp's convert_lora_to_gguf.py
writes that). Its base is the parent in its lineage that is not a teacher (owl tune records
relation "fine-tuned", owl distill "distilled"). An adapter fits a base when the lineage says
it was made for exactly those weights, or else when the architectures agree and every
`X.lora_a`/`X.lora_b` pair has the shape of the base's tensor `X` (another quantization of
the same base fits; a base of another size does not).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from owl.errors import AdapterMismatch, ModelNotFound
from owl.formats.gguf import read_gguf_header
from owl.formats.gguf_layout import GGUFError
from owl.store import Manifest, Store
from owl.store.ref import parse_name

# Lineage relations that name an adapter's base (a "teacher" parent is not one).
BASE_RELATIONS = ("fine-tuned", "distilled")
# The separator of a combination's name: "BASE+ADAPTER[+ADAPTER…]".
SEPARATOR = "+"


@lru_cache(maxsize=256)
def _header(path: Path, digest: str) -> tuple[dict, dict[str, tuple[int, ...]]]:
    # Keyed by digest too: blobs are content-addressed, so (path, digest) never goes stale.
    try:
        header = read_gguf_header(path)
    except (GGUFError, OSError) as err:
        raise AdapterMismatch(
            f"{path.name} is not a readable GGUF ({err}); `owl verify` the model"
        ) from err
    return dict(header.kv), {tensor.name: tuple(tensor.shape) for tensor in header.tensors}


def _read(manifest: Manifest, store: Store) -> tuple[dict, dict[str, tuple[int, ...]]]:
    return _header(store.weights_path(manifest), manifest.weights.digest)


def is_adapter(manifest: Manifest, *, store: Store) -> bool:
    """Whether the stored model is a LoRA adapter (a GGUF of general.type "adapter")."""
    if manifest.format != "gguf":
        return False
    try:
        metadata, _ = _read(manifest, store)
    except AdapterMismatch:
        return False
    return metadata.get("general.type") == "adapter"


def base_parent(adapter: Manifest):  # noqa: ANN201 (a store Parent or None)
    """The lineage entry of the base the adapter was made for, if recorded."""
    return next((p for p in adapter.parents if p.relation in BASE_RELATIONS), None)


def base_of(adapter: Manifest, *, store: Store) -> Manifest:
    """The stored base model of `adapter`: the model with the recorded weights digest (by the
    recorded name first), else the model of the recorded name. ModelNotFound otherwise."""
    parent = base_parent(adapter)
    if parent is None:
        raise AdapterMismatch(
            f"adapter '{adapter.display_name}' does not record its base model; name it: "
            f'`owl run BASE --adapter {adapter.display_name}` (server: "BASE+'
            f'{adapter.display_name}")'
        )
    same = [m for m in store.list() if not m.is_folder and m.weights.digest == parent.digest]
    same.sort(key=lambda m: m.display_name != parent.name and m.name != parent.name)
    if same:
        return same[0]
    try:
        return store.get(parse_name(parent.name))
    except (ModelNotFound, ValueError) as err:
        raise ModelNotFound(
            f"adapter '{adapter.display_name}' was made for '{parent.name}' ({parent.digest}), "
            f"which is not in the store; pull it again, or name another copy of that base: "
            f"`owl run BASE --adapter {adapter.display_name}`"
        ) from err


def check_fits(adapter: Manifest, base: Manifest, *, store: Store) -> None:
    """AdapterMismatch unless `adapter` is a LoRA adapter that fits `base` (module doc)."""
    if not is_adapter(adapter, store=store):
        raise AdapterMismatch(
            f"'{adapter.display_name}' is not a LoRA adapter (a GGUF of type adapter); "
            "`owl list` shows the models, `owl tune` makes adapters"
        )
    if is_adapter(base, store=store) or base.format != "gguf":
        raise AdapterMismatch(
            f"'{base.display_name}' cannot be an adapter's base: llama.cpp applies adapters to "
            "a GGUF model (`owl convert` a safetensors one first)"
        )
    parent = base_parent(adapter)
    if parent is not None and parent.digest == base.weights.digest:
        return  # made for exactly these weights
    metadata, tensors = _read(adapter, store)
    base_metadata, base_tensors = _read(base, store)
    arch, base_arch = (
        metadata.get("general.architecture"),
        base_metadata.get("general.architecture"),
    )
    made_for = f" (it was made for '{parent.name}')" if parent is not None else ""
    if arch != base_arch:
        raise AdapterMismatch(
            f"adapter '{adapter.display_name}' is for {arch} models but "
            f"'{base.display_name}' is {base_arch}{made_for}; use it with its own base"
        )
    for name, shape in tensors.items():
        if not name.endswith(".lora_a"):
            continue
        target = name.removesuffix(".lora_a")
        other = tensors.get(f"{target}.lora_b")
        wanted = base_tensors.get(target)
        fits = (
            other is not None
            and wanted is not None
            and len(shape) == len(other) == len(wanted) == 2
            and (target.startswith("token_embd") or (shape[0], other[1]) == wanted)
        )
        if not fits:
            raise AdapterMismatch(
                f"adapter '{adapter.display_name}' does not fit '{base.display_name}': its "
                f"tensor {target} is {shape[0] if shape else '?'}x"
                f"{other[1] if other and len(other) > 1 else '?'} but the base has "
                f"{'x'.join(map(str, wanted)) if wanted else 'no such tensor'}{made_for}; "
                "use the adapter with the base it was tuned from"
            )


def split_combination(name: str) -> list[str]:
    """ "BASE+A1+A2" → ["BASE", "A1", "A2"]; a plain name → [name]. Model names never hold '+'."""
    return [part.strip() for part in name.split(SEPARATOR)]


def combination_name(base: Manifest, adapters: list[Manifest]) -> str:
    """The display name of a base with adapters applied: "base:tag+adapter:tag…"."""
    return SEPARATOR.join([base.display_name, *(a.display_name for a in adapters)])


def adapter_of(manifest: Manifest, *, store: Store) -> str | None:
    """For a LoRA adapter, the name of the base it was made for ("" when none is recorded);
    None for a model that is not an adapter. For listings (/v1/models, /api/tags)."""
    if not is_adapter(manifest, store=store):
        return None
    parent = base_parent(manifest)
    return parent.name if parent is not None else ""
