"""The OwlError hierarchy: every error says what went wrong and what to do next.

Errors subclass the builtin that best describes them (huggingface_hub's style), so
callers that do not know owl can still catch `LookupError` or `ValueError`.
The CLI prints `str(err)` as one line; the server maps `http_status` to a response.
"""

from __future__ import annotations


class OwlError(Exception):
    """Base of every error owl raises on purpose."""

    http_status = 500
    code = "owl_error"

    def client_message(self) -> str:
        """The message for a client of the server: str(self) unless it names the server's
        own files, which a remote client has no business seeing."""
        return str(self)


class InvalidModelName(OwlError, ValueError):
    """A name, reference or digest that does not parse."""

    http_status = 400
    code = "invalid_model_name"


class ModelNotFound(OwlError, LookupError):
    """No model by that name in the store, and nothing to pull it from."""

    http_status = 404
    code = "model_not_found"


class ResponseNotFound(OwlError, LookupError):
    """No stored response by that id (never stored, `store: false`, deleted or evicted)."""

    http_status = 404
    code = "response_not_found"


class NameClash(OwlError, FileExistsError):
    """A pull would give a name that another model already has."""

    http_status = 409
    code = "name_clash"


class SourceNotFound(OwlError, FileNotFoundError):
    """A file, URL, package or Hub repository that does not exist."""

    http_status = 404
    code = "source_not_found"


class DownloadError(OwlError, ConnectionError):
    """A download that failed or stopped early; its partial file is kept to resume."""

    http_status = 502
    code = "download_failed"


class DigestMismatch(OwlError, ValueError):
    """Downloaded bytes whose sha256 is not the one expected; nothing was stored."""

    http_status = 502
    code = "digest_mismatch"


class ModelFormatError(OwlError, ValueError):
    """A file that is not a model owl can read (wrong format, truncated, malformed)."""

    http_status = 422
    code = "invalid_model_file"


class StoreCorrupted(OwlError, RuntimeError):
    """A manifest or blob in OWL_HOME that is missing or damaged."""

    http_status = 500
    code = "store_corrupted"

    def client_message(self) -> str:
        return (
            "the server's model store is damaged (an unreadable manifest or lock file); "
            "its log says which, and `owl verify` on the server finds the rest"
        )


class EngineError(OwlError, RuntimeError):
    """The inference engine could not load a model or generate."""

    http_status = 500
    code = "engine_error"


class ContextOverflow(OwlError, ValueError):
    """A prompt longer than the model's context window."""

    http_status = 400
    code = "context_length_exceeded"


class InvalidPrompt(OwlError, ValueError):
    """A prompt the model cannot start from (empty, with no BOS token to stand for it)."""

    http_status = 400
    code = "invalid_prompt"


class InvalidParameter(InvalidPrompt):
    """A sampling parameter outside its range: `param` names it, `reason` says why."""

    def __init__(self, *, param: str, reason: str) -> None:
        super().__init__(f"invalid '{param}': {reason}")
        self.param = param
        self.reason = reason


class TemplateError(OwlError, ValueError):
    """A chat template that fails to render or tries to escape its sandbox."""

    http_status = 400
    code = "chat_template_error"


class InsufficientSpace(OwlError, OSError):
    """Not enough free disk for a download."""

    http_status = 507
    code = "insufficient_storage"


class UnsafeModel(OwlError, PermissionError):
    """A scan found something in the model's files that could harm the machine."""

    http_status = 403
    code = "unsafe_model"


class UnverifiedModel(UnsafeModel):
    """A scan could not read the model's files to the end, so they are not known to be safe."""

    code = "unverified_model"


class SignatureInvalid(OwlError, ValueError):
    """A model's signature does not hold: the files changed since they were signed, or the
    signature is not by the signer the user trusts, or it is not a model signature at all."""

    http_status = 422
    code = "signature_invalid"


class SigningError(OwlError, ValueError):
    """owl sign could not sign: a key it cannot read, a folder that is not a model folder."""

    http_status = 400
    code = "signing_failed"


class SignatureRequired(OwlError, PermissionError):
    """A pull asked for a signed model (--require-signature) and the model has no signature."""

    http_status = 403
    code = "signature_required"


class InvalidAudio(OwlError, ValueError):
    """Audio owl cannot use: bytes that are not audio, too long or too large an upload, a
    format it cannot encode, text it cannot speak."""

    http_status = 400
    code = "invalid_audio"


class InvalidImage(OwlError, ValueError):
    """An image owl cannot use: bytes that are not an image, too large a file, too many
    pixels (a decompression bomb), a URL it will not fetch."""

    http_status = 400
    code = "invalid_image"


class LockMismatch(OwlError, ValueError):
    """A model's files differ from what owl.lock pins (model drift), or it is not pinned."""

    http_status = 409
    code = "lock_mismatch"


class EvalError(OwlError, ValueError):
    """An evaluation that cannot run as asked: too little text, or models that do not compare."""

    http_status = 400
    code = "invalid_eval"


class QuantizationError(OwlError, ValueError):
    """A quantization owl cannot make: unknown type, no usable imatrix, the quantizer failing."""

    http_status = 422
    code = "quantization_failed"


class ConversionError(OwlError, RuntimeError):
    """llama.cpp's converter could not be fetched, or could not convert a model folder."""

    http_status = 500
    code = "conversion_failed"


class NotSupportedYet(OwlError, NotImplementedError):
    """A request for something owl's API accepts but its engine cannot do yet."""

    http_status = 501
    code = "not_supported"


class NoRoomForModel(OwlError, MemoryError):
    """A model cannot load: the memory budget or the model limit is taken by busy models."""

    http_status = 503
    code = "no_room_for_model"


class Unauthorized(OwlError, PermissionError):
    """A request without a valid API key to a server started with OWL_API_KEYS."""

    http_status = 401
    code = "invalid_api_key"


class RequestTooLarge(OwlError, ValueError):
    """A request body larger than the server's OWL_MAX_BODY."""

    http_status = 413
    code = "request_too_large"


class TokenLimitExceeded(OwlError, ValueError):
    """A request for more tokens than the server's OWL_MAX_TOKENS cap."""

    http_status = 400
    code = "max_tokens_exceeded"


class ServerBusy(OwlError, RuntimeError):
    """Every slot is busy and the queue is full (OWL_MAX_QUEUE); retry after a while."""

    http_status = 429
    code = "server_busy"
    retry_after_s = 1


class ConfigError(OwlError, ValueError):
    """A setting (OWL_* or a flag) that cannot be used as given."""

    http_status = 500
    code = "config_error"


class ServerUnreachable(OwlError, ConnectionError):
    """A command that talks to a running `owl serve` (owl ps, owl stop) found none."""

    http_status = 502
    code = "server_unreachable"


class WrongModelKind(OwlError, ValueError):
    """A model asked for something it is not made for: a text model to transcribe, a
    speech-to-text model to speak."""

    http_status = 400
    code = "model_cannot_do_that"


class NotEmbeddable(OwlError, ValueError):
    """A model that cannot make embeddings (not a GGUF, or a pooling llama.cpp lacks)."""

    http_status = 400
    code = "model_cannot_embed"


class TrainingDataError(OwlError, ValueError):
    """A training or eval file (JSONL) that owl tune cannot use; the message names the line."""

    http_status = 400
    code = "invalid_training_data"


class TuneError(OwlError, RuntimeError):
    """A fine-tuning run that cannot start, resume or finish (the message says why)."""

    http_status = 500
    code = "tune_failed"


class AdapterMismatch(OwlError, ValueError):
    """A LoRA adapter asked for with a base it was not made for (or a model that is none)."""

    http_status = 400
    code = "adapter_mismatch"


class TeacherError(OwlError, RuntimeError):
    """A distillation teacher that cannot answer: unreachable, refusing, or nothing usable."""

    http_status = 502
    code = "teacher_failed"


class SourceNotAllowed(OwlError, PermissionError):
    """A pull the server refuses to make: its URL, or a redirect, reaches a private address."""

    http_status = 403
    code = "source_not_allowed"


class DocumentError(OwlError, ValueError):
    """A document owl will not read (too large, not what its name says, outside the folders
    named, a bomb), or a collection that cannot be used as asked; the message says why."""

    http_status = 400
    code = "document_error"


class CollectionNotFound(DocumentError, LookupError):
    """No document collection by that name under OWL_HOME."""

    http_status = 404
    code = "collection_not_found"
