"""triptyque: one vLLM service, three kinds of infrastructure, measured side by side."""

__version__ = "0.1.0"
