"""Ollama's API (/api/*): its request and response models, and routes onto the serving core."""
