"""OpenAI's API (/v1/*): its request and response models, and routes onto the serving core."""
