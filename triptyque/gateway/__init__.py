"""The gateway in front of vLLM: API keys, kill switch, limits, metrics, clear errors.

It never imports vLLM: it talks to the engine over HTTP, so the same gateway runs in
front of the CPU build, the GPU build, or any OpenAI-compatible upstream.
"""
