"""The transformers backend: Hugging Face safetensors folders, for architectures llama.cpp lacks.

Slower than llama.cpp on a CPU, but it runs every causal LM that transformers has built in
(OPT, GPT-J, GPT-NeoX/Pythia, …). It speaks token ids like every Backend; the tokenizer side
lives in tokens.py, the sampling in sampling.py; its generations run one at a time on the
engine thread (owl/engine/serial.py), so it refuses what needs llama.cpp (constrained output,
logprobs, scoring).
"""

from __future__ import annotations

import inspect
import json
from collections import deque
from collections.abc import Generator
from pathlib import Path
from typing import Any

from owl.engine.backend import Capability
from owl.engine.memory import OVERHEAD
from owl.engine.sampling import SamplingParams
from owl.engine.serial import SerialScheduler
from owl.engine.transformers.sampling import PENALTY_WINDOW, sample_next
from owl.engine.transformers.tokens import HFVocab
from owl.engine.worker import engine_thread
from owl.errors import EngineError, WrongModelKind
from owl.formats.hf_folder import model_class_of

# Where configs keep the context length they were trained for, in the order to trust them.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
# The context for a model whose config names none, when the caller asks for "the model's own".
FALLBACK_CONTEXT = 2048
# config files are untrusted input: refuse silly sizes before parsing them.
MAX_JSON_BYTES = 16 * 1024 * 1024


def _modules() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as err:
        raise EngineError(
            f"running safetensors models needs torch and transformers ({err.name} is missing); "
            "install them with `pip install 'owl[convert]'`"
        ) from err
    return torch, transformers


def _read_json(path: Path, *, required: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise EngineError(
                f"{path.parent} has no {path.name}; give a Hugging Face model folder "
                "(config.json, *.safetensors and the tokenizer files)"
            )
        return {}
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EngineError(
            f"{path} is not a readable JSON file ({err}); re-download the model folder"
        ) from err
    if not isinstance(data, dict):
        raise EngineError(f"{path} is not a JSON object; re-download the model folder")
    return data


def _token_ids(value: Any) -> set[int]:
    """EOS ids as configs write them: one int or a list of ints (anything else is ignored)."""
    values = value if isinstance(value, list) else [value]
    return {item for item in values if isinstance(item, int) and not isinstance(item, bool)}


def trained_context(config: dict[str, Any]) -> int:
    """The context length the config says the model was trained for; 0 when it names none."""
    for key in CONTEXT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def context_size(requested: int, config: dict[str, Any]) -> int:
    """`requested`, capped by the trained context (0: the model's own)."""
    trained = trained_context(config)
    if requested <= 0:
        return trained or FALLBACK_CONTEXT
    # Past its trained length a model with learned positions (OPT, GPT-2) indexes beyond its
    # position table, and a rotary one degrades: cap the window, as llama.cpp's callers do.
    return min(requested, trained) if trained else requested


def check_folder(path: Path, transformers: Any, *, name: str = "") -> dict[str, Any]:
    """The folder's config.json, if transformers can load the folder without running its code.

    EngineError for a folder with custom code (auto_map), without safetensors weights, or of
    an architecture that this transformers cannot run as a causal LM.
    """
    if not path.is_dir():
        raise EngineError(
            f"{path} is not a folder; the transformers backend loads a Hugging Face model "
            "folder (config.json, *.safetensors and the tokenizer files)"
        )
    config = _read_json(path / "config.json", required=True)
    for file in ("config.json", "tokenizer_config.json"):
        if "auto_map" in _read_json(path / file):
            raise EngineError(
                f"{path.name} ships its own Python code (auto_map in {file}) and owl never runs "
                "a model's code; use a model whose architecture transformers has built in"
            )
    if not any(path.glob("*.safetensors")):
        raise EngineError(
            f"{path.name} has no .safetensors weights; owl loads only safetensors (pickle-based "
            ".bin checkpoints can run code when loaded): get the model's safetensors files"
        )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = model_class_of(config)
    if model_class and model_class.endswith("ForCTC"):
        raise WrongModelKind(
            f"'{name or path.name}' is a speech-to-text model ({model_class}), not a text "
            f"generator; transcribe with it: `owl transcribe AUDIO --model {name or path.name}`"
            ", or POST /v1/audio/transcriptions"
        )
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise EngineError(
            f"{path.name} is a {model_type!r} model, which transformers "
            f"{transformers.__version__} cannot run as a causal language model; upgrade "
            "transformers or use a GGUF of the model"
        )
    return config


class TransformersBackend:
    """A Hugging Face safetensors folder loaded in transformers (float32, CPU).

    Not thread-safe for generation: its serial scheduler runs one generation at a time.
    `name` names the model in the scheduler's refusals (default: the folder's name).
    """

    capabilities = frozenset({Capability.CHAT, Capability.COMPLETE})

    def __init__(
        self, path: Path, *, n_ctx: int, threads: int | None = None, name: str | None = None
    ) -> None:
        torch, transformers = _modules()
        self._torch = torch
        config = check_folder(path, transformers, name=name or "")
        if threads:
            torch.set_num_threads(threads)  # process-wide, like OMP_NUM_THREADS
        # transformers draws a progress bar on stderr while loading weights; owl's CLI and
        # server output is their own. (A process-wide switch, like the one above.)
        transformers.utils.logging.disable_progress_bar()
        try:
            # float32 on the CPU: bf16/f16 matmuls there are slow or emulated and less exact,
            # so weights stored in half precision are upcast. (transformers 5 always loads
            # weights straight into place, the old low_cpu_mem_usage behaviour.)
            self._model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path),
                trust_remote_code=False,
                use_safetensors=True,
                local_files_only=True,
                dtype=torch.float32,
            ).eval()
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path), trust_remote_code=False, local_files_only=True
            )
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise EngineError(
                f"transformers could not load {path.name} ({err}); the folder may be incomplete "
                "or damaged: re-download it"
            ) from err
        eos = _token_ids(config.get("eos_token_id"))
        eos |= _token_ids(_read_json(path / "generation_config.json").get("eos_token_id"))
        self._vocab = HFVocab(tokenizer, eos_ids=eos)
        self._n_ctx = context_size(n_ctx, config)
        forward = inspect.signature(self._model.forward).parameters
        # Only the last position's logits are sampled: skip the LM head for the rest.
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}
        self._metadata = self._describe(path, config, tokenizer)
        # The weights as loaded (float32), with the working margin; the KV cache grows per
        # generation and goes when it ends.
        weights = sum(p.numel() * p.element_size() for p in self._model.parameters())
        self._memory = int(weights * OVERHEAD)
        self._scheduler = SerialScheduler(self, worker=engine_thread(), name=name or path.name)

    @staticmethod
    def _describe(path: Path, config: dict[str, Any], tokenizer: Any) -> dict[str, str]:
        arch = str(config["model_type"])
        metadata = {"general.architecture": arch, "general.name": path.name}
        trained = trained_context(config)
        if trained:
            metadata[f"{arch}.context_length"] = str(trained)
        template = tokenizer.chat_template
        if isinstance(template, dict):  # named templates: the default one is for chat
            template = template.get("default")
        if not isinstance(template, str) and (path / "chat_template.jinja").is_file():
            template = (path / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(template, str):
            metadata["tokenizer.chat_template"] = template
        return metadata

    @property
    def scheduler(self) -> SerialScheduler:
        return self._scheduler

    @property
    def memory_bytes(self) -> int:
        return self._memory

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def metadata(self) -> dict[str, str]:
        return self._metadata

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self._vocab.tokenize(text, add_bos=add_bos, special=special)

    def token_bytes(self, token: int) -> bytes:
        return self._vocab.token_bytes(token)

    @property
    def vocab_size(self) -> int:
        return self._vocab.size

    def token_text(self, token: int) -> str:
        return self._vocab.token_text(token)

    @property
    def control_texts(self) -> frozenset[str]:
        return self._vocab.control_texts

    @property
    def bos_token(self) -> int | None:
        return self._vocab.bos_token

    @property
    def eos_token(self) -> int | None:
        return self._vocab.eos_token

    @property
    def adds_bos(self) -> bool:
        return self._vocab.adds_bos

    def is_eog(self, token: int) -> bool:
        return token in self._vocab.eog_tokens

    def generate(self, tokens: list[int], params: SamplingParams) -> Generator[int, None, None]:
        """Evaluate `tokens`, then yield sampled token ids until the caller stops (closes it).

        For the serial scheduler, on the engine thread."""
        if self._model is None:
            raise EngineError("the model was closed; load it again")
        return self._decode(list(tokens), params)

    def _decode(self, prompt: list[int], params: SamplingParams) -> Generator[int, None, None]:
        torch = self._torch
        generator = torch.Generator()
        if params.seed is None:
            generator.seed()
        else:
            generator.manual_seed(params.seed)
        recent = deque(prompt[-PENALTY_WINDOW:], maxlen=PENALTY_WINDOW)
        past = None

        def step(ids: list[int]) -> int:
            nonlocal past
            # inference_mode per step, never across a yield: the engine thread runs other
            # code between tokens, which must not inherit it.
            with torch.inference_mode():
                out = self._model(
                    input_ids=torch.tensor([ids]),
                    past_key_values=past,
                    use_cache=True,
                    **self._last_only,
                )
                past = out.past_key_values
                return sample_next(out.logits[0, -1], list(recent), params, generator)

        try:
            token = step(prompt)
            while True:
                recent.append(token)
                yield token
                token = step([token])
        finally:
            past = None  # the KV cache goes as soon as the caller closes the generator

    def close(self) -> None:
        self._scheduler.close()
        self._model = None
