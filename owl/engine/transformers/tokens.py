"""A Hugging Face tokenizer answering the way llama.cpp's vocabulary does (Backend's token side).

owl streams text from token bytes and keeps message text apart from chat markup itself, so
the transformers backend must give the same answers as llama.cpp: the exact bytes of every
token (part of a UTF-8 character included), nothing for control tokens, and a way to
tokenize text in which `<|im_start|>` stays plain text.
"""

from __future__ import annotations

import json
import re
from functools import cache, cached_property
from typing import Any

# Texts that end a turn in common chat formats; like llama.cpp, owl stops on them too when
# the vocabulary has them as special tokens, whatever the model's config names as EOS.
EOG_TEXTS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<EOT>",
)
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode: byte-level BPE writes each byte as a char."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table = {byte: chr(byte) for byte in printable}
    shift = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + shift)
            shift += 1
    return {char: byte for byte, char in table.items()}


def _decoder_types(state: Any) -> set[str]:
    """The type names in a tokenizers decoder's JSON, Sequence members included."""
    if not isinstance(state, dict):
        return set()
    found = {str(state.get("type"))}
    for member in state.get("decoders") or []:
        found |= _decoder_types(member)
    return found


class HFVocab:
    """Token ids ↔ text and bytes for a transformers tokenizer."""

    def __init__(self, tokenizer: Any, *, eos_ids: set[int]) -> None:
        self._tokenizer = tokenizer
        try:  # only the "fast" tokenizers have one
            backend = tokenizer.backend_tokenizer
        except AttributeError:
            backend = None
        if backend is None:
            from owl.errors import EngineError

            raise EngineError(
                f"the tokenizer {type(tokenizer).__name__} has no tokenizers (Rust) backend, "
                "which owl needs to keep message text apart from chat markup; give the folder "
                "a tokenizer.json"
            )
        # transformers switches special-token parsing by mutating its one backend tokenizer,
        # which is a race between requests on different threads (a user's `<|im_start|>`
        # could become a control token). Two copies with fixed settings need no lock.
        self._parsing = _copy(backend, encode_special_tokens=False)
        self._plain = _copy(backend, encode_special_tokens=True)
        self._added = {int(token): added for token, added in tokenizer.added_tokens_decoder.items()}
        decoder = backend.decoder
        kinds = _decoder_types(json.loads(decoder.__getstate__())) if decoder else set()
        self._byte_level = "ByteLevel" in kinds
        self._byte_fallback = "ByteFallback" in kinds
        self._eos_ids = eos_ids
        self._piece_cache: dict[int, bytes] = {}

    @property
    def size(self) -> int:
        """Token ids run from 0 to size - 1, added tokens included."""
        return len(self._tokenizer)

    @property
    def bos_token(self) -> int | None:
        return self._tokenizer.bos_token_id

    @property
    def eos_token(self) -> int | None:
        token = self._tokenizer.eos_token_id
        if token is None and self._eos_ids:
            token = min(self._eos_ids)
        return token

    @cached_property
    def adds_bos(self) -> bool:
        # The tokenizer's own behaviour decides: Llama's and Gemma's put BOS in front of a
        # plain encode, GPT-2-style BPE does not (OPT's puts `</s>`, which is its BOS).
        bos = self.bos_token
        if bos is None:
            return False
        return self._tokenizer("a", add_special_tokens=True).input_ids[:1] == [bos]

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        encoder = self._parsing if special else self._plain
        tokens = encoder.encode(text, add_special_tokens=False).ids
        if not special and self._control_ids.intersection(tokens):
            tokens = self._spelled(tokens)
        bos = self.bos_token
        return [bos, *tokens] if add_bos and bos is not None else tokens

    @cached_property
    def _control_ids(self) -> frozenset[int]:
        return frozenset(token for token, added in self._added.items() if added.special)

    def _spelled(self, tokens: list[int]) -> list[int]:
        # A SentencePiece model may hold a control token's text as a piece of its own
        # (Gemma's <start_of_turn>), which it matches in plain text too. Plain text must
        # never become a control token: spell such a token with its byte-fallback tokens.
        spelled = []
        for token in tokens:
            if token not in self._control_ids:
                spelled.append(token)
                continue
            data = self._added[token].content.encode("utf-8")
            ids = [self._parsing.token_to_id(f"<0x{byte:02X}>") for byte in data]
            if None in ids:
                from owl.errors import InvalidPrompt

                raise InvalidPrompt(
                    f"the text contains {self._added[token].content!r}, a control token of this "
                    "model, which its vocabulary cannot keep as plain text; remove it"
                )
            spelled += ids
        return spelled

    def _special(self, token: int) -> bool:
        added = self._added.get(token)
        return added is not None and bool(added.special)

    def token_bytes(self, token: int) -> bytes:
        piece = self._piece_cache.get(token)
        if piece is None:
            piece = self._piece_cache[token] = self._bytes_of(token)
        return piece

    def _bytes_of(self, token: int) -> bytes:
        added = self._added.get(token)
        if added is not None:
            # llama.cpp gives nothing for a control token (token_to_piece, special=False) and
            # the text itself for a user-defined one; added tokens are stored as plain text.
            return b"" if added.special else added.content.encode("utf-8")
        text = self._parsing.id_to_token(token)
        if text is None:  # an id beyond the tokenizer (padded embedding rows)
            return b""
        if self._byte_level:
            table = _byte_decoder()
            if all(char in table for char in text):
                return bytes(table[char] for char in text)
            return text.encode("utf-8")
        byte = _BYTE_TOKEN.fullmatch(text)
        if byte is not None and self._byte_fallback:
            return bytes([int(byte.group(1), 16)])
        if "▁" in text or self._byte_fallback:
            # SentencePiece: ▁ is a space; llama.cpp keeps a piece's leading space.
            return text.replace("▁", " ").encode("utf-8")
        return self._tokenizer.decode([token]).encode("utf-8")

    def token_text(self, token: int) -> str:
        added = self._added.get(token)
        if added is not None:
            return added.content
        return self.token_bytes(token).decode("utf-8", "replace")

    @cached_property
    def control_texts(self) -> frozenset[str]:
        texts = set()
        for token, added in self._added.items():
            if added.special and added.content:
                if self._parsing.encode(added.content, add_special_tokens=False).ids == [token]:
                    texts.add(added.content)
        return frozenset(texts)

    @cached_property
    def eog_tokens(self) -> frozenset[int]:
        tokens = set(self._eos_ids)
        if self.eos_token is not None:
            tokens.add(self.eos_token)
        by_text = {added.content: token for token, added in self._added.items() if added.special}
        tokens.update(by_text[text] for text in EOG_TEXTS if text in by_text)
        return frozenset(tokens)


def _copy(backend: Any, *, encode_special_tokens: bool) -> Any:
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(backend.to_str())
    copy.encode_special_tokens = encode_special_tokens
    # A prompt is tokenized whole: Model checks the context window, not the tokenizer.
    copy.no_truncation()
    copy.no_padding()
    return copy
