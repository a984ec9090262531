"""The transformers backend: Hugging Face safetensors folders, one generation at a time."""
