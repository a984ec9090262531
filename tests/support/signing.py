"""Keys and a small model folder to sign: real elliptic-curve keys (cryptography) and a
folder owl pulls (a config, safetensors weights, a tokenizer config)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from safetensors.numpy import save_file


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def write_key_pair(folder: Path, name: str) -> KeyPair:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = folder / f"{name}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private, public)


def write_model_folder(folder: Path) -> Path:
    """A model folder owl pulls: config.json, model.safetensors, tokenizer_config.json."""
    folder.mkdir(parents=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(
        {"model.embed_tokens.weight": np.ones((8, 4), np.float32)}, folder / "model.safetensors"
    )
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    return folder
