"""The SentencePiece checker: real trained models are clean, broken ones unverified, and
whatever owl calls clean, sentencepiece itself loads (owl is never more permissive than the
loader it guards). Models are trained here, deterministically, on the license texts."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from owl.config import Settings
from owl.pull import pull
from owl.scan import scan_file
from owl.scan.detect import Kind, sniff
from owl.scan.findings import Unverified
from owl.scan.sentencepiece import MAX_PIECES, scan_sentencepiece
from owl.store import Store
from tests.support.tiny_models import build_tiny_folder
from tests.support.tiny_tokenizers import _sentences, train_spm

# Derandomized (which also means no example database): CI runs the same examples every time,
# so a fuzz test cannot start failing at random. Sweeps of every single-byte edit and cut of
# both trained models stand behind it; what they found is in FOUND below.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NAME = "tokenizer.model"


def train_nfkc() -> bytes:
    """A small unigram model with sentencepiece's default normalizer (nmt_nfkc), so that it
    carries a precompiled charsmap, and a self-test section."""
    spm.set_random_generator_seed(0)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sentences()),
        model_writer=model,
        vocab_size=300,
        self_test_sample_size=2,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


class Models(dict):
    """The trained models by name; a short repr, for hypothesis's reports."""

    def __repr__(self) -> str:
        return f"Models({', '.join(f'{name}: {len(data):,} bytes' for name, data in self.items())})"


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return Models(gemma=train_spm(), nfkc=train_nfkc())


def loads(data: bytes) -> bool:
    try:
        spm.SentencePieceProcessor(model_proto=data)
    except (RuntimeError, OSError):
        return False
    return True


def verdict(path: Path, data: bytes) -> bool:
    """Whether owl calls `data` clean; it may only be clean or unverified, never crash."""
    path.write_bytes(data)
    try:
        assert scan_sentencepiece(path, file=NAME) == []
    except Unverified as err:
        assert err.reason and err.location.startswith(("byte ", "file"))
        note("unverified")
        return False
    note("clean")
    return True


def note(outcome: str) -> None:
    if currently_in_test_context():  # hypothesis's statistics; plain tests call verdict too
        event(outcome)


# --- protobuf by hand, for defects a trainer never writes --------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    tag = varint(number << 3 | wire)
    return tag + (varint(len(payload)) + payload if wire == 2 else payload)


def piece(text: bytes, kind: int = 1, score: float = 0.0) -> bytes:
    body = field(1, 2, text) + field(2, 5, struct.pack("<f", score)) + field(3, 0, varint(kind))
    return field(1, 2, body)


MINIMAL = piece(b"<unk>", 2) + piece(b"a") + piece(b"\xe2\x96\x81b")
BYTE_FALLBACK = field(2, 2, field(35, 0, b"\x01"))
ALL_BYTES = b"".join(piece(b"<0x%02X>" % byte, 6) for byte in range(256))


def charsmap(units: dict[int, int], strings: bytes = b"\0", size: int = 256) -> bytes:
    """MINIMAL with a precompiled charsmap: a trie of `size` units, zero but for `units`
    (the root, unit 0, points at unit 1's block unless given), then `strings`."""
    trie = [0] * size
    trie[0] = 1 << 10
    for index, unit in units.items():
        trie[index] = unit
    blob = struct.pack(f"<I{size}I", 4 * size, *trie) + strings
    return MINIMAL + field(3, 2, field(2, 2, blob))


def node(index: int, block: int, label: int = 0x41, leaf: bool = False) -> int:
    """A trie node at `index` whose children's block starts at `block`."""
    return (index ^ block) << 10 | leaf << 8 | label


LEAF = 1 << 31  # a leaf unit; its low 31 bits are an offset into the strings

# Models sentencepiece refuses on load, each for one of its rules that owl checks too.
LOADER_REFUSES = [
    (MINIMAL + BYTE_FALLBACK, "has 0 of the 256 byte pieces"),
    (MINIMAL + ALL_BYTES[: -len(piece(b"<0xFF>", 6))] + BYTE_FALLBACK, "has 255 of the 256"),
    (charsmap({}, strings=b""), "leaving none for its strings"),
    (charsmap({}, strings=b"a"), "do not end with a NUL"),
    (charsmap({}, size=257), "not whole blocks of 1,024"),
    (charsmap({0: 0}), "broken root"),  # its children would be in its own block
    (charsmap({0: 1 << 10 | 0x41}), "broken root"),  # a label
    (charsmap({0: 1 << 10 | 1 << 8, 1: LEAF}), "broken root"),  # a leaf
    (charsmap({0: 256 << 10}), "broken root"),  # children past the end
    (charsmap({7: LEAF | 1}), "a leaf points past its strings"),
    (charsmap({7: node(7, 256)}), "a node's children lie outside it"),
    (charsmap({7: node(7, 9, leaf=True)}), "a node's leaf is not a leaf"),
]


# --- real models -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["gemma", "nfkc"])
def test_a_trained_model_is_clean(tmp_path: Path, models: dict[str, bytes], which: str) -> None:
    path = tmp_path / NAME
    path.write_bytes(models[which])
    assert sniff(path) is Kind.SENTENCEPIECE
    report = scan_file(path)
    assert (report.format, report.status, report.findings) == ("sentencepiece", "scanned", [])
    assert loads(models[which])


def test_a_store_blob_is_sniffed_by_content(tmp_path: Path, models: dict[str, bytes]) -> None:
    blob = tmp_path / ("sha256-" + "0" * 64)
    blob.write_bytes(models["gemma"])
    report = scan_file(blob, name=NAME)
    assert (report.file, report.format, report.status) == (NAME, "sentencepiece", "scanned")


def test_a_minimal_hand_built_model_is_clean_and_loads(tmp_path: Path) -> None:
    assert verdict(tmp_path / NAME, MINIMAL) and loads(MINIMAL)
    every_byte = MINIMAL + ALL_BYTES + BYTE_FALLBACK
    assert verdict(tmp_path / NAME, every_byte) and loads(every_byte)


def test_a_hand_built_charsmap_is_clean_and_normalizes(tmp_path: Path) -> None:
    # the root's children are in block 1, so "A" (0x41) is unit 64; its leaf, in block 128,
    # points at the string "a": the rule A -> a, as the normalizer reads it
    data = charsmap({64: node(64, 128, label=0x41, leaf=True), 128: LEAF}, strings=b"a\0")
    assert verdict(tmp_path / NAME, data)
    assert spm.SentencePieceProcessor(model_proto=data).normalize("AbA") == "\u2581aba"
    assert verdict(tmp_path / NAME, charsmap({})) and loads(charsmap({}))  # no rules at all


# --- truncated and garbled ---------------------------------------------------------------------


def test_truncations_are_unverified_with_an_offset(
    tmp_path: Path, models: dict[str, bytes]
) -> None:
    data = models["nfkc"]
    cut = len(data) - 1000  # inside the normalizer's charsmap, the last big field
    path = tmp_path / NAME
    path.write_bytes(data[:cut])
    report = scan_file(path)
    assert (report.format, report.status) == ("sentencepiece", "unverified")
    assert report.error.startswith("byte ") and "truncated or corrupt" in report.error
    for cut in range(1, len(data), 997):
        if verdict(path, data[:cut]):  # a cut between two pieces is a smaller model
            assert loads(data[:cut])


@FUZZ
@given(which=st.sampled_from(["gemma", "nfkc"]), cut=st.integers(0, 1 << 20))
def test_any_truncation_is_clean_only_if_sentencepiece_loads_it(
    tmp_path: Path, models: dict[str, bytes], which: str, cut: int
) -> None:
    data = models[which][: cut % len(models[which])]
    if verdict(tmp_path / NAME, data):
        assert loads(data)


@FUZZ
@given(
    which=st.sampled_from(["gemma", "nfkc"]),
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_byte_flips_are_clean_only_if_sentencepiece_loads_them(
    tmp_path: Path, models: dict[str, bytes], which: str, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(models[which])
    for position, value in edits:
        # the first 4 KB are pieces; the rest trainer and normalizer settings and the charsmap
        data[position % (4096 if position & 1 else len(data))] = value
    path = tmp_path / NAME
    if verdict(path, bytes(data)):
        assert loads(bytes(data))
    report = scan_file(path)  # the whole scan, sniffing included, never crashes either
    assert report.status in ("scanned", "unverified")


# Edits of the trained models that owl once called clean although sentencepiece refuses them,
# found by hypothesis and by sweeps of every single-byte edit (a few values at each byte) and
# every cut of both models; the offsets are into the models as sentencepiece 0.2.3 trains them.
FOUND = [
    ("nfkc", [(10294, 1)]),  # unit 1,432 of the charsmap's trie: its leaf slot is no leaf
    ("gemma", [(2252, 1)]),  # <0x00> made a NORMAL piece: 255 byte pieces with byte_fallback
    ("gemma", [(6587, 4)]),  # <0xFF> made USER_DEFINED
]


@pytest.mark.parametrize(("which", "edits"), FOUND)
def test_edits_found_by_fuzzing_are_unverified(
    tmp_path: Path, models: dict[str, bytes], which: str, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(models[which])
    for position, value in edits:
        data[position] = value
    assert not loads(bytes(data)), "sentencepiece loads it: the trained model has changed"
    assert not verdict(tmp_path / NAME, bytes(data))


@FUZZ
@given(data=st.binary(max_size=512), lead=st.sampled_from([b"", b"\n", b"\n\x0e\n\x05<unk>"]))
def test_random_bytes_never_crash_the_checker(tmp_path: Path, data: bytes, lead: bytes) -> None:
    if verdict(tmp_path / NAME, lead + data):
        assert loads(lead + data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (MINIMAL + field(6, 2, b""), "has no field 6"),
        (MINIMAL + b"\x0a" + b"\xff" * 10 + b"\x01", "longer than 10 bytes or 64 bits"),
        (MINIMAL + b"\x0a" + b"\xff" * 9 + b"\x02", "longer than 10 bytes or 64 bits"),
        (MINIMAL + b"\x0b", "wire type 3"),
        (MINIMAL + field(2, 0, b"\x01"), "wire type 0, not 2"),
        (MINIMAL + piece(b"c", 7), "piece type 7"),
        (MINIMAL + piece(b"\xff\xfe"), "piece 3 is not valid UTF-8"),
        (MINIMAL + piece(b""), "piece 3 is empty"),
        (MINIMAL + piece(b"c\0"), "piece 3 holds a NUL"),
        (MINIMAL + piece(b"c", score=float("nan")), "score is nan"),
        (MINIMAL + piece(b"a"), "repeats piece 1"),
        (MINIMAL + piece(b"x", 2), "second unknown piece"),
        (piece(b"a") + piece(b"b"), "no unknown piece"),
        (piece(b"<unk>", 2) + piece(b"<s>", 3), "no ordinary pieces"),
        (MINIMAL + piece(b"<0x4G>", 6), "is not <0xXX>"),
        (MINIMAL + piece(b"<0x41>", 6), "although byte_fallback is off"),
        (MINIMAL + field(2, 2, field(3, 0, b"\x09")), "model type 9"),
        (MINIMAL + field(1, 2, field(4, 2, b"")), "piece 3 has no field 4"),
        (MINIMAL + field(3, 2, field(2, 2, b"\x08\0\0\0abc")), "trie claims 8 bytes of 3"),
        (MINIMAL + field(3, 2, field(2, 2, b"\x04\0\0\0abcdef")), "do not end with a NUL"),
        (MINIMAL + field(3, 2, field(2, 2, b"\0\0")), "too short"),
        (b"\x0a\x07\x0a\x05<un", "claims 7 bytes but its message has 5 left"),
        (MINIMAL + field(1, 2, b"\x0a"), "runs past the end of its message"),
    ],
)
def test_defects_are_unverified_with_a_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / NAME
    path.write_bytes(data)
    with pytest.raises(Unverified, match=reason) as caught:
        scan_sentencepiece(path, file=NAME)
    assert caught.value.location.startswith("byte ")


@pytest.mark.parametrize(("data", "reason"), LOADER_REFUSES)
def test_what_sentencepiece_refuses_on_load_is_unverified(
    tmp_path: Path, data: bytes, reason: str
) -> None:
    assert not loads(data)
    path = tmp_path / NAME
    path.write_bytes(data)
    with pytest.raises(Unverified, match=reason) as caught:
        scan_sentencepiece(path, file=NAME)
    assert caught.value.location.startswith("byte ")


def test_unknown_trainer_settings_are_skipped_but_checked(tmp_path: Path) -> None:
    newer = MINIMAL + field(2, 2, field(99, 0, b"\x01") + field(200, 2, b"x"))
    assert verdict(tmp_path / NAME, newer) and loads(newer)
    broken = MINIMAL + field(2, 2, varint(99 << 3 | 2) + b"\x05ab")
    assert not verdict(tmp_path / NAME, broken)


def test_the_piece_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("owl.scan.sentencepiece.MAX_PIECES", 2)
    with pytest.raises(Unverified, match="more than 2 pieces"):
        (tmp_path / NAME).write_bytes(MINIMAL)
        scan_sentencepiece(tmp_path / NAME, file=NAME)
    assert MAX_PIECES >= 262_144  # Gemma's vocabulary


def test_a_file_over_the_size_limit_is_unverified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("owl.scan.sentencepiece.MAX_BYTES", len(MINIMAL) - 1)
    (tmp_path / NAME).write_bytes(MINIMAL)
    with pytest.raises(Unverified, match="at most") as caught:
        scan_sentencepiece(tmp_path / NAME, file=NAME)
    assert caught.value.location == "file"


# --- detection claims only SentencePiece models ------------------------------------------------


def other_protobuf() -> bytes:
    """A TensorFlow GraphDef-like message: field 1 repeated nodes of name (1) and op (2)."""
    node = field(1, 2, b"conv1") + field(2, 2, b"Conv2D") + field(3, 2, b"input")
    return field(1, 2, node) * 3 + field(4, 2, field(1, 0, b"\x1a"))


@pytest.mark.parametrize(
    "data",
    [
        random.Random(0).randbytes(4096),
        b"\n" + random.Random(1).randbytes(4096),
        b"\nhello\nworld\n" * 50,
        other_protobuf(),
        MINIMAL + field(6, 2, b"x") + piece(b"z"),  # a field no ModelProto has
        b"\x0a\x00" + MINIMAL,  # an empty first piece
    ],
    ids=["random", "random-after-newline", "text", "graphdef", "unknown-field", "empty-piece"],
)
def test_other_files_are_not_taken_for_sentencepiece(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "vocab.bin"
    path.write_bytes(data)
    assert sniff(path) is not Kind.SENTENCEPIECE
    assert scan_file(path).format != "sentencepiece"


def test_a_cut_model_is_still_recognised(tmp_path: Path, models: dict[str, bytes]) -> None:
    path = tmp_path / NAME
    path.write_bytes(models["gemma"][:777])
    assert sniff(path) is Kind.SENTENCEPIECE


# --- a Hugging Face folder with a tokenizer.model ----------------------------------------------


@pytest.mark.slow
def test_a_folder_with_a_tokenizer_model_is_pulled(
    tmp_path_factory: pytest.TempPathFactory, store: Store, settings: Settings
) -> None:
    base = tmp_path_factory.getbasetemp()
    # Gemma is a SentencePiece family: its tiny folder gets the trained tokenizer.model
    folder = build_tiny_folder("gemma", base, base)
    assert (folder / NAME).is_file()
    manifest = pull(str(folder), store=store, settings=settings)
    entry = next(entry for entry in manifest.files if entry.filename == NAME)
    record = manifest.scans[entry.digest]
    assert (record.format, record.verdict) == ("sentencepiece", "clean")
