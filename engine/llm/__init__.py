"""The LLM layer: cache -> retry -> rate limit -> provider -> transport."""
