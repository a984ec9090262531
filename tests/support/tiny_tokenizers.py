"""A tiny SentencePiece tokenizer, trained offline and deterministically, for the tiny models
of the families whose llama.cpp converter wants a SentencePiece `tokenizer.model` (Gemma,
Gemma 2) or tries one first (Qwen2, before GPT-2 BPE; a BPE vocabulary whose pre-tokenizer
hash it does not know is refused, and transformers 5 gives a qwen2 folder Qwen2's own).

Trained on the GPL-3 and Apache-2.0 texts of /usr/share/common-licenses (on every Debian-like
machine), from a sentence iterator (so the model records no file path), on one thread with a
fixed seed and no sampling: the same bytes on every build. Gemma's special-token layout:
<pad> 0, <eos> 1, <bos> 2, <unk> 3, then <mask>, <2mass>, [@BOS@], <unused0>…<unused98> and
<start_of_turn> 106, <end_of_turn> 107 — the ids llama.cpp's Gemma converter hard-codes for
its fill-in-the-middle and end-of-turn tokens — and byte fallback, so llama.cpp finds <0x0A>.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

TEXTS = (Path("/usr/share/common-licenses/GPL-3"), Path("/usr/share/common-licenses/Apache-2.0"))
SPM_VOCAB = 1024
SPM_IDS = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}
START_OF_TURN, END_OF_TURN = 106, 107
_USER_DEFINED = (
    "<mask>",
    "<2mass>",
    "[@BOS@]",
    *(f"<unused{i}>" for i in range(99)),
    "<start_of_turn>",
    "<end_of_turn>",
)
SPM_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
# Gemma's chat template, shortened: enough for a chat request to render.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _sentences() -> list[str]:
    lines = []
    for path in TEXTS:
        lines += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return lines


def train_spm() -> bytes:
    """The serialized SentencePiece model (unigram, SPM_VOCAB pieces); deterministic."""
    import sentencepiece as spm

    spm.set_random_generator_seed(0)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sentences()),
        model_writer=model,
        model_type="unigram",
        vocab_size=SPM_VOCAB,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=list(_USER_DEFINED),
        byte_fallback=True,
        # Gemma's settings, which a tokenizers.Tokenizer can mirror without protobuf
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()


def hf_tokenizer(model: bytes):  # noqa: ANN201 (a transformers PreTrainedTokenizerFast)
    """transformers' tokenizer for the SentencePiece `model`, built as transformers'
    GemmaConverter builds one (which needs protobuf): the same ids as SentencePiece."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    processor = spm.SentencePieceProcessor(model_proto=model)
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(len(processor))]
    backend = Tokenizer(Unigram(pieces, unk_id=processor.unk_id(), byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    # Gemma prepends <bos>; llama.cpp's Gemma vocabulary says so too (add_bos_token)
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A",
        pair="<bos> $A <bos> $B",
        special_tokens=[("<bos>", SPM_IDS["bos_token_id"])],
    )
    special = [i for i in range(END_OF_TURN + 1) if i != processor.unk_id()]
    backend.add_special_tokens(
        [AddedToken(processor.id_to_piece(i), special=True, normalized=False) for i in special]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_spm_tokenizer(dest: Path) -> Path:
    """Write tokenizer.model and transformers' tokenizer.json/tokenizer_config.json for it
    into the folder `dest` (created); returns `dest`. Built once per folder."""
    if all((dest / name).is_file() for name in SPM_FILES):
        return dest
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model = train_spm()
    (staging / "tokenizer.model").write_bytes(model)
    hf_tokenizer(model).save_pretrained(str(staging))
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def spm_ids(text: str) -> list[int]:
    """<bos> and the tiny SentencePiece tokenizer's ids of `text`."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=train_spm())
    return [SPM_IDS["bos_token_id"], *processor.encode(text)]
