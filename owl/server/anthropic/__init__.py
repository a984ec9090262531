"""Anthropic's Messages API, translated onto the serving core."""
